//! The background task that re-issues internal-CA leaves at half their lifetime.
//!
//! Internal leaves live only in memory (see `internal_ca`), so nothing is
//! stored: a new leaf is signed and swapped into the resolver.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::clock::sleep_until;
use super::manager::InternalLeaf;
use super::schedule::{self, Validity};
use super::shared::{Shared, Slot};
use super::{CertInfo, LEAF_LIFETIME};

/// Re-issues `leaves` as each becomes due, until cancelled (the manager
/// replaces the task whenever the set of leaves changes).
pub(super) async fn renew_internal(
    shared: Arc<Shared>,
    mut leaves: Vec<(Slot, InternalLeaf)>,
    cancel: CancellationToken,
) {
    loop {
        let Some(due) = leaves
            .iter()
            .map(|(_, leaf)| schedule::renewal_due(leaf.validity))
            .min()
        else {
            return;
        };
        if !sleep_until(due, &cancel).await {
            return;
        }
        let now = SystemTime::now();
        let ca = match shared.internal_ca() {
            Ok(ca) => ca,
            Err(e) => {
                tracing::error!(error = %e, "internal CA unavailable; retrying in a minute");
                if !sleep_until(now + Duration::from_secs(60), &cancel).await {
                    return;
                }
                continue;
            }
        };
        for (slot, leaf) in leaves.iter_mut() {
            if schedule::renewal_due(leaf.validity) > now {
                continue;
            }
            match ca.issue(&leaf.names, now, LEAF_LIFETIME) {
                Ok(key) => {
                    let key = Arc::new(key);
                    leaf.validity = leaf_validity(&key, now);
                    shared.serve(slot, Some(key));
                    shared.report_served();
                    tracing::debug!(names = ?leaf.names, "re-issued internal certificate");
                }
                Err(e) => {
                    tracing::error!(names = ?leaf.names, error = %e, "re-issuing internal certificate failed");
                    leaf.validity.not_after = now + Duration::from_secs(120);
                    leaf.validity.not_before = now;
                }
            }
        }
    }
}

/// The validity of an internal leaf issued at `now`; its nominal lifetime if
/// the leaf cannot be read back.
pub(super) fn leaf_validity(key: &CertifiedKey, now: SystemTime) -> Validity {
    key.cert
        .first()
        .and_then(|der| CertInfo::parse(der, "internal leaf").ok())
        .map_or(
            Validity {
                not_before: now,
                not_after: now + LEAF_LIFETIME,
            },
            |info| Validity {
                not_before: info.not_before,
                not_after: info.not_after,
            },
        )
}
