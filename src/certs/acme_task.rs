//! The background task of one ACME name: obtain the certificate if missing,
//! renew it when due, back off after failures.
//!
//! A failing name backs off on its own schedule (persisted in `status.json`, so
//! restarts don't hammer the CA) and never affects other names; a still-valid
//! certificate keeps being served while its renewal fails.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::clock::{fmt_time, sleep_until, unit_random};
use super::manager::{CertEvent, Shared};
use super::schedule::{self, AriWindow, FailureKind, Validity};
use super::{NameStatus, StoredCert};
use crate::acme::{AcmeError, Issued};
use crate::config::AcmeChallenge;

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
        // One random draw per certificate, so re-evaluating the schedule does not
        // keep drifting the renewal time earlier.
        let mut unit = unit_random();
        let mut ari: Option<AriWindow> = None;
        let mut ari_poll_at = SystemTime::now();
        loop {
            let now = SystemTime::now();
            let validity = self.current.as_ref().map(stored_validity);
            let due = schedule::next_attempt(validity, status.retry_not_before(), ari, now, unit);
            let poll_ari =
                self.current.is_some() && self.shared.acme.may_support_ari() && ari_poll_at < due;
            let wake = if poll_ari { ari_poll_at } else { due };
            if !sleep_until(wake, &self.cancel).await {
                return;
            }
            if poll_ari {
                ari_poll_at = self.poll_ari(&mut ari).await;
                continue;
            }
            if self.attempt(&mut status).await {
                unit = unit_random();
                ari = None;
                ari_poll_at = SystemTime::now();
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

    /// One attempt; true if a new certificate is now served.
    async fn attempt(&mut self, status: &mut NameStatus) -> bool {
        let name = self.name.clone();
        let current = self.current.as_ref().and_then(|c| c.key.cert.first());
        tracing::info!(name = %name, renewal = self.current.is_some(), "obtaining a certificate");
        let started = Instant::now();
        let obtain = self.shared.acme.obtain(&name, &self.challenges, current);
        let result = tokio::select! {
            _ = self.cancel.cancelled() => return false,
            result = tokio::time::timeout(ATTEMPT_TIMEOUT, obtain) => result,
        };
        let result = match result {
            Ok(result) => result,
            Err(_) => Err(AcmeError::Timeout {
                name: name.clone(),
                secs: ATTEMPT_TIMEOUT.as_secs(),
            }),
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
                self.succeeded(issued, stored, started, status);
                true
            }
            Err(failure) => {
                self.failed(failure, status);
                false
            }
        }
    }

    /// Serves, stores and records a new certificate.
    fn succeeded(
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
        if let Err(e) =
            self.shared
                .store
                .save(name, issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())
        {
            tracing::error!(name = %name, error = %e, "serving the new certificate, but storing it failed; it will be obtained again after a restart");
        }
        tracing::info!(name = %name, not_after = %fmt_time(stored.info.not_after), elapsed_ms = started.elapsed().as_millis() as u64, "certificate obtained");
        let _ = self.shared.events.send(CertEvent::Obtained {
            name: name.clone(),
            not_after: stored.info.not_after,
        });
        self.current = Some(stored);
        status.succeeded(SystemTime::now());
        if let Err(e) = self.shared.store.save_status(name, status) {
            tracing::warn!(name = %name, error = %e, "could not record success");
        }
    }

    /// Schedules the retry, logs and records a failed attempt.
    fn failed(&self, failure: Failure, status: &mut NameStatus) {
        let name = &self.name;
        let now = SystemTime::now();
        let next = schedule::next_retry(
            status.failures.saturating_add(1),
            failure.kind,
            now,
            unit_random(),
        );
        let serving = self
            .current
            .as_ref()
            .filter(|c| c.info.is_valid_at(now))
            .map(|c| fmt_time(c.info.not_after));
        tracing::warn!(
            name = %name,
            error = %failure.text,
            next_attempt = %fmt_time(next),
            still_serving_until = serving.as_deref().unwrap_or("-"),
            "could not obtain a certificate"
        );
        status.failed(failure.text.clone(), now, next);
        if let Err(e) = self.shared.store.save_status(name, status) {
            tracing::warn!(name = %name, error = %e, "could not record the failure");
        }
        let _ = self.shared.events.send(CertEvent::Failed {
            name: name.clone(),
            error: failure.text,
            next_attempt: next,
        });
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
