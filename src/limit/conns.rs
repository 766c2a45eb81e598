//! Connection caps: how many client connections may be open at once, in all
//! and from one IP address, counted across every worker thread.
//!
//! A connection takes a [`ConnPermit`] when it is accepted and gives it back
//! when its socket closes (the permit moves into an upgraded tunnel with the
//! socket, so a WebSocket counts for as long as it lives). The global count is
//! one atomic; the per-IP counts live in sharded maps whose entries are
//! removed when they reach zero, so a flood of addresses costs memory only
//! while its connections are open, and a shard that emptied gives its table
//! back.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

/// Shards of the per-IP map: fewer lock collisions between workers.
const SHARDS: usize = 32;
/// Refusals are logged at most this often per key (the global cap, or one IP).
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Why a connection was refused, as the metric's `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max-connections` reached.
    MaxConnections,
    /// `max-connections-per-ip` reached for this peer.
    PerIp,
}

/// The counters of refused connections, by reason; fetched once from the
/// metrics registry so counting is one atomic add.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefusedCounters {
    /// `reason="max-connections"`.
    pub max_connections: Counter,
    /// `reason="per-ip"`.
    pub per_ip: Counter,
}

/// Open connections per peer address, and when a refusal for it was last logged.
#[derive(Debug, Default)]
struct PerIp {
    open: usize,
    logged: Option<Instant>,
}

/// The caps and the live counts, shared by every worker.
#[derive(Debug)]
pub(crate) struct ConnCaps {
    max: usize,
    per_ip_max: usize,
    open: AtomicUsize,
    /// The most connections open at once since [`ConnCaps::take_peak`] last
    /// ran: tells the allocator trim (server/trim.rs) that a burst ended.
    peak: AtomicUsize,
    shards: Box<[Mutex<HashMap<IpAddr, PerIp>>]>,
    hasher: RandomState,
    /// When a global refusal was last logged, in ms since `epoch` (+1, 0 = never).
    global_logged: AtomicU64,
    epoch: Instant,
    refused: RefusedCounters,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    caps: Arc<ConnCaps>,
    ip: IpAddr,
}

impl ConnCaps {
    /// Caps of `max` connections in all and `per_ip_max` from one address.
    pub(crate) fn new(max: usize, per_ip_max: usize, refused: RefusedCounters) -> Arc<Self> {
        Arc::new(ConnCaps {
            max,
            per_ip_max,
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            global_logged: AtomicU64::new(0),
            epoch: Instant::now(),
            refused,
        })
    }

    /// Admits a connection from `ip` (already canonical), or says which cap
    /// it hits. A refusal is counted, and logged unless its key was logged
    /// within the last second.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.max_connections.inc();
            if self.log_global_now() {
                tracing::warn!(%ip, max_connections = self.max, "connection refused: max-connections reached");
            }
            return Err(Refused::MaxConnections);
        }
        let mut shard = self.shard(ip);
        let entry = shard.entry(ip).or_default();
        if entry.open >= self.per_ip_max {
            let now = Instant::now();
            let log = entry.logged.is_none_or(|at| now >= at + LOG_EVERY);
            if log {
                entry.logged = Some(now);
            }
            drop(shard);
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.per_ip.inc();
            if log {
                tracing::warn!(%ip, max_connections_per_ip = self.per_ip_max, "connection refused: max-connections-per-ip reached");
            }
            return Err(Refused::PerIp);
        }
        entry.open += 1;
        drop(shard);
        self.peak.fetch_max(before + 1, Ordering::Relaxed);
        Ok(ConnPermit {
            caps: self.clone(),
            ip,
        })
    }

    /// The most connections open at once since the last call, and how many
    /// are open now; the peak starts again from now.
    pub(crate) fn take_peak(&self) -> (usize, usize) {
        let open = self.open.load(Ordering::Acquire);
        let peak = self.peak.swap(open, Ordering::Relaxed);
        (peak.max(open), open)
    }

    /// Whether a global refusal may be logged now (at most once per second).
    fn log_global_now(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.global_logged.load(Ordering::Relaxed);
        let due = last == 0 || now >= last + LOG_EVERY.as_millis() as u64;
        due && self
            .global_logged
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, PerIp>> {
        let i = (self.hasher.hash_one(ip) as usize) % SHARDS;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back one connection of `ip`; an address with none left is
    /// forgotten, and a shard left mostly empty shrinks its table.
    fn release(&self, ip: IpAddr) {
        let mut shard = self.shard(ip);
        if let Some(entry) = shard.get_mut(&ip) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 {
                shard.remove(&ip);
                if shard.capacity() > 64 && shard.len() * 4 < shard.capacity() {
                    let keep = shard.len() * 2;
                    shard.shrink_to(keep);
                }
            }
        }
        drop(shard);
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.caps.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn per_ip_and_global_caps_count_and_release() {
        let refused = RefusedCounters::default();
        let caps = ConnCaps::new(3, 2, refused.clone());
        let a1 = caps.admit(ip(1)).expect("first from .1");
        let _a2 = caps.admit(ip(1)).expect("second from .1");
        assert_eq!(caps.admit(ip(1)).err(), Some(Refused::PerIp));
        let _b1 = caps.admit(ip(2)).expect("first from .2");
        assert_eq!(caps.admit(ip(3)).err(), Some(Refused::MaxConnections));
        drop(a1);
        let _c1 = caps.admit(ip(3)).expect("a place came free");
        assert_eq!(refused.per_ip.get(), 1);
        assert_eq!(refused.max_connections.get(), 1);
    }

    #[test]
    fn addresses_are_forgotten_when_their_last_connection_closes() {
        let caps = ConnCaps::new(100_000, 1, RefusedCounters::default());
        let permits: Vec<_> = (0..10_000u32)
            .map(|i| caps.admit(IpAddr::from(i.to_be_bytes())).expect("admitted"))
            .collect();
        drop(permits);
        let (entries, capacity) = caps.shards.iter().fold((0, 0), |(n, c), s| {
            let s = s.lock().unwrap_or_else(PoisonError::into_inner);
            (n + s.len(), c + s.capacity())
        });
        assert_eq!(entries, 0);
        assert!(capacity < 10_000, "tables kept {capacity} slots");
        assert_eq!(caps.open.load(Ordering::Acquire), 0);
    }
}
