//! One upstream: its address, how to name it, and where its idle connections wait.

use std::sync::Arc;

use http::uri::Authority;

use super::pool::PoolKey;
use crate::config::Upstream;

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
}

impl UpstreamTarget {
    /// Names `target` and finds its pool lane.
    pub(super) fn new(target: Upstream) -> Self {
        let authority = match &target {
            Upstream::Tcp { .. } => target.to_string().parse().ok(),
            Upstream::Unix { .. } => None,
        }
        .unwrap_or_else(|| Authority::from_static("localhost"));
        UpstreamTarget {
            label: target.to_string().into(),
            authority,
            key: PoolKey::of(&target),
            target,
        }
    }
}
