//! One upstream: its address, how to name it, and where its idle connections wait.

use std::sync::Arc;

use http::uri::Authority;
use prometheus_client::metrics::counter::Counter;

use super::health::Health;
use super::pool::PoolKey;
use crate::config::Upstream;
use crate::metrics::{Histogram, Metrics};

/// An upstream target of a `proxy` directive.
#[derive(Debug)]
pub(super) struct UpstreamTarget {
    /// What to dial.
    pub target: Upstream,
    /// `target` rendered once, so logging a request does not format it again.
    pub label: Arc<str>,
    /// Host header for a request that arrived without one (HTTP/1.0). For
    /// unix sockets it is `localhost`.
    pub authority: Authority,
    /// The lane of the per-thread pools that holds its idle connections.
    pub key: PoolKey,
    /// Its passive health, shared by every worker and kept across reloads.
    pub health: Arc<Health>,
    /// `bellhop_upstream_failures_total{upstream}`.
    pub failures: Counter,
    /// `bellhop_upstream_response_seconds` of this upstream.
    pub response_times: Histogram,
}

impl UpstreamTarget {
    /// Names `target` and finds its pool lane, health record and counters.
    pub(super) fn new(target: Upstream, metrics: &Metrics) -> Self {
        let authority = match &target {
            Upstream::Tcp { .. } => target.to_string().parse().ok(),
            Upstream::Unix { .. } => None,
        }
        .unwrap_or_else(|| Authority::from_static("localhost"));
        let label: Arc<str> = target.to_string().into();
        let key = PoolKey::of(&target);
        UpstreamTarget {
            failures: metrics.upstream_failures(&label),
            response_times: metrics.upstream(&label),
            health: Health::of(key),
            label,
            authority,
            key,
            target,
        }
    }
}
