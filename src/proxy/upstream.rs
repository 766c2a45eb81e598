//! One upstream: its address and its pool of keep-alive connections.

use std::sync::Arc;

use http::uri::Authority;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connector::UpstreamConnector;
use crate::body::Body;
use crate::config::{ProxyConfig, Upstream};

/// Upper bound of the read buffer per upstream connection.
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

/// An HTTP/1.1 client to one upstream.
pub(super) type UpstreamClient = Client<UpstreamConnector, Body>;

/// An upstream address with two clients that share one connector: `pooled` for
/// normal traffic, and `fresh`, which never reuses a connection, for the single
/// retry after a pooled connection turned out to be dead.
#[derive(Debug)]
pub(super) struct UpstreamPool {
    /// `target` rendered once, so logging a request does not format it again.
    pub label: Arc<str>,
    /// Authority placed in the request URI (hyper needs absolute URIs). For
    /// unix sockets it is only a pool key.
    pub authority: Authority,
    /// Keep-alive client; idle connections close after `pool-idle-timeout`.
    pub pooled: UpstreamClient,
    /// Client that opens a new connection for every request.
    pub fresh: UpstreamClient,
}

impl UpstreamPool {
    /// Builds the clients for `target` with the timeouts of `config`.
    pub(super) fn new(target: Upstream, config: &ProxyConfig) -> Self {
        let target = Arc::new(target);
        let connector = UpstreamConnector::new(target.clone(), config.connect_timeout);
        let authority = match &*target {
            Upstream::Tcp { .. } => target.to_string().parse().ok(),
            Upstream::Unix { .. } => None,
        }
        .unwrap_or_else(|| Authority::from_static("localhost"));

        let mut builder = Client::builder(TokioExecutor::new());
        builder
            // Without a timer hyper-util ignores the idle timeout (hyper#3640).
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            // Read ahead of a slow client at most this much per connection
            // (hyper's default lets a slow reader pin ~400 KiB each).
            .http1_max_buf_size(UPSTREAM_READ_BUFFER)
            // We always set Host ourselves: the client's, not the upstream's.
            .set_host(false);
        let pooled = builder.build(connector.clone());
        let fresh = builder.pool_max_idle_per_host(0).build(connector);

        UpstreamPool {
            label: target.to_string().into(),
            authority,
            pooled,
            fresh,
        }
    }
}
