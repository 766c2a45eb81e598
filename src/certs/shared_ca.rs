//! The internal CA in the storage a cluster shares.
//!
//! Users trust the internal root by hand, so every instance of a cluster must
//! sign with the same one: a client that trusts box A's root would otherwise
//! reject box B. The root key and certificate live in storage under the same
//! keys as the files in `state-dir/internal/` (the key sealed with `key-file`
//! like every other secret), and each instance keeps a copy in its state
//! directory, which is what it signs with and what `bellhop ca-root` prints.
//!
//! [`sync`] makes the local copy the shared one before the manager loads it:
//! under a short lease, so two instances starting together cannot each
//! create a root; the first creates it (or puts its existing root in, for a
//! standalone instance joining a cluster), the others adopt it. While shared
//! storage cannot be reached an instance signs with its local copy (the root
//! it last saw), and without one it refuses to make a root of its own, which
//! would split the cluster.

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::plan::Plan;
use super::shared::Shared;
use super::{CertError, InternalCa};
use crate::state_file::{read_optional, write_atomic, PUBLIC_MODE, SECRET_MODE};
use crate::storage::{Kind, Lease, Storage, StorageError};

/// Storage keys: the paths of the files under the state directory.
const ROOT_CERT: &str = "internal/root.pem";
const ROOT_KEY: &str = "internal/root.key";
const LOCK: &str = "internal/root.lock";
/// Creating a root takes milliseconds; a crashed holder blocks others this long.
const LEASE: Duration = Duration::from_secs(10);
/// How often an instance that found the lease taken looks again.
const LEASE_WAIT: Duration = Duration::from_millis(100);

impl Shared {
    /// The internal CA, loaded on first use and kept: from the state
    /// directory (created there if missing), or with shared storage from the
    /// local copy [`sync`] made, never a root of this instance's own.
    pub(super) fn internal_ca(&self) -> Result<Arc<InternalCa>, CertError> {
        let mut ca = self
            .internal_ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ca) = ca.as_ref() {
            return Ok(ca.clone());
        }
        let loaded = if self.storage.is_shared() {
            InternalCa::load_local(&self.state_dir)?.ok_or_else(|| {
                CertError::Storage(
                    "the cluster's internal CA was not fetched from shared storage (use CertManager::open)".into(),
                )
            })?
        } else {
            InternalCa::load_or_create(&self.state_dir)?
        };
        let loaded = Arc::new(loaded);
        *ca = Some(loaded.clone());
        Ok(loaded)
    }

    /// Fetches the cluster's internal CA into the state directory when
    /// `plan` is the first to need it (once loaded, it is kept until a
    /// restart). Nothing to do without shared storage.
    pub(super) async fn sync_internal_ca(&self, plan: &Plan) -> Result<(), CertError> {
        let loaded = self
            .internal_ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if loaded || !self.storage.is_shared() || !plan.needs_internal_ca() {
            return Ok(());
        }
        sync(&*self.storage, &self.state_dir).await
    }
}

/// Makes `state_dir`'s copy of the internal CA the one in shared `storage`
/// (creating the shared root if there is none). Storage that cannot be
/// reached is logged and the local copy kept; an error only when there is
/// no local copy either.
async fn sync(storage: &dyn Storage, state_dir: &Path) -> Result<(), CertError> {
    let lease = match take_lease(storage).await {
        Ok(lease) => lease,
        Err(e) => return keep_local(state_dir, &e),
    };
    let synced = sync_holding(storage, state_dir).await;
    if let Err(e) = storage.unlock(&lease).await {
        tracing::debug!(error = %e, "could not release the internal CA lease; it expires by itself");
    }
    match synced {
        Err(CertError::Storage(text)) => keep_local(state_dir, &text),
        other => other,
    }
}

/// Waits for the CA lease (held by another instance for milliseconds, or by
/// a crashed one until it expires).
async fn take_lease(storage: &dyn Storage) -> Result<Lease, String> {
    let deadline = Instant::now() + 3 * LEASE;
    loop {
        match storage.lock(LOCK, LEASE).await {
            Ok(Some(lease)) => return Ok(lease),
            Ok(None) if Instant::now() < deadline => tokio::time::sleep(LEASE_WAIT).await,
            Ok(None) => return Err("another instance keeps holding the internal CA lease".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The shared root, adopted locally; or this instance's root (new or
/// existing) made the shared one.
async fn sync_holding(storage: &dyn Storage, state_dir: &Path) -> Result<(), CertError> {
    let storage_error = |e: StorageError| CertError::Storage(e.to_string());
    // A shared storage puts a local copy back when it has none (see
    // `RedisStorage::get`): an existing standalone root becomes the cluster's.
    let cert = storage.get(ROOT_CERT).await.map_err(storage_error)?;
    let key = storage.get(ROOT_KEY).await.map_err(storage_error)?;
    if InternalCa::from_parts(state_dir, cert.as_deref(), key.as_deref())?.is_some() {
        if let (Some(cert), Some(key)) = (cert, key) {
            cache_locally(state_dir, &cert, &key)?;
        }
        return Ok(());
    }
    let (ca, key_pem) = InternalCa::generate(InternalCa::root_path(state_dir))?;
    // Key first: a certificate without its key is refused, the reverse is
    // started over (see `InternalCa::load_or_create`).
    storage
        .put(ROOT_KEY, key_pem.as_bytes(), Kind::Secret)
        .await
        .map_err(storage_error)?;
    storage
        .put(ROOT_CERT, ca.root_pem().as_bytes(), Kind::Public)
        .await
        .map_err(storage_error)?;
    tracing::info!(root = %ca.path().display(), "created the cluster's internal CA in shared storage; run `bellhop ca-root` to see how to trust it");
    Ok(())
}

/// Writes the shared root into the state directory if the copy there differs.
fn cache_locally(state_dir: &Path, cert: &[u8], key: &[u8]) -> Result<(), CertError> {
    let root_path = InternalCa::root_path(state_dir);
    let local = read_optional(&root_path)?;
    if local.as_deref() == Some(cert)
        && read_optional(&InternalCa::key_path(state_dir))?.as_deref() == Some(key)
    {
        return Ok(());
    }
    write_atomic(&InternalCa::key_path(state_dir), key, SECRET_MODE)?;
    write_atomic(&root_path, cert, PUBLIC_MODE)?;
    if local.is_some() {
        tracing::warn!(root = %root_path.display(), "replaced this instance's internal CA root with the cluster's; clients that trusted the old root must trust this one");
    } else {
        tracing::info!(root = %root_path.display(), "using the cluster's internal CA");
    }
    Ok(())
}

/// Shared storage failed: the local copy if there is one.
fn keep_local(state_dir: &Path, error: &str) -> Result<(), CertError> {
    if InternalCa::load_local(state_dir)?.is_some() {
        tracing::warn!(error, "shared storage unreachable; signing internal certificates with the local copy of the cluster's CA");
        return Ok(());
    }
    Err(CertError::Storage(format!(
        "the internal CA is kept in shared storage, which failed ({error}), and this instance has no local copy yet; start it again once storage answers"
    )))
}
