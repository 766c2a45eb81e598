//! The background task of one ACME name: obtain the certificate if missing,
//! renew it when due, back off after failures.
//!
//! A failing name backs off on its own schedule (persisted in `status.json`, so
//! restarts don't hammer the CA) and never affects other names; a still-valid
//! certificate keeps being served while its renewal fails.
//!
//! Each attempt first looks in storage for a newer certificate (in a cluster,
//! another instance may have obtained it), then orders under a lease on the
//! name, so one instance of a cluster orders at a time; the others find the
//! lease taken, wait, and pick the certificate up (`cluster`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::clock::{fmt_time, sleep_until, unit_random};
use super::cluster::{Fetched, LEASE_EXTEND, LEASE_WAIT, ORDER_LEASE};
use super::schedule::{self, AriWindow, FailureKind, Validity};
use super::shared::{CertEvent, Shared};
use super::{NameStatus, StoredCert};
use crate::acme::{AcmeError, Issued};
use crate::config::AcmeChallenge;
use crate::storage::{Lease, StorageError};

/// One whole attempt (order, validation, download) may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How often to re-ask the CA for ARI when it gave no usable hint or failed.
const ARI_RETRY: Duration = Duration::from_secs(6 * 3600);

/// The state of one name's task.
pub(super) struct AcmeTask {
    pub shared: Arc<Shared>,
    pub name: String,
    pub challenges: Vec<AcmeChallenge>,
    /// The certificate being served, if any.
    pub current: Option<StoredCert>,
    pub cancel: CancellationToken,
}

impl AcmeTask {
    /// Runs until cancelled: sleeps until the next ARI poll or attempt, then
    /// does it.
    pub(super) async fn run(mut self) {
        let mut status = self
            .shared
            .store
            .load_status(&self.name)
            .unwrap_or_else(|e| {
                tracing::warn!(name = %self.name, error = %e, "ignoring unreadable status file");
                NameStatus::default()
            });
        if let (Some(next), Some(error)) = (status.retry_not_before(), &status.last_error) {
            tracing::info!(name = %self.name, next_attempt = %fmt_time(next), last_error = %error, "backing off after an earlier failure");
        }
        // The outcome before a restart is still the last one (not counted again).
        if let Some(metrics) = self.shared.metrics() {
            if status.failures > 0 {
                metrics.acme_result(&self.name, false, false);
            } else if status.last_success.is_some() {
                metrics.acme_result(&self.name, true, false);
            }
        }
        // One random draw per certificate, so re-evaluating the schedule does not
        // keep drifting the renewal time earlier.
        let mut unit = unit_random();
        let mut ari: Option<AriWindow> = None;
        let mut ari_poll_at = SystemTime::now();
        // Consecutive attempts that found shared storage unreachable.
        let mut storage_failures = 0;
        loop {
            let now = SystemTime::now();
            let validity = self.current.as_ref().map(stored_validity);
            let due = schedule::next_attempt(validity, status.retry_not_before(), ari, now, unit);
            self.shared.progress.record(&self.name, due, ari, &status);
            let poll_ari =
                self.current.is_some() && self.shared.acme.may_support_ari() && ari_poll_at < due;
            let wake = if poll_ari { ari_poll_at } else { due };
            if !sleep_until(wake, &self.cancel).await {
                return;
            }
            if poll_ari {
                ari_poll_at = self.poll_ari(&mut ari).await;
                if status.set_ari(ari) {
                    if let Err(e) = self.shared.store.save_status(&self.name, &status) {
                        tracing::debug!(name = %self.name, error = %e, "could not record the ARI window");
                    }
                }
                continue;
            }
            let attempt = self.attempt(&mut status).await;
            let retry = match &attempt {
                Attempt::StorageDown(error) => {
                    storage_failures += 1;
                    Some(self.storage_down(error, storage_failures))
                }
                Attempt::Busy => Some(SystemTime::now() + LEASE_WAIT),
                Attempt::Served | Attempt::Failed => None,
            };
            if !matches!(attempt, Attempt::StorageDown(_)) {
                storage_failures = 0;
            }
            if let Attempt::Served = attempt {
                unit = unit_random();
                ari = None;
                ari_poll_at = SystemTime::now();
            }
            if let Some(retry) = retry {
                if !sleep_until(retry, &self.cancel).await {
                    return;
                }
            }
        }
    }

    /// Refreshes the ARI window; returns when to poll next.
    async fn poll_ari(&self, ari: &mut Option<AriWindow>) -> SystemTime {
        let Some(leaf) = self.current.as_ref().and_then(|c| c.key.cert.first()) else {
            return SystemTime::now() + ARI_RETRY;
        };
        match self.shared.acme.renewal_info(leaf).await {
            Ok(Some(info)) => {
                let window = AriWindow {
                    start: info.start,
                    end: info.end,
                };
                *ari = Some(window);
                tracing::debug!(name = %self.name, start = %fmt_time(window.start), end = %fmt_time(window.end), "ARI renewal window");
                SystemTime::now()
                    + info
                        .poll
                        .clamp(Duration::from_secs(3600), Duration::from_secs(24 * 3600))
            }
            Ok(None) => SystemTime::now() + ARI_RETRY,
            Err(e) => {
                // Only a hint: the lifetime-based schedule still applies.
                tracing::debug!(name = %self.name, error = %e, "no renewal information");
                SystemTime::now() + ARI_RETRY
            }
        }
    }

    /// One attempt: adopt a newer stored certificate, or order one under the
    /// name's lease.
    async fn attempt(&mut self, status: &mut NameStatus) -> Attempt {
        let served = self.current.as_ref().map(|c| c.info.not_after);
        match self.shared.fetch_newer(&self.name, served).await {
            Ok(Some(fetched)) => return self.adopt(fetched),
            Ok(None) => {}
            // Redis down: fall through; taking the lease fails the same way
            // and is retried with backoff.
            Err(e) => {
                tracing::debug!(name = %self.name, error = %e, "cannot look for a stored certificate")
            }
        }
        let keys = self.shared.keys(&self.name);
        let lease = match self.shared.storage.lock(&keys.lease, ORDER_LEASE).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                tracing::debug!(name = %self.name, "another instance is ordering this name; waiting for it");
                return Attempt::Busy;
            }
            Err(e) => return Attempt::StorageDown(e),
        };
        let outcome = self.attempt_holding(&lease, status).await;
        if let Err(e) = self.shared.storage.unlock(&lease).await {
            tracing::debug!(name = %self.name, error = %e, "could not release the lease; it expires by itself");
        }
        outcome
    }

    /// The part of an attempt made while holding the lease.
    async fn attempt_holding(&mut self, lease: &Lease, status: &mut NameStatus) -> Attempt {
        // The previous holder may have finished between our look and our lock.
        // A stored value this instance cannot read (say, sealed with another
        // key-file) must not lead to a duplicate order: that is a failure.
        let served = self.current.as_ref().map(|c| c.info.not_after);
        match self.shared.fetch_newer(&self.name, served).await {
            Ok(Some(fetched)) => return self.adopt(fetched),
            Ok(None) => {}
            Err(e) => return Attempt::StorageDown(e),
        }
        if self.shared.storage.is_shared() {
            // Another instance failed recently: its backoff is ours too.
            let theirs = self.shared.shared_status(&self.name).await;
            if let Some(next) = theirs.retry_not_before() {
                if next > SystemTime::now() && theirs.failures >= status.failures {
                    *status = theirs;
                    return Attempt::Failed;
                }
            }
        }
        self.order(lease, status).await
    }

    /// Orders a certificate while the lease is held (and kept extended).
    async fn order(&mut self, lease: &Lease, status: &mut NameStatus) -> Attempt {
        let name = self.name.clone();
        let current = self.current.as_ref().and_then(|c| c.key.cert.first());
        tracing::info!(name = %name, renewal = self.current.is_some(), "obtaining a certificate");
        let started = Instant::now();
        let obtain = self.shared.acme.obtain(&name, &self.challenges, current);
        let result = tokio::select! {
            _ = self.cancel.cancelled() => return Attempt::Failed,
            () = keep_lease(&self.shared, lease) => Err(AcmeError::Order {
                name: name.clone(),
                reason: "lost the lease on this name to another instance".into(),
            }),
            result = tokio::time::timeout(ATTEMPT_TIMEOUT, obtain) => match result {
                Ok(result) => result,
                Err(_) => Err(AcmeError::Timeout {
                    name: name.clone(),
                    secs: ATTEMPT_TIMEOUT.as_secs(),
                }),
            },
        };
        let checked = result.map_err(Failure::from).and_then(|issued| {
            let label = self.shared.store.cert_path(&name);
            let stored = StoredCert::from_pem(
                issued.chain_pem.as_bytes(),
                issued.key_pem.as_bytes(),
                &label,
            )
            .map_err(|e| Failure {
                text: e.to_string(),
                kind: FailureKind::Other,
            })?;
            Ok((issued, stored))
        });
        match checked {
            Ok((issued, stored)) => {
                self.succeeded(issued, stored, started, status).await;
                Attempt::Served
            }
            Err(failure) => {
                self.failed(failure, status).await;
                Attempt::Failed
            }
        }
    }

    /// Serves a certificate found in storage.
    fn adopt(&mut self, fetched: Fetched) -> Attempt {
        self.shared.adopt(&self.name, &fetched);
        let _ = self.shared.events.send(CertEvent::Obtained {
            name: self.name.clone(),
            not_after: fetched.stored.info.not_after,
        });
        self.current = Some(fetched.stored);
        Attempt::Served
    }

    /// Serves, stores and records a new certificate.
    async fn succeeded(
        &mut self,
        issued: Issued,
        stored: StoredCert,
        started: Instant,
        status: &mut NameStatus,
    ) {
        let name = &self.name;
        // Serve first: a full disk must not keep a valid certificate off the wire.
        self.shared.resolver.set(name, stored.key.clone());
        self.shared.report_served();
        self.shared
            .save_cert(name, issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())
            .await;
        tracing::info!(name = %name, not_after = %fmt_time(stored.info.not_after), elapsed_ms = started.elapsed().as_millis() as u64, "certificate obtained");
        let _ = self.shared.events.send(CertEvent::Obtained {
            name: name.clone(),
            not_after: stored.info.not_after,
        });
        self.current = Some(stored);
        status.succeeded(SystemTime::now());
        if let Some(metrics) = self.shared.metrics() {
            metrics.acme_result(name, true, true);
        }
        self.shared.save_status(name, status).await;
    }

    /// End of the certificate served, if it is valid at `now` (for logs).
    fn serving_until(&self, now: SystemTime) -> Option<String> {
        self.current
            .as_ref()
            .filter(|c| c.info.is_valid_at(now))
            .map(|c| fmt_time(c.info.not_after))
    }

    /// Shared storage failed before anything was asked of the CA: logged,
    /// announced, and retried with the storage backoff (`schedule`). The
    /// persisted failure count is the CA's and stays as it is.
    fn storage_down(&self, error: &StorageError, failures: u32) -> SystemTime {
        let now = SystemTime::now();
        let next = now + schedule::storage_retry_delay(failures, unit_random());
        let serving = self.serving_until(now);
        tracing::warn!(
            name = %self.name,
            error = %error,
            next_attempt = %fmt_time(next),
            still_serving_until = serving.as_deref().unwrap_or("-"),
            "shared storage unreachable: cannot take the lease to obtain a certificate; retrying"
        );
        let _ = self.shared.events.send(CertEvent::Failed {
            name: self.name.clone(),
            error: format!("shared storage: {error}"),
            next_attempt: next,
        });
        next
    }

    /// Schedules the retry, logs and records a failed attempt.
    async fn failed(&self, failure: Failure, status: &mut NameStatus) {
        let name = &self.name;
        let now = SystemTime::now();
        let next = schedule::next_retry(
            status.failures.saturating_add(1),
            failure.kind,
            now,
            unit_random(),
        );
        let serving = self.serving_until(now);
        tracing::warn!(
            name = %name,
            error = %failure.text,
            next_attempt = %fmt_time(next),
            still_serving_until = serving.as_deref().unwrap_or("-"),
            "could not obtain a certificate"
        );
        status.failed(failure.text.clone(), now, next);
        if let Some(metrics) = self.shared.metrics() {
            metrics.acme_result(name, false, true);
        }
        self.shared.save_status(name, status).await;
        let _ = self.shared.events.send(CertEvent::Failed {
            name: name.clone(),
            error: failure.text,
            next_attempt: next,
        });
    }
}

/// How an attempt ended.
enum Attempt {
    /// A new certificate is served (obtained here or by another instance).
    Served,
    /// It failed; the status says when to try again.
    Failed,
    /// Another instance holds the lease: look again shortly.
    Busy,
    /// Shared storage could not be reached: retry with the storage backoff.
    StorageDown(StorageError),
}

/// Extends `lease` while an order runs; returns only if the lease was lost
/// (expired and taken by another instance), which must stop the order. A
/// storage that cannot be reached says nothing about the lease: keep going.
async fn keep_lease(shared: &Shared, lease: &Lease) {
    loop {
        tokio::time::sleep(LEASE_EXTEND).await;
        match shared.storage.extend(lease, ORDER_LEASE).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "could not extend the order lease"),
        }
    }
}

/// A failed attempt as the schedule and the logs see it.
struct Failure {
    text: String,
    kind: FailureKind,
}

impl From<AcmeError> for Failure {
    /// Rate limits wait longer, until the CA's own retry time if it named one.
    fn from(error: AcmeError) -> Self {
        let kind = if error.is_rate_limited() {
            FailureKind::RateLimited {
                retry_after: error.retry_after(),
            }
        } else {
            FailureKind::Other
        };
        Failure {
            text: error.to_string(),
            kind,
        }
    }
}

fn stored_validity(cert: &StoredCert) -> Validity {
    Validity {
        not_before: cert.info.not_before,
        not_after: cert.info.not_after,
    }
}
