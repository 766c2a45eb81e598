//! What the certificate manager and its background tasks share: the
//! resolver they serve into, storage, the CA client, events and metrics.
//!
//! One `Arc<Shared>` is held by the [`CertManager`](super::CertManager)
//! handle and by every task, so a task never needs the handle (and the
//! handle's lock on what is running) to serve a certificate.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clock::fmt_time;
use super::report::Progress;
use super::{CertInfo, CertStore, InternalCa, StoredCert};
use crate::acme::Acme;
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::tls::CertResolver;

/// Something the manager did, for the server's logs, an admin endpoint or tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertEvent {
    /// A certificate was obtained (or re-issued) and is now served.
    Obtained {
        /// The name.
        name: String,
        /// End of its validity.
        not_after: SystemTime,
    },
    /// An attempt failed; the previous certificate, if any, is still served.
    Failed {
        /// The name.
        name: String,
        /// The error, with the CA's problem detail verbatim.
        error: String,
        /// When the next attempt will be made.
        next_attempt: SystemTime,
    },
}

/// Where an internal leaf is served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Slot {
    Name(String),
    NoSni,
    Default,
}

/// State shared by the manager handle and its tasks.
pub(super) struct Shared {
    pub(super) state_dir: PathBuf,
    /// The local certificate files: what is served at start-up (in a
    /// cluster: the cache of what shared storage held).
    pub store: CertStore,
    /// Where certificates, statuses and leases go: the state directory, or
    /// the storage shared by a cluster.
    pub storage: Arc<dyn Storage>,
    /// This CA's id in storage keys.
    pub issuer: String,
    /// ACME names of the current plan (what announcements are followed for).
    pub(super) wanted: Mutex<HashSet<String>>,
    /// Cancelled when the manager stops.
    pub shutdown: CancellationToken,
    /// Every background task, [`CertManager::stopped`] waits for them: so
    /// that nothing writes to the state directory or storage once the
    /// server has returned (a test's removed temp dir, an upgrade's new
    /// process).
    pub(super) tasks: TaskTracker,
    pub resolver: Arc<CertResolver>,
    pub acme: Acme,
    pub events: broadcast::Sender<CertEvent>,
    /// The internal CA once loaded (`internal_task`).
    pub(super) internal_ca: Mutex<Option<Arc<InternalCa>>>,
    /// Where the served certificates are reported (`report_to`), if anywhere.
    pub(super) metrics: OnceLock<Arc<Metrics>>,
    /// What each ACME task plans next, for [`CertManager::table`].
    pub progress: Progress,
}

impl Shared {
    /// Serves `key` in `slot` from the next handshake on; `None` stops serving it.
    pub(super) fn serve(&self, slot: &Slot, key: Option<Arc<CertifiedKey>>) {
        match (slot, key) {
            (Slot::Name(name), Some(key)) => self.resolver.set(name, key),
            (Slot::Name(name), None) => self.resolver.remove(name),
            (Slot::NoSni, key) => self.resolver.set_no_sni(key),
            (Slot::Default, key) => self.resolver.set_default(key),
        }
    }

    /// The metrics, once the server has asked for reports (`report_to`).
    pub(super) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.get().map(|m| &**m)
    }

    /// Drops what the table and the metrics say about an ACME name whose task
    /// stopped (a new task for it reports afresh).
    pub(super) fn forget(&self, name: &str) {
        self.progress.remove(name);
        if let Some(metrics) = self.metrics() {
            metrics.forget_acme_name(name);
        }
    }

    /// Reports every name's served certificate to the metrics, after any
    /// change. Certificates change rarely (issuance, renewal, reload), so
    /// re-reading the whole table each time is cheap and cannot drift.
    pub(super) fn report_served(&self) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        let served: Vec<(String, SystemTime)> = CertInfo::served(&self.resolver)
            .into_iter()
            .map(|(name, info)| (name, info.not_after))
            .collect();
        metrics.certificates(&served);
    }

    /// The ACME names of the current plan.
    pub(super) fn wanted_names(&self) -> Vec<String> {
        let wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        wanted.iter().cloned().collect()
    }

    /// Whether `name` is one of the current plan's ACME names.
    pub(super) fn is_wanted(&self, name: &str) -> bool {
        let wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
        wanted.contains(name)
    }

    /// The stored certificate for `name`, served at once if still valid.
    pub(super) fn load_stored(&self, name: &str, now: SystemTime) -> Option<StoredCert> {
        match self.store.load(name) {
            Ok(Some(stored)) if stored.info.is_valid_at(now) => {
                self.resolver.set(name, stored.key.clone());
                tracing::info!(name, not_after = %fmt_time(stored.info.not_after), "serving stored certificate");
                Some(stored)
            }
            Ok(Some(stored)) => {
                tracing::warn!(name, not_after = %fmt_time(stored.info.not_after), "stored certificate is not valid now; obtaining a new one");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(name, error = %e, "ignoring unusable stored certificate; obtaining a new one");
                None
            }
        }
    }
}
