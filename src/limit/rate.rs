//! Per-client token buckets (`rate-limit "20/s" burst=40`).
//!
//! A client is an IPv4 address or an IPv6 /64: one IPv6 host usually owns a
//! whole /64, so counting single IPv6 addresses would let it rotate freely.
//! Buckets live in sharded maps with a hard cap on entries; when a shard is
//! full, buckets that have refilled completely (clients that went quiet) are
//! dropped first, and if that frees nothing the shard is halved, so an attacker
//! with many addresses costs bounded memory rather than unbounded.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{canonical_ip, RateLimit};

/// Shards reduce lock contention between worker threads.
const SHARDS: usize = 16;
/// Total tracked clients per limiter; about 40 bytes each.
const MAX_CLIENTS: usize = 64 * 1024;

/// Who a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// An IPv4 address.
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => ClientKey::V4(v4.into()),
            IpAddr::V6(v6) => ClientKey::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A token-bucket limiter keyed by client.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_second: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<ClientKey, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl RateLimiter {
    /// A limiter allowing `limit.per_second` requests per second per client,
    /// with bursts up to `limit.burst`.
    pub(crate) fn new(limit: RateLimit) -> Self {
        RateLimiter {
            per_second: limit.per_second.max(f64::MIN_POSITIVE),
            burst: f64::from(limit.burst.max(1)),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    /// Takes one token for `client`. `Err` carries how long until a token is
    /// available again (for `Retry-After`).
    pub(crate) fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let shard = &self.shards[(self.hasher.hash_one(client) as usize) % SHARDS];
        // A poisoned lock only means another thread panicked mid-update of a
        // counter; the map itself is still usable.
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS / SHARDS {
            self.evict(&mut buckets, now);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait(bucket.tokens))
        }
    }

    /// Whether `client` has a token, without taking one: for costs that are
    /// charged only afterwards (a failed password is counted once it failed,
    /// but a client out of tokens is not even checked).
    pub(crate) fn peek(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let shard = &self.shards[(self.hasher.hash_one(client) as usize) % SHARDS];
        let buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        match buckets
            .get(&client)
            .map(|bucket| self.refilled(bucket, now))
        {
            Some(tokens) if tokens < 1.0 => Err(self.wait(tokens)),
            _ => Ok(()),
        }
    }

    /// The tokens `bucket` holds at `now`.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// How long until a bucket holding `tokens` holds one.
    fn wait(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64((1.0 - tokens) / self.per_second)
    }

    /// Number of clients currently tracked.
    #[cfg(test)]
    pub(crate) fn tracked_clients(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn evict(&self, buckets: &mut HashMap<ClientKey, Bucket>, now: Instant) {
        let refill = Duration::from_secs_f64(self.burst / self.per_second);
        buckets.retain(|_, b| now.saturating_duration_since(b.updated) < refill);
        if buckets.len() >= MAX_CLIENTS / SHARDS {
            let mut keep = false;
            buckets.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit {
            per_second,
            burst,
            shared: false,
        })
    }

    #[test]
    fn burst_then_refill() {
        let l = limiter(10.0, 3);
        let t0 = Instant::now();
        let c = ClientKey::from("192.0.2.1".parse::<IpAddr>().unwrap());
        assert!(l.check(c, t0).is_ok());
        assert!(l.check(c, t0).is_ok());
        assert!(l.check(c, t0).is_ok());
        let wait = l.check(c, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(l.check(c, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.peek(c, t0).is_err());
        assert!(l.peek(c, t0 + Duration::from_millis(200)).is_ok());
        assert!(
            l.peek(c, t0 + Duration::from_millis(200)).is_ok(),
            "peek takes nothing"
        );
        // Other clients are unaffected.
        let other = ClientKey::from("192.0.2.2".parse::<IpAddr>().unwrap());
        assert!(l.check(other, t0).is_ok());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::from(a), ClientKey::from(b));
        assert_ne!(ClientKey::from(a), ClientKey::from(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(ClientKey::from(mapped), ClientKey::from(v4));
    }

    #[test]
    fn memory_stays_bounded_under_address_rotation() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 * 3) {
            let _ = l.check(ClientKey::V4(i), t0);
        }
        assert!(l.tracked_clients() <= MAX_CLIENTS);
    }
}
