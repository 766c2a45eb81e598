//! The systemd watchdog (`WatchdogSec=`): `WATCHDOG=1` at half the interval,
//! sent only while every worker thread still runs its tasks.
//!
//! The ping is sent from the background runtime, which would keep pinging
//! while a worker is wedged (a blocking call, a busy loop) and its clients
//! hang. So each worker stamps a heartbeat of its own from a task on its own
//! runtime; a stale stamp withholds the ping, and systemd restarts bellhop
//! once the interval passes without one. A stamp is one relaxed atomic store
//! per quarter interval per worker: nothing on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::notify::Notifier;

/// One heartbeat per worker: milliseconds since `epoch` of its last stamp.
#[derive(Debug)]
pub(super) struct Heartbeats {
    epoch: Instant,
    beats: Vec<Arc<AtomicU64>>,
}

impl Heartbeats {
    /// Starts a heartbeat task on every worker runtime, stamping every
    /// quarter of `interval`. The tasks end with their runtimes.
    pub(super) fn start(workers: &[Handle], interval: Duration) -> Heartbeats {
        let epoch = Instant::now();
        let every = interval / 4;
        let beats = workers
            .iter()
            .map(|worker| {
                let beat = Arc::new(AtomicU64::new(0));
                worker.spawn(stamp(beat.clone(), epoch, every));
                beat
            })
            .collect();
        Heartbeats { epoch, beats }
    }

    /// How many workers have not stamped within `max_age`.
    fn stale(&self, max_age: Duration) -> usize {
        let now = millis_since(self.epoch);
        let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.beats
            .iter()
            .filter(|b| now.saturating_sub(b.load(Ordering::Relaxed)) > max_age)
            .count()
    }
}

/// A worker's heartbeat: stamps `beat` every `every` for as long as its
/// runtime polls tasks.
async fn stamp(beat: Arc<AtomicU64>, epoch: Instant, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        beat.store(millis_since(epoch), Ordering::Relaxed);
    }
}

/// Pings the watchdog every half `interval` while every worker's heartbeat is
/// at most half an interval old (it stamps every quarter). Runs until dropped.
pub(super) async fn ping(heartbeats: Heartbeats, notifier: Notifier, interval: Duration) {
    let half = interval / 2;
    let mut ticks = tokio::time::interval(half);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match heartbeats.stale(half) {
            0 => notifier.watchdog(),
            stale => tracing::warn!(
                workers = stale,
                "worker threads not responding; withholding the systemd watchdog ping"
            ),
        }
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_stopped_stamping_is_stale() {
        let epoch = Instant::now() - Duration::from_secs(10);
        let fresh = Arc::new(AtomicU64::new(millis_since(epoch)));
        let stuck = Arc::new(AtomicU64::new(0));
        let heartbeats = Heartbeats {
            epoch,
            beats: vec![fresh.clone(), stuck],
        };
        assert_eq!(heartbeats.stale(Duration::from_secs(1)), 1);
        assert_eq!(heartbeats.stale(Duration::from_secs(60)), 0);
    }
}
