//! Where the state that several bellhop instances must agree on is kept.
//!
//! ```text
//! Storage (trait) ─┬─ Dir:   the state directory, as a single instance always had it
//!                  └─ Redis: one Redis shared by every instance, with the state
//!                            directory as the local cache that keeps serving
//!                            while Redis is away
//! ```
//!
//! Values are addressed by the same relative paths the state directory uses
//! (`acme/<issuer>/account.json`, `certs/<issuer>/<name>/cert.pem`, …), so the
//! directory implementation is today's layout byte for byte, and a Redis key
//! reads like the file it mirrors. Besides values, a storage offers what
//! coordination needs: a lease per name (one instance orders a certificate at
//! a time) and a notification that a certificate changed. The directory's
//! lease is always granted: one process owns a state directory.
//!
//! Nothing here is on the request path except [`RedisLimits`] for
//! `rate-limit … shared=#true` (see `limit::shared`).

mod dir;
mod error;
mod lease;
mod link;
mod redis;
mod seal;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use dir::DirStorage;
pub(crate) use error::StorageError;
pub(crate) use lease::Lease;
pub(crate) use redis::{Change, RedisLimits, RedisStorage};

use crate::config::Storage as StorageConfig;

/// A boxed future, so the trait can be used as `dyn Storage`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a value is, which decides how it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Private keys and account credentials: file mode 0600, encrypted in
    /// Redis when a key file is configured.
    Secret,
    /// Certificate chains and status records: file mode 0644.
    Public,
    /// A challenge answer, needed for minutes at most: only shared storage
    /// keeps it (with this expiry); the directory ignores it because the
    /// instance that publishes it also answers it from memory.
    Ephemeral(Duration),
}

/// Values, leases and change notifications shared by the instances of a
/// cluster (or owned by the one instance of the directory storage).
pub(crate) trait Storage: Send + Sync + std::fmt::Debug {
    /// The value at `key`, `None` if there is none.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>>;

    /// Stores `value` at `key`, atomically (readers see the old or the new value).
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        kind: Kind,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Removes `key` (no error if absent).
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Takes the lease `key` for `ttl` if nobody holds it: `Ok(None)` when
    /// another instance does. A holder that crashes blocks others for `ttl`
    /// at most.
    fn lock<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, StorageError>>;

    /// Extends a held lease; `false` if it was lost (expired and maybe taken
    /// by another instance: the holder must stop acting on it).
    fn extend<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;

    /// Releases a lease if it is still ours.
    fn unlock<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Tells the other instances that the value behind `what` changed.
    fn notify<'a>(&'a self, what: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Whether other instances share this storage (and so whether looking
    /// there can find something this instance does not have).
    fn is_shared(&self) -> bool;

    /// A stream of changes announced by other instances; `None` for a storage
    /// nobody else writes to.
    fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        None
    }
}

/// The storage a config asks for. Connecting to Redis happens on first use,
/// so a Redis that is down at start-up does not stop the instance.
pub(crate) fn open(
    config: &StorageConfig,
    state_dir: &Path,
) -> Result<Arc<dyn Storage>, StorageError> {
    let dir = DirStorage::new(state_dir);
    Ok(match config {
        StorageConfig::Dir => Arc::new(dir),
        StorageConfig::Redis(redis) => Arc::new(RedisStorage::new(redis, dir)?),
    })
}
