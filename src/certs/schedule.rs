//! When to renew and when to retry: pure functions of the certificate, the
//! failure history, the current time and a random number.
//!
//! Nothing here reads a clock or a random source. Callers pass `now` and a
//! `unit` random value in `[0, 1)`, which makes every decision unit-testable and
//! keeps the policy in one readable place:
//!
//! - **Renewal without ARI**: due when one third of the lifetime remains, or one
//!   half for certificates shorter than 10 days. Spread earlier by up to a
//!   thirtieth of the lifetime (at most a day) so many names or many servers do
//!   not all renew in the same second.
//! - **Renewal with ARI** (RFC 9773): a uniformly random point in the CA's
//!   suggested window; a window already begun means now.
//! - **Backoff after a failure**: 1 min, 2 min, 4 min … doubling up to 1 day,
//!   plus up to 25 % jitter. After `rateLimited` at least 1 h, or the CA's own
//!   "retry after" time when its problem detail names one, up to 7 days.
//! - **Shared storage unreachable** (a cluster's Redis is down): 5 s, 10 s …
//!   doubling up to 5 min, plus jitter. The CA is not asked at all then, so
//!   nothing is saved by waiting longer, and the CA's own backoff is left
//!   untouched: an outage does not delay the next real attempt by hours.

use std::time::{Duration, SystemTime};

/// Certificates shorter than this renew at half their lifetime instead of a third.
pub(crate) const SHORT_LIVED: Duration = Duration::from_secs(10 * 24 * 3600);
/// First retry delay after a failure.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(60);
/// Longest retry delay after ordinary failures.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(24 * 3600);
/// Shortest delay after the CA said `rateLimited`.
pub(crate) const RATE_LIMITED_MIN: Duration = Duration::from_secs(3600);
/// Longest delay after the CA said `rateLimited` (its own retry-after may be days).
pub(crate) const RATE_LIMITED_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// First retry delay when shared storage could not be reached.
pub(crate) const STORAGE_RETRY_MIN: Duration = Duration::from_secs(5);
/// Longest retry delay while shared storage cannot be reached.
pub(crate) const STORAGE_RETRY_MAX: Duration = Duration::from_secs(300);
/// Largest renewal jitter.
const JITTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// Validity period of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl Validity {
    /// `not_after - not_before` (zero if inverted).
    pub(crate) fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }
}

/// A renewal window suggested by the CA through ARI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AriWindow {
    /// Earliest suggested renewal time.
    pub start: SystemTime,
    /// Latest suggested renewal time.
    pub end: SystemTime,
}

/// Why the last attempt failed, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Validation, transport or any other error: ordinary exponential backoff.
    Other,
    /// The CA answered `rateLimited`, optionally saying until when.
    RateLimited {
        /// The time the CA's problem detail said to retry after, if it said.
        retry_after: Option<SystemTime>,
    },
}

/// The moment renewal becomes due without ARI and without jitter.
pub(crate) fn renewal_due(validity: Validity) -> SystemTime {
    let lifetime = validity.lifetime();
    let remaining = if lifetime < SHORT_LIVED {
        lifetime / 2
    } else {
        lifetime / 3
    };
    validity.not_after - remaining
}

/// When to renew a certificate: a random point of the ARI window if the CA gave
/// one, otherwise [`renewal_due`] moved earlier by a random jitter.
pub(crate) fn renewal_time(validity: Validity, ari: Option<AriWindow>, unit: f64) -> SystemTime {
    let unit = unit.clamp(0.0, 1.0);
    if let Some(window) = ari {
        let span = window
            .end
            .duration_since(window.start)
            .unwrap_or(Duration::ZERO);
        return window.start + span.mul_f64(unit);
    }
    let jitter = (validity.lifetime() / 30).min(JITTER_MAX).mul_f64(unit);
    let due = renewal_due(validity);
    // Never jitter to before the certificate even started.
    due.checked_sub(jitter)
        .filter(|t| *t >= validity.not_before)
        .unwrap_or(due)
}

/// Delay before the next attempt after `failures` consecutive failures (≥ 1).
pub(crate) fn backoff_delay(failures: u32, unit: f64) -> Duration {
    doubling(BACKOFF_MIN, BACKOFF_MAX, failures, unit)
}

/// Delay before trying shared storage again after `failures` consecutive
/// failures to reach it (≥ 1).
pub(crate) fn storage_retry_delay(failures: u32, unit: f64) -> Duration {
    doubling(STORAGE_RETRY_MIN, STORAGE_RETRY_MAX, failures, unit)
}

/// `min`, doubled per failure after the first, capped at `max`, plus up to
/// 25 % jitter (still capped).
fn doubling(min: Duration, max: Duration, failures: u32, unit: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let base = min.saturating_mul(1u32 << exponent).min(max);
    (base + base.mul_f64(unit.clamp(0.0, 1.0) / 4.0)).min(max)
}

/// The time of the next attempt after a failure at `now`.
pub(crate) fn next_retry(
    failures: u32,
    kind: FailureKind,
    now: SystemTime,
    unit: f64,
) -> SystemTime {
    let ordinary = now + backoff_delay(failures, unit);
    match kind {
        FailureKind::Other => ordinary,
        FailureKind::RateLimited { retry_after } => {
            let floor = now + RATE_LIMITED_MIN.max(backoff_delay(failures, unit));
            let wanted = retry_after.map_or(floor, |t| t.max(floor));
            wanted.min(now + RATE_LIMITED_MAX)
        }
    }
}

/// When the certificate manager should next try to obtain a certificate for a name.
///
/// - no usable certificate: now, unless a backoff is pending;
/// - a certificate: its [`renewal_time`], or later if a backoff is pending.
///
/// `retry_not_before` is the persisted "next attempt" of the last failure, so a
/// restart does not hammer the CA.
pub(crate) fn next_attempt(
    cert: Option<Validity>,
    retry_not_before: Option<SystemTime>,
    ari: Option<AriWindow>,
    now: SystemTime,
    unit: f64,
) -> SystemTime {
    let renew = match cert {
        Some(validity) if now < validity.not_after => renewal_time(validity, ari, unit),
        _ => now,
    };
    match retry_not_before {
        Some(retry) => renew.max(retry),
        None => renew,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const DAY: Duration = Duration::from_secs(86400);

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn validity(start: SystemTime, lifetime: Duration) -> Validity {
        Validity {
            not_before: start,
            not_after: start + lifetime,
        }
    }

    #[test]
    fn ninety_day_cert_renews_with_a_third_left() {
        let v = validity(t(1_000_000), 90 * DAY);
        assert_eq!(renewal_due(v), t(1_000_000) + 60 * DAY);
        // Jitter only moves earlier, by at most a day for a 90-day certificate.
        assert_eq!(renewal_time(v, None, 0.0), t(1_000_000) + 60 * DAY);
        assert_eq!(renewal_time(v, None, 1.0), t(1_000_000) + 59 * DAY);
        let mid = renewal_time(v, None, 0.5);
        assert!(mid < t(1_000_000) + 60 * DAY && mid > t(1_000_000) + 59 * DAY);
    }

    #[test]
    fn short_cert_renews_at_half() {
        let v = validity(t(1000), 6 * DAY);
        assert_eq!(renewal_due(v), t(1000) + 3 * DAY);
        let v = validity(t(1000), Duration::from_secs(20));
        assert_eq!(renewal_due(v), t(1010));
        // 20 s / 30 of jitter at most.
        let jittered = renewal_time(v, None, 1.0);
        assert!(jittered <= t(1010) && jittered >= t(1009));
    }

    #[test]
    fn ari_window_wins() {
        let v = validity(t(0), 90 * DAY);
        let w = AriWindow {
            start: t(10 * 86400),
            end: t(12 * 86400),
        };
        assert_eq!(renewal_time(v, Some(w), 0.0), t(10 * 86400));
        assert_eq!(renewal_time(v, Some(w), 0.5), t(11 * 86400));
        // An inverted window degrades to its start.
        let inverted = AriWindow {
            start: w.end,
            end: w.start,
        };
        assert_eq!(renewal_time(v, Some(inverted), 0.7), w.end);
    }

    #[test]
    fn storage_retries_double_from_five_seconds_to_five_minutes() {
        assert_eq!(storage_retry_delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(storage_retry_delay(2, 0.0), Duration::from_secs(10));
        assert_eq!(storage_retry_delay(7, 0.0), Duration::from_secs(300));
        assert_eq!(storage_retry_delay(1000, 0.99), STORAGE_RETRY_MAX);
        assert_eq!(storage_retry_delay(1, 1.0), Duration::from_millis(6250));
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_a_day() {
        assert_eq!(backoff_delay(1, 0.0), Duration::from_secs(60));
        assert_eq!(backoff_delay(2, 0.0), Duration::from_secs(120));
        assert_eq!(backoff_delay(3, 0.0), Duration::from_secs(240));
        assert_eq!(backoff_delay(11, 0.0), Duration::from_secs(60 * 1024));
        assert_eq!(backoff_delay(12, 0.0), BACKOFF_MAX);
        assert_eq!(backoff_delay(1000, 0.99), BACKOFF_MAX);
        // Jitter adds at most a quarter.
        assert_eq!(backoff_delay(1, 1.0), Duration::from_secs(75));
    }

    #[test]
    fn rate_limited_waits_longer() {
        let now = t(1_000_000);
        assert_eq!(
            next_retry(1, FailureKind::RateLimited { retry_after: None }, now, 0.0),
            now + RATE_LIMITED_MIN
        );
        let later = now + 3 * DAY;
        assert_eq!(
            next_retry(
                1,
                FailureKind::RateLimited {
                    retry_after: Some(later)
                },
                now,
                0.0
            ),
            later
        );
        let far = now + 30 * DAY;
        assert_eq!(
            next_retry(
                1,
                FailureKind::RateLimited {
                    retry_after: Some(far)
                },
                now,
                0.0
            ),
            now + RATE_LIMITED_MAX
        );
        assert_eq!(
            next_retry(1, FailureKind::Other, now, 0.0),
            now + BACKOFF_MIN
        );
    }

    #[test]
    fn next_attempt_respects_backoff_and_validity() {
        let now = t(1_000_000);
        // Nothing stored, no failure: now.
        assert_eq!(next_attempt(None, None, None, now, 0.3), now);
        // Nothing stored, a failure pending (restart during backoff): wait for it.
        assert_eq!(
            next_attempt(None, Some(now + DAY), None, now, 0.3),
            now + DAY
        );
        // A fresh certificate: its renewal time, even if an old retry time is past.
        let v = validity(now, 90 * DAY);
        assert_eq!(
            next_attempt(Some(v), Some(now - DAY), None, now, 0.0),
            now + 60 * DAY
        );
        // Renewal due but failing: the backoff decides.
        let old = validity(now - 80 * DAY, 90 * DAY);
        assert_eq!(
            next_attempt(Some(old), None, None, now, 0.0),
            now - 20 * DAY
        );
        assert_eq!(
            next_attempt(
                Some(old),
                Some(now + 600 * Duration::from_secs(1)),
                None,
                now,
                0.0
            ),
            now + Duration::from_secs(600)
        );
        // Expired: as if there were none.
        let expired = validity(now - 100 * DAY, 90 * DAY);
        assert_eq!(next_attempt(Some(expired), None, None, now, 0.0), now);
    }
}
