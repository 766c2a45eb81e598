//! Redis as a [`Storage`]: one Redis shared by every instance, with the state
//! directory as each instance's local cache.
//!
//! Keys are the storage keys under the prefix `bellhop:`; secrets are sealed
//! with the key file when one is configured (`seal`). Leases are `SET NX PX`
//! with a random token, extended and released by Lua scripts that compare the
//! token first. Changes are announced on the pub/sub channel
//! `bellhop:changed` (pub/sub needs no server configuration, unlike keyspace
//! notifications, which managed Redis services often disable).
//!
//! The connection ([`RedisLink`]) is made on first use and re-made after
//! Redis restarts; every operation is bounded by [`OP_TIMEOUT`], so a Redis
//! that is down costs a failed operation, never a hang.

use std::time::Duration;

use redis::{Client, Script};
use tokio::sync::mpsc;

use super::link::RedisLink;
use super::seal::{is_sealed, Sealer};
use super::{BoxFuture, DirStorage, Kind, Lease, Storage, StorageError};
use crate::config::StorageRedis;

/// Every bellhop key starts with this, so a Redis shared with other software
/// stays tidy.
pub(crate) const PREFIX: &str = "bellhop:";
/// The pub/sub channel on which a saved certificate is announced.
pub(crate) const CHANNEL: &str = "bellhop:changed";
/// Longest wait for one Redis operation, connecting included.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a shared rate-limit decision: it holds up a request, and
/// past this the local fallback decides.
const LIMIT_TIMEOUT: Duration = Duration::from_millis(250);
/// Wait between attempts to re-subscribe after the channel dropped.
const RESUBSCRIBE: Duration = Duration::from_secs(2);

/// Extends a lease if the caller still holds it.
const EXTEND: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
/// Releases a lease if the caller still holds it.
const UNLOCK: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// Redis plus the local cache directory.
#[derive(Debug)]
pub(crate) struct RedisStorage {
    link: RedisLink,
    local: DirStorage,
    sealer: Option<Sealer>,
    extend: Script,
    unlock: Script,
}

impl RedisStorage {
    /// The storage for `config`, caching into `local`. Reads the key file now
    /// (a missing key file is a configuration error the operator must see);
    /// connects on first use.
    pub(crate) fn new(config: &StorageRedis, local: DirStorage) -> Result<Self, StorageError> {
        let sealer = config
            .key_file
            .as_deref()
            .map(Sealer::from_file)
            .transpose()?;
        let link = RedisLink::new(config, OP_TIMEOUT)?;
        if sealer.is_none() {
            tracing::info!(redis = %link.shown, "no key-file: private keys are stored in Redis unencrypted (see docs/cluster.md)");
        }
        Ok(RedisStorage {
            link,
            local,
            sealer,
            extend: Script::new(EXTEND),
            unlock: Script::new(UNLOCK),
        })
    }

    /// The local copy of a value Redis does not have, written back to Redis
    /// (with the kind its file mode records). Without a local copy: `None`.
    async fn reseed(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some((value, kind)) = self.local.read_with_kind(key)? else {
            return Ok(None);
        };
        let stored = match (&self.sealer, kind) {
            (Some(sealer), Kind::Secret) => sealer.seal(key, &value)?,
            _ => value.clone(),
        };
        let cmd = redis::cmd("SET")
            .arg(format!("{PREFIX}{key}"))
            .arg(stored)
            .arg("NX")
            .clone();
        match self.link.query::<Option<String>>(&cmd).await {
            Ok(_) => tracing::info!(key, "put the local copy back into shared storage"),
            Err(e) => tracing::debug!(key, error = %e, "could not put the local copy back"),
        }
        Ok(Some(value))
    }

    fn opened(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        match (&self.sealer, is_sealed(&value)) {
            (Some(sealer), true) => sealer.open(key, &value),
            (None, true) => Err(StorageError::Config(format!(
                "{key} is encrypted in Redis but no key-file is configured"
            ))),
            (_, false) => Ok(value),
        }
    }
}

impl Storage for RedisStorage {
    /// Redis first; when it cannot be reached, the local cache (logged), so an
    /// instance keeps what it had while Redis is away. A value Redis lost (it
    /// restarted without persistence) but this instance still has is put back,
    /// so the cluster keeps its account and certificates.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        Box::pin(async move {
            let cmd = redis::cmd("GET").arg(format!("{PREFIX}{key}")).clone();
            match self.link.query::<Option<Vec<u8>>>(&cmd).await {
                Ok(Some(value)) => Ok(Some(self.opened(key, value)?)),
                Ok(None) => self.reseed(key).await,
                Err(e) => {
                    tracing::warn!(redis = %self.link.shown, key, error = %e, "shared storage unreachable; using the local copy");
                    Ok(self.local.read(key)?)
                }
            }
        })
    }

    /// Redis, then the local cache; a Redis failure is the caller's to retry.
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        kind: Kind,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let stored = match (&self.sealer, kind) {
                (Some(sealer), Kind::Secret) => sealer.seal(key, value)?,
                _ => value.to_vec(),
            };
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("{PREFIX}{key}")).arg(stored);
            if let Kind::Ephemeral(ttl) = kind {
                cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
            }
            self.link.query::<()>(&cmd).await?;
            self.local.write(key, value, kind)?;
            Ok(())
        })
    }

    /// Removes the value from Redis and from the local cache (which would
    /// otherwise put it back, see `get`).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let cmd = redis::cmd("DEL").arg(format!("{PREFIX}{key}")).clone();
            self.link.query::<()>(&cmd).await?;
            self.local.delete(key).await
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, StorageError>> {
        Box::pin(async move {
            let lease = Lease::new(&format!("{PREFIX}{key}"));
            let cmd = redis::cmd("SET")
                .arg(&lease.key)
                .arg(&lease.token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .clone();
            let set: Option<String> = self.link.query(&cmd).await?;
            Ok(set.map(|_| lease))
        })
    }

    fn extend<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async move {
            let mut invocation = self.extend.key(&lease.key);
            invocation
                .arg(&lease.token)
                .arg(ttl.as_millis().max(1) as u64);
            let extended: i64 = self.link.script(&invocation).await?;
            Ok(extended == 1)
        })
    }

    fn unlock<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let mut invocation = self.unlock.key(&lease.key);
            invocation.arg(&lease.token);
            self.link.script::<i64>(&invocation).await.map(|_| ())
        })
    }

    fn notify<'a>(&'a self, what: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let cmd = redis::cmd("PUBLISH").arg(CHANNEL).arg(what).clone();
            self.link.query::<i64>(&cmd).await.map(|_| ())
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn changes(&self) -> Option<mpsc::Receiver<Change>> {
        let (tx, rx) = mpsc::channel(64);
        let client = self.link.client();
        let shown = self.link.shown.clone();
        self.link.spawn(watch(client, shown, tx));
        Some(rx)
    }
}

/// What changed in shared storage, as the watcher reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// This value (a storage key's logical name, e.g. a certificate) changed.
    One(String),
    /// The subscription was (re)made: anything may have changed meanwhile.
    All,
}

/// Subscribes to [`CHANNEL`] and forwards each message; re-subscribes after a
/// drop and then reports [`Change::All`], since messages published while
/// Redis was unreachable are lost. Ends when the receiver is dropped.
async fn watch(client: Client, shown: String, tx: mpsc::Sender<Change>) {
    use futures_util::StreamExt as _;
    let mut logged_down = false;
    loop {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(OP_TIMEOUT, subscribed).await {
            Ok(Ok(pubsub)) => {
                logged_down = false;
                if tx.send(Change::All).await.is_err() {
                    return;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(what) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if tx.send(Change::One(what)).await.is_err() {
                        return;
                    }
                }
                tracing::warn!(redis = %shown, "lost the shared-storage subscription; re-subscribing");
            }
            Ok(Err(e)) if !logged_down => {
                tracing::warn!(redis = %shown, error = %e, "cannot subscribe to shared storage; retrying");
                logged_down = true;
            }
            Err(_) if !logged_down => {
                tracing::warn!(redis = %shown, "subscribing to shared storage timed out; retrying");
                logged_down = true;
            }
            _ => {}
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}

/// The shared half of `rate-limit … shared=#true`: one token bucket per
/// (limit, client) in Redis, taken by one Lua script call per request.
///
/// Why a token bucket in Lua rather than `INCR` + `PEXPIRE` fixed windows: it
/// is the same rate-and-burst semantics as the local limiter (a fixed window
/// lets a client send twice the limit across a window edge), it is still one
/// round trip (EVALSHA), and it uses Redis' own clock, so instances whose
/// clocks differ still agree.
///
/// One connection for the whole process, driven on the background runtime:
/// Redis runs commands one at a time anyway, a multiplexed connection
/// pipelines the workers' requests into one socket, and the hop to that task
/// is microseconds next to the network round trip it waits for.
#[derive(Debug)]
pub(crate) struct RedisLimits {
    link: RedisLink,
    take: Script,
}

/// Refills and takes one token; returns {allowed (0/1), wait ms}.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return {allowed, wait}
";

impl RedisLimits {
    /// Shared buckets in the Redis at `config.url` (connected on first use).
    pub(crate) fn new(config: &StorageRedis) -> Result<Self, StorageError> {
        Ok(RedisLimits {
            link: RedisLink::new(config, LIMIT_TIMEOUT)?,
            take: Script::new(TAKE),
        })
    }

    /// Takes a token from `bucket` (per second `rate`, size `burst`): `Ok(None)`
    /// when admitted, `Ok(Some(wait))` when over the limit.
    pub(crate) async fn take(
        &self,
        bucket: &str,
        rate: f64,
        burst: u32,
    ) -> Result<Option<Duration>, StorageError> {
        let mut invocation = self.take.key(format!("{PREFIX}rl:{bucket}"));
        invocation.arg(rate).arg(burst);
        let (allowed, wait): (i64, i64) = self.link.script(&invocation).await?;
        Ok((allowed != 1).then(|| Duration::from_millis(wait.max(1) as u64)))
    }
}
