//! Certificates in the storage that instances share: where each value lives,
//! fetching a certificate another instance obtained, saving one for the
//! others, and adopting what they announce.
//!
//! The keys are the state directory's relative paths, so with the directory
//! storage this writes exactly the files `CertStore` reads, and with Redis the
//! same layout lives under `bellhop:` (and in each instance's state
//! directory, which stays its cache for a start while Redis is down).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::clock::{fmt_time, unit_random};
use super::schedule::storage_retry_delay;
use super::shared::Shared;
use super::store::file_name_for;
use super::{CertInfo, NameStatus, StoredCert};
use crate::storage::{Change, Kind, StorageError};

/// How long a lease on ordering a name lasts without being extended: a
/// crashed holder blocks the others for this long at most.
pub(super) const ORDER_LEASE: Duration = Duration::from_secs(60);
/// How often the holder extends its lease while an order runs.
pub(super) const LEASE_EXTEND: Duration = Duration::from_secs(20);
/// How often an instance that found the lease taken looks again.
pub(super) const LEASE_WAIT: Duration = Duration::from_secs(2);

/// The storage keys of one name's values.
pub(super) struct Keys {
    pub cert: String,
    pub key: String,
    pub status: String,
    pub lease: String,
}

impl Keys {
    pub(super) fn new(issuer: &str, name: &str) -> Self {
        let dir = format!("certs/{issuer}/{}", file_name_for(name));
        Keys {
            cert: format!("{dir}/cert.pem"),
            key: format!("{dir}/key.pem"),
            status: format!("{dir}/status.json"),
            lease: format!("{dir}/order.lock"),
        }
    }
}

/// A certificate read from storage, with the PEM it came from.
pub(super) struct Fetched {
    pub stored: StoredCert,
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Shared {
    /// The keys of `name` for this manager's CA.
    pub(super) fn keys(&self, name: &str) -> Keys {
        Keys::new(&self.issuer, name)
    }

    /// The certificate in storage for `name`, if it is valid now and ends
    /// later than `than` (what this instance serves). Unusable values are
    /// logged and ignored: ordering a fresh certificate repairs them.
    pub(super) async fn fetch_newer(
        &self,
        name: &str,
        than: Option<SystemTime>,
    ) -> Result<Option<Fetched>, StorageError> {
        let keys = self.keys(name);
        let (Some(chain_pem), Some(key_pem)) = (
            self.storage.get(&keys.cert).await?,
            self.storage.get(&keys.key).await?,
        ) else {
            return Ok(None);
        };
        let stored = match StoredCert::from_pem(&chain_pem, &key_pem, Path::new(&keys.cert)) {
            Ok(stored) if stored.info.covers(name) => stored,
            Ok(_) => return Ok(None),
            Err(e) => {
                tracing::debug!(name, error = %e, "ignoring an unusable stored certificate");
                return Ok(None);
            }
        };
        let now = SystemTime::now();
        let newer = than.is_none_or(|t| stored.info.not_after > t);
        Ok((newer && stored.info.is_valid_at(now)).then_some(Fetched {
            stored,
            chain_pem,
            key_pem,
        }))
    }

    /// Serves a certificate another instance obtained and caches it in the
    /// local state directory (for a start while shared storage is down).
    pub(super) fn adopt(&self, name: &str, fetched: &Fetched) {
        self.resolver.set(name, fetched.stored.key.clone());
        self.report_served();
        if self.storage.is_shared() {
            if let Err(e) = self.store.save(name, &fetched.chain_pem, &fetched.key_pem) {
                tracing::warn!(name, error = %e, "serving a shared certificate, but caching it locally failed");
            }
        }
        tracing::info!(name, not_after = %fmt_time(fetched.stored.info.not_after), "serving the certificate another instance obtained");
    }

    /// Saves a new certificate (key first, see `store`) and tells the other
    /// instances. When shared storage fails, the certificate is kept locally
    /// and pushed again in the background until storage takes it.
    pub(super) async fn save_cert(self: &Arc<Self>, name: &str, chain: &[u8], key: &[u8]) {
        match self.push_cert(name, chain, key).await {
            Ok(()) => {}
            Err(e) if self.storage.is_shared() => {
                tracing::error!(name, error = %e, "could not save the new certificate to shared storage; keeping it locally and retrying");
                if let Err(e) = self.store.save(name, chain, key) {
                    tracing::error!(name, error = %e, "storing the certificate locally failed too");
                }
                let shared = self.clone();
                let (name, chain, key) = (name.to_string(), chain.to_vec(), key.to_vec());
                self.tasks
                    .spawn(async move { shared.push_later(&name, &chain, &key).await });
            }
            Err(e) => {
                tracing::error!(name, error = %e, "serving the new certificate, but storing it failed; it will be obtained again after a restart");
            }
        }
    }

    async fn push_cert(&self, name: &str, chain: &[u8], key: &[u8]) -> Result<(), StorageError> {
        let keys = self.keys(name);
        self.storage.put(&keys.key, key, Kind::Secret).await?;
        self.storage.put(&keys.cert, chain, Kind::Public).await?;
        if let Err(e) = self.storage.notify(name).await {
            // The others still find it when they poll before renewing.
            tracing::warn!(name, error = %e, "could not announce the new certificate");
        }
        Ok(())
    }

    /// Pushes a certificate shared storage refused, with the storage retry
    /// backoff (`schedule`), until it is taken or the manager stops.
    async fn push_later(&self, name: &str, chain: &[u8], key: &[u8]) {
        for failures in 1.. {
            let wait = storage_retry_delay(failures, unit_random());
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.push_cert(name, chain, key).await {
                Ok(()) => {
                    tracing::info!(name, "saved the certificate to shared storage");
                    return;
                }
                Err(e) => tracing::debug!(name, error = %e, "shared storage still failing"),
            }
        }
    }

    /// Records `name`'s status, locally and (in a cluster) where the other
    /// instances see it, so they respect the same backoff.
    pub(super) async fn save_status(&self, name: &str, status: &NameStatus) {
        let mut json = serde_json::to_vec_pretty(status).unwrap_or_default();
        json.push(b'\n');
        if let Err(e) = self
            .storage
            .put(&self.keys(name).status, &json, Kind::Public)
            .await
        {
            tracing::warn!(name, error = %e, "could not record the certificate status");
            if let Err(e) = self.store.save_status(name, status) {
                tracing::warn!(name, error = %e, "could not record it locally either");
            }
        }
    }

    /// The status another instance recorded for `name` (a clean slate if
    /// none, or if it cannot be read).
    pub(super) async fn shared_status(&self, name: &str) -> NameStatus {
        match self.storage.get(&self.keys(name).status).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            _ => NameStatus::default(),
        }
    }

    /// End of the certificate served for `name`, if any.
    pub(super) fn served_until(&self, name: &str) -> Option<SystemTime> {
        let key = self.resolver.get(name)?;
        CertInfo::parse(key.cert.first()?, name)
            .ok()
            .map(|i| i.not_after)
    }
}

/// Serves what other instances announce: each named certificate when it
/// lands, and every wanted name after (re)subscribing, since announcements
/// made while Redis was unreachable are lost. Runs until `cancel`.
pub(super) async fn follow(
    shared: Arc<Shared>,
    mut changes: mpsc::Receiver<Change>,
    cancel: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            () = cancel.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        let names = match change {
            Change::One(name) => vec![name],
            Change::All => shared.wanted_names(),
        };
        for name in names {
            if !shared.is_wanted(&name) {
                continue;
            }
            match shared.fetch_newer(&name, shared.served_until(&name)).await {
                Ok(Some(fetched)) => shared.adopt(&name, &fetched),
                Ok(None) => {}
                Err(e) => tracing::warn!(name, error = %e, "cannot fetch an announced certificate"),
            }
        }
    }
}
