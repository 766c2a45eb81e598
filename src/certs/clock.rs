//! Wall-clock waiting, jitter and time stamps for the background tasks.
//!
//! Certificates expire by the wall clock, not by a monotonic one, so the tasks
//! sleep towards wall-clock deadlines in bounded slices.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::crypto::random_u32;

/// Sleep in slices of at most this, re-reading the wall clock in between, so a
/// suspended VM or a clock step does not push renewal far past its time.
const MAX_SLEEP: Duration = Duration::from_secs(600);

/// Sleeps until the wall-clock `deadline`; false if cancelled first.
pub(super) async fn sleep_until(deadline: SystemTime, cancel: &CancellationToken) -> bool {
    loop {
        let Ok(left) = deadline.duration_since(SystemTime::now()) else {
            return !cancel.is_cancelled();
        };
        if left.is_zero() {
            return !cancel.is_cancelled();
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
        }
    }
}

/// A uniform random number in `[0, 1)` for jitter.
pub(super) fn unit_random() -> f64 {
    f64::from(random_u32()) / (f64::from(u32::MAX) + 1.0)
}

/// RFC 3339 UTC, second precision, for logs.
pub(super) fn fmt_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
