//! One connection to the Redis of `storage "redis://…"`: its credentials,
//! its TLS, and the bound on every operation.
//!
//! The password comes from the URL (where `{env.NAME}` can put it) or from
//! `password-file`; a `rediss://` server's certificate is checked against
//! the system's roots, or against `ca-root` alone when given. TLS is rustls
//! with the one ring provider (the `redis` crate builds its client config
//! from the process default, which is ring: no other provider is compiled).
//!
//! Errors name the URL with its password masked, so a log line says which
//! storage failed without leaking the secret.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, IntoConnectionInfo, RedisError, TlsCertificates};
use tokio::runtime::Handle;
use tokio::sync::Mutex;

use super::StorageError;
use crate::config::{redact_url, StorageRedis};

/// A lazily connected, self-reconnecting Redis connection, driven on the
/// runtime that created it (the background runtime, not a worker's).
pub(crate) struct RedisLink {
    client: Client,
    runtime: Option<Handle>,
    conn: Mutex<Option<ConnectionManager>>,
    /// Bound on each operation (connecting included).
    timeout: Duration,
    /// The URL without its password, for logs.
    pub shown: String,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("url", &self.shown)
            .finish()
    }
}

impl RedisLink {
    /// A link to the Redis of `config` whose operations give up after
    /// `timeout`. Reads `password-file` and `ca-root` now (a missing file is
    /// a configuration error the operator must see at start); nothing is
    /// connected yet.
    pub(crate) fn new(config: &StorageRedis, timeout: Duration) -> Result<Self, StorageError> {
        let shown = redact_url(&config.url);
        let bad = |what: String| StorageError::Config(format!("storage {shown}: {what}"));
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(e.to_string()))?;
        if let Some(path) = &config.password_file {
            let password = read_password(path).map_err(bad)?;
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca_root {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| bad(format!("reading ca-root {}: {e}", path.display())))?;
                let certificates = TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                Client::build_with_tls(info, certificates)
                    .map_err(|e| bad(format!("ca-root {}: {e}", path.display())))?
            }
            None => Client::open(info).map_err(|e| bad(e.to_string()))?,
        };
        Ok(RedisLink {
            client,
            runtime: Handle::try_current().ok(),
            conn: Mutex::new(None),
            timeout,
            shown,
        })
    }

    /// A client for connections of their own (the pub/sub subscription).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs `task` on the runtime that opened the link.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.runtime {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// A Redis error as a storage error that names this storage.
    pub(crate) fn error(&self, source: RedisError) -> StorageError {
        if source.kind() == ErrorKind::AuthenticationFailed {
            StorageError::Auth {
                url: self.shown.clone(),
            }
        } else {
            StorageError::Redis {
                url: self.shown.clone(),
                source,
            }
        }
    }

    fn timed_out(&self) -> StorageError {
        StorageError::Timeout {
            url: self.shown.clone(),
            after: self.timeout,
        }
    }

    /// The connection, connecting first if needed.
    pub(crate) async fn conn(&self) -> Result<ConnectionManager, StorageError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let client = self.client.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connect = async move { client.get_connection_manager_with_config(config).await };
        // The manager's driver task lives on the runtime it is created on: the
        // background runtime, so no worker's shutdown takes it down.
        let made = match &self.runtime {
            Some(runtime) => runtime
                .spawn(tokio::time::timeout(self.timeout, connect))
                .await
                .map_err(|e| StorageError::Config(format!("connecting to redis: {e}")))?,
            None => tokio::time::timeout(self.timeout, connect).await,
        };
        let conn = made
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.error(e))?;
        tracing::info!(redis = %self.shown, "connected to shared storage");
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one command with the operation timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, cmd.query_async(&mut conn)).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Runs a Lua script (EVALSHA, loading it once) with the operation timeout.
    pub(crate) async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StorageError> {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
            Ok(result) => result.map_err(|e| self.error(e)),
            Err(_) => Err(self.timed_out()),
        }
    }
}

/// The password in `path`: its first line (a trailing newline, as editors
/// and `echo` leave it, is not part of it).
fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading password-file {}: {e}", path.display()))?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(format!("password-file {} is empty", path.display()));
    }
    Ok(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: String) -> StorageRedis {
        StorageRedis {
            url,
            key_file: None,
            password_file: None,
            ca_root: None,
        }
    }

    /// `rediss://` builds its TLS client from the one ring provider: a server
    /// that accepts and hangs up gives an error, not a panic about providers.
    #[tokio::test]
    async fn rediss_fails_cleanly_without_a_tls_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                drop(tcp);
            }
        });
        let link = RedisLink::new(
            &config(format!("rediss://:pw@127.0.0.1:{port}/0")),
            Duration::from_secs(2),
        )
        .unwrap();
        assert!(!link.shown.contains("pw"));
        let err = link.conn().await.unwrap_err().to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }

    #[test]
    fn password_file_is_its_first_line() {
        let dir = std::env::temp_dir().join(format!("bellhop-pass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("redis.pass");
        std::fs::write(&path, "s3cret:/@x\n").unwrap();
        assert_eq!(read_password(&path).unwrap(), "s3cret:/@x");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password(&path).unwrap_err().contains("empty"));
        let missing = read_password(&dir.join("none")).unwrap_err();
        assert!(missing.contains("reading password-file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
