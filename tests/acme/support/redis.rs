//! A throw-away `redis-server` (Debian package `redis-server`) per test, on a
//! reserved port, without persistence, killed when dropped; optionally with
//! a password (`requirepass`) or TLS only (`--port 0 --tls-port`, a CA and a
//! server certificate made here with rcgen).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::ports::Port;
use super::TempDir;

/// A running Redis.
pub struct Redis {
    port: Port,
    child: Option<Child>,
    password: Option<String>,
    tls: Option<TlsFiles>,
}

/// The CA and server certificate of a TLS Redis.
struct TlsFiles {
    dir: TempDir,
    ca_pem: Vec<u8>,
}

impl TlsFiles {
    /// A CA and a certificate for 127.0.0.1 and localhost signed by it.
    fn make() -> TlsFiles {
        let dir = TempDir::new("redis-tls");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "bellhop test Redis CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        TlsFiles {
            ca_pem: ca_cert.pem().into_bytes(),
            dir,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

impl Redis {
    /// Starts Redis on a reserved port and waits until it answers PING.
    pub async fn start() -> Redis {
        Self::launch(None, false).await
    }

    /// Redis that refuses clients without `password` (`requirepass`).
    pub async fn start_with_password(password: &str) -> Redis {
        Self::launch(Some(password.to_string()), false).await
    }

    /// Redis that speaks TLS only, with a certificate from its own CA
    /// ([`ca_root`](Self::ca_root)).
    pub async fn start_tls() -> Redis {
        Self::launch(None, true).await
    }

    async fn launch(password: Option<String>, tls: bool) -> Redis {
        let mut redis = Redis {
            port: Port::reserve(),
            child: None,
            password,
            tls: tls.then(TlsFiles::make),
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT/0` (`rediss://` for TLS), without the password.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/0", self.port.number())
    }

    /// The CA of a TLS Redis's certificate (PEM file).
    pub fn ca_root(&self) -> PathBuf {
        self.tls.as_ref().expect("a TLS redis").path("ca.pem")
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing was saved).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A connection for the test to read and write keys with.
    pub async fn client(&self) -> ::redis::aio::MultiplexedConnection {
        self.try_client().await.expect("connect to the test redis")
    }

    async fn try_client(&self) -> ::redis::RedisResult<::redis::aio::MultiplexedConnection> {
        let mut url = self.url();
        if let Some(password) = &self.password {
            url = url.replacen("://", &format!("://:{password}@"), 1);
        }
        let client = match &self.tls {
            Some(tls) => ::redis::Client::build_with_tls(
                url,
                ::redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(tls.ca_pem.clone()),
                },
            )?,
            None => ::redis::Client::open(url)?,
        };
        let mut conn = client.get_multiplexed_async_connection().await?;
        ::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await?;
        Ok(conn)
    }

    async fn spawn(&mut self) {
        let port = self.port.number().to_string();
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(String::from)
            .to_vec();
        match &self.tls {
            Some(tls) => {
                let file = |name: &str| tls.path(name).display().to_string();
                args.extend([
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port,
                    "--tls-cert-file".into(),
                    file("server.pem"),
                    "--tls-key-file".into(),
                    file("server.key"),
                    "--tls-ca-cert-file".into(),
                    file("ca.pem"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]);
            }
            None => args.extend(["--port".into(), port]),
        }
        if let Some(password) = &self.password {
            args.extend(["--requirepass".into(), password.clone()]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting redis-server (Debian package `redis-server`): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_client().await {
                Ok(_) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "redis-server did not answer on {}: {e}",
                    self.url()
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
