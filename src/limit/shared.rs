//! `rate-limit "20/s" shared=#true`: one bucket per client across every
//! instance of a cluster, kept in Redis (`storage::RedisLimits`).
//!
//! One Redis round trip per request to such a route, and none for any other
//! route. When Redis cannot be reached the instance counts locally with a
//! bucket of the same size: a client then gets up to N times the limit over N
//! instances, which is the price of never answering 500 because Redis is
//! away. The fallback lasts [`RETRY_AFTER`] before Redis is tried again, so a
//! dead Redis costs one failed call per interval, not one per request, and
//! it is logged at most once per [`LOG_EVERY`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rate::{ClientKey, RateLimiter};
use crate::config::RateLimit;
use crate::storage::RedisLimits;

/// How long an instance counts locally after Redis failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// At most one "Redis unreachable" log line per this interval and limiter.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// A route's rate limit: counted by this instance, or across the cluster.
#[derive(Debug)]
pub(crate) enum Limiter {
    /// `rate-limit "20/s"`.
    Local(RateLimiter),
    /// `rate-limit "20/s" shared=#true`.
    Shared(SharedLimiter),
}

impl Limiter {
    /// The limiter for `limit`; `bucket` names it in Redis (the site, so two
    /// sites with the same limit keep apart, as they do locally).
    pub(crate) fn new(limit: RateLimit, bucket: &str, remote: Option<&Arc<RedisLimits>>) -> Self {
        match remote.filter(|_| limit.shared) {
            Some(remote) => Limiter::Shared(SharedLimiter {
                local: RateLimiter::new(limit),
                remote: remote.clone(),
                bucket: format!("{bucket}|{}/{}", limit.per_second, limit.burst),
                limit,
                epoch: Instant::now(),
                local_until_ms: AtomicU64::new(0),
                probing: AtomicBool::new(false),
                logged_ms: AtomicU64::new(0),
            }),
            None => Limiter::Local(RateLimiter::new(limit)),
        }
    }

    /// Takes one token for `client`; `Err` says how long until the next one.
    ///
    /// The Redis round trip is boxed: inline, its state (over 1 KiB) would
    /// size the future of every request on every route, limited or not, and
    /// that future is copied whole when an HTTP/2 stream is spawned.
    pub(crate) async fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        match self {
            Limiter::Local(local) => local.check(client, now),
            Limiter::Shared(shared) => Box::pin(shared.check(client, now)).await,
        }
    }
}

/// Buckets in Redis, with a local limiter for when Redis is away.
#[derive(Debug)]
pub(crate) struct SharedLimiter {
    local: RateLimiter,
    remote: Arc<RedisLimits>,
    bucket: String,
    limit: RateLimit,
    /// Times below are milliseconds since this instant.
    epoch: Instant,
    /// Count locally until then (Redis failed recently); 0 while Redis answers.
    local_until_ms: AtomicU64,
    /// Set while one request checks whether Redis is back, so the others keep
    /// counting locally instead of queueing behind a reconnect.
    probing: AtomicBool,
    /// When the fallback was last logged.
    logged_ms: AtomicU64,
}

impl SharedLimiter {
    async fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let now_ms = self.millis(now);
        let local_until = self.local_until_ms.load(Ordering::Relaxed);
        let probe = local_until != 0;
        if probe && (now_ms < local_until || self.probing.swap(true, Ordering::AcqRel)) {
            return self.local.check(client, now);
        }
        let result = self.remote_check(client, now, now_ms).await;
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        result
    }

    /// Asks Redis; on failure counts locally and starts the fallback interval.
    async fn remote_check(
        &self,
        client: ClientKey,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Duration> {
        let bucket = match client {
            ClientKey::V4(ip) => format!("{}|4:{ip:08x}", self.bucket),
            ClientKey::V6(net) => format!("{}|6:{net:016x}", self.bucket),
        };
        match self
            .remote
            .take(&bucket, self.limit.per_second, self.limit.burst)
            .await
        {
            Ok(decision) => {
                self.local_until_ms.store(0, Ordering::Relaxed);
                decision.map_or(Ok(()), Err)
            }
            Err(e) => {
                self.local_until_ms.store(
                    now_ms.max(1) + RETRY_AFTER.as_millis() as u64,
                    Ordering::Relaxed,
                );
                let logged = self.logged_ms.load(Ordering::Relaxed);
                let first = logged == 0;
                if (first || now_ms >= logged + LOG_EVERY.as_millis() as u64)
                    && self
                        .logged_ms
                        .compare_exchange(
                            logged,
                            now_ms.max(1),
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    tracing::warn!(error = %e, "shared rate limit unavailable; counting on this instance until Redis answers");
                }
                self.local.check(client, now)
            }
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }
}
