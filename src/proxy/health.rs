//! Passive health: an upstream whose connects keep failing is skipped for a
//! while, so requests go to the others instead of each paying for a refusal.
//!
//! Only connect outcomes count (a refusal, a missing socket, a timeout): they
//! say the backend is not there. A backend that answers 500 is there. The
//! state is shared by every worker thread (one `Health` per upstream target,
//! for the life of the process), so it is a pair of atomics; the request path
//! reads one of them, and writes only when an outcome changes something.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::pool::PoolKey;

/// Consecutive failed connects after which an upstream is skipped.
pub(super) const FAILURES_BEFORE_COOL_DOWN: u32 = 3;
/// How long a failing upstream is skipped (unless every upstream is).
pub(super) const COOL_DOWN: Duration = Duration::from_secs(10);

/// The connect record of one upstream target.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Failed connects since the last successful one.
    failures: AtomicU32,
    /// While [`clock`] is below this, the upstream is skipped; 0 = never was.
    cool_until_ms: AtomicU64,
    /// [`clock`] at the last failed connect; 0 = none.
    failed_at_ms: AtomicU64,
}

/// Every target's record, indexed by its pool key: a reload that keeps an
/// upstream keeps its record. Touched when a config is loaded, never on the
/// request path.
static RECORDS: Mutex<Vec<Arc<Health>>> = Mutex::new(Vec::new());

impl Health {
    /// The record of the target behind `key`, shared with every `proxy` and
    /// worker that uses it.
    pub(super) fn of(key: PoolKey) -> Arc<Health> {
        let mut records = RECORDS.lock().unwrap_or_else(PoisonError::into_inner);
        let index = key.index();
        if records.len() <= index {
            records.resize_with(index + 1, Arc::default);
        }
        records[index].clone()
    }

    /// Whether the upstream is in its cool-down. The common case (it never
    /// failed) is one atomic load and no clock read.
    pub(super) fn cooling(&self) -> bool {
        let until = self.cool_until_ms.load(Ordering::Relaxed);
        until != 0 && clock() < until
    }

    /// A connect succeeded: the failure streak ends. Returns its length.
    /// Writes nothing when there was none, so healthy upstreams shared by
    /// every worker keep their cache line clean.
    pub(super) fn succeeded(&self) -> u32 {
        let streak = self.failures.load(Ordering::Relaxed);
        if streak != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.cool_until_ms.store(0, Ordering::Relaxed);
        }
        streak
    }

    /// Whether a connect failed within `gap` (on any worker). Requests
    /// waiting for a restarting upstream then skip their own attempt: a
    /// thousand waiting requests probe it like one, not a thousand times.
    pub(super) fn failed_within(&self, gap: Duration) -> bool {
        let at = self.failed_at_ms.load(Ordering::Relaxed);
        at != 0 && clock().saturating_sub(at) < gap.as_millis() as u64
    }

    /// A connect failed; returns the length of the failure streak. At
    /// [`FAILURES_BEFORE_COOL_DOWN`] (and every time after while it lasts)
    /// the cool-down starts again.
    pub(super) fn failed(&self) -> u32 {
        let streak = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = clock();
        self.failed_at_ms.store(now, Ordering::Relaxed);
        if streak >= FAILURES_BEFORE_COOL_DOWN {
            let until = now + COOL_DOWN.as_millis() as u64;
            self.cool_until_ms.store(until, Ordering::Relaxed);
        }
        streak
    }
}

/// Milliseconds since the first call, starting at 1 so that 0 can mean "unset".
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    start.elapsed().as_millis() as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_start_a_cool_down_and_a_success_ends_it() {
        let health = Health::default();
        assert!(!health.cooling());
        assert!(!health.failed_within(Duration::from_secs(1)));
        assert_eq!(health.failed(), 1);
        assert!(health.failed_within(Duration::from_secs(1)));
        assert_eq!(health.failed(), 2);
        assert!(!health.cooling(), "two failures are not a pattern yet");
        assert_eq!(health.failed(), 3);
        assert!(health.cooling());
        health.succeeded();
        assert!(!health.cooling());
        assert_eq!(health.failed(), 1, "the streak starts over");
    }
}
