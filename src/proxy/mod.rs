//! The `proxy` handler: forward a request to an upstream and stream the answer back.
//!
//! ```text
//! request ─► reach an upstream (round robin, skipping failing ones): this
//!         thread's idle connection or a new one, waiting up to `upstream-wait`
//!         for one that is restarting ─► rewrite headers ─► send (retry once on
//!         a dead keep-alive connection), driven by this task
//!         ─► response headers or 502/504
//!         ─► body: streams from the upstream, connection back to the pool at its end
//!         ─► 101: hand back a tunnel that splices both upgraded streams
//! ```

mod body;
mod client;
mod conn;
mod connector;
mod h1;
pub(crate) mod headers;
mod health;
mod pool;
mod reach;
mod send;
pub(crate) mod splice;
mod tunnel;
mod upstream;
mod ws_frames;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Request, Response, StatusCode, Version};

use crate::body::{text_response, Body};
use crate::config::{HeaderOp, ProxyConfig};
use crate::limit::{BodyLimits, ClientBody, ClientBodyError, RequestBody};
use crate::metrics::Metrics;
pub(crate) use body::UpstreamBody;
pub(crate) use client::ClientInfo;
use reach::{reach, Ready, Source};
use send::{Answer, SendError, SendSettings};
pub(crate) use tunnel::{upgrade_pair, ClientUpgrade, Tunnel, UpgradeHandover, UpgradeWait};
use upstream::UpstreamTarget;

/// A configured `proxy` directive, ready to forward requests.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// Never empty: [`Proxy::new`] refuses a config without upstreams.
    upstreams: Vec<UpstreamTarget>,
    next: AtomicUsize,
    settings: SendSettings,
    /// Idle timeout of upgraded (WebSocket) tunnels.
    idle_timeout: Duration,
    /// `request-header` operations, applied after bellhop's own rewrite.
    request_headers: Box<[HeaderOp]>,
}

/// The outcome of forwarding: the response for the client, which upstream
/// produced it (for the request log), and on `101 Switching Protocols` the
/// tunnel the caller must run.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// Response to send to the client.
    pub response: Response<Body>,
    /// The upstream that was tried last.
    pub upstream: Arc<str>,
    /// The upgraded streams to splice, once the 101 has gone out.
    pub tunnel: Option<Tunnel>,
}

impl Proxy {
    /// Names every upstream of `config`; connections are opened on demand
    /// and pooled per thread, shared with any other proxy to the same target.
    /// Each upstream's response times go to its histogram in `metrics`.
    /// `None` when `config` names no upstream (the parser never builds one,
    /// but the type allows it), so round robin always has a target.
    pub(crate) fn new(
        config: &ProxyConfig,
        metrics: &Metrics,
        request_headers: &[HeaderOp],
    ) -> Option<Self> {
        if config.upstreams.is_empty() {
            return None;
        }
        Some(Proxy {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| UpstreamTarget::new(u.clone(), metrics))
                .collect(),
            next: AtomicUsize::new(0),
            settings: SendSettings {
                header_timeout: config.header_timeout,
                connect_timeout: config.connect_timeout,
                idle_timeout: config.pool_idle_timeout,
                wait: config.upstream_wait,
            },
            idle_timeout: config.idle_timeout,
            request_headers: request_headers.into(),
        })
    }

    /// Forwards `req` and returns the upstream's response, or a 502/504 page.
    ///
    /// `host` is the host the client asked for; it becomes the upstream's Host.
    /// The time from sending the request on a reached upstream until its
    /// response head (not its body, which may stream for hours) goes to the
    /// upstream's histogram; waiting for a restarting upstream is not part of
    /// it, and an exchange that got no response (502/504) is not counted.
    pub(crate) async fn forward(
        &self,
        req: Box<Request<RequestBody>>,
        limits: BodyLimits,
        client: &ClientInfo,
        host: Option<HeaderValue>,
    ) -> Forwarded {
        let version = req.version();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let source = Source::PoolOrNew;
        let (upstream, ready) = match reach(&self.upstreams, start, self.settings, source).await {
            Ok(reached) => reached,
            Err(unreached) => {
                let failure = SendError::Open(unreached.error);
                return Forwarded {
                    response: self.failure_response(&unreached.upstream.label, failure, version),
                    upstream: unreached.upstream.label.clone(),
                    tunnel: None,
                };
            }
        };
        let sent = Instant::now();
        let exchanged = self.exchange(upstream, ready, req, limits, client, host.as_ref());
        let (response, tunnel) = match exchanged.await {
            Ok(answer) => {
                upstream.response_times.observe(sent.elapsed());
                answer
            }
            Err(failure) => (
                self.failure_response(&upstream.label, failure, version),
                None,
            ),
        };
        Forwarded {
            response,
            upstream: upstream.label.clone(),
            tunnel,
        }
    }

    /// One request/response exchange with `upstream`; on a `101` the
    /// upgraded streams come back as a [`Tunnel`].
    async fn exchange(
        &self,
        upstream: &UpstreamTarget,
        ready: Ready,
        mut req: Box<Request<RequestBody>>,
        limits: BodyLimits,
        client: &ClientInfo,
        host: Option<&HeaderValue>,
    ) -> Result<(Response<Body>, Option<Tunnel>), SendError> {
        // The server hands over the client's connection only where it can
        // (HTTP/1.1): elsewhere the request goes on as a plain one. The
        // extension first: a request without one (most) costs no lookup of
        // its headers.
        let client_upgrade = req
            .extensions_mut()
            .remove::<ClientUpgrade>()
            .filter(|_| {
                req.version() == Version::HTTP_11 && headers::is_upgrade_request(req.headers())
            })
            .and_then(|upgrade| upgrade.claim());
        let upgrade = client_upgrade.is_some();
        let (mut parts, body) = req.into_parts();
        upstream_head(&mut parts, upstream, client, host, upgrade);
        crate::header_ops::apply(&mut parts.headers, &self.request_headers);
        let body = Body::Client(ClientBody::new(body, limits, client.ip));
        let answer = send::send(upstream, self.settings, ready, &mut parts, body, upgrade).await?;
        Ok(self.client_response(answer, client_upgrade, &upstream.label))
    }

    /// The upstream's response as the client gets it; its body keeps driving
    /// `conn`. On `101 Switching Protocols` to an upgrade request the body is
    /// empty and the client's upgrade and `conn` become the tunnel.
    fn client_response(
        &self,
        (head, delimited, conn): Answer,
        client_upgrade: Option<UpgradeWait>,
        label: &Arc<str>,
    ) -> (Response<Body>, Option<Tunnel>) {
        let h1::decode::Head {
            status,
            mut headers,
            ..
        } = head;
        let switching = status == StatusCode::SWITCHING_PROTOCOLS;
        headers::rewrite_response(&mut headers, switching);
        let (body, tunnel) = match client_upgrade {
            Some(client_upgrade) if switching => {
                let (idle, label) = (self.idle_timeout, label.clone());
                let tunnel = Tunnel::new(client_upgrade, conn, idle, label, &headers);
                (Body::empty(), Some(tunnel))
            }
            _ => {
                let body = UpstreamBody::new(delimited.framing, conn);
                (Body::Upstream(body), None)
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        (response, tunnel)
    }

    /// The page for a client whose request got no upstream response. The
    /// details stay in the log: clients learn nothing about the backend.
    ///
    /// When the client's own request body is what failed (too large, stalled,
    /// malformed, or the client left), the upstream is not to blame: the
    /// status is the body's (413, 408, 400), already logged with its reason
    /// by the body itself, and the connection closes since the rest of the
    /// body was never read.
    fn failure_response(
        &self,
        label: &str,
        failure: SendError,
        version: Version,
    ) -> Response<Body> {
        if let SendError::Failed(error) = &failure {
            if let Some(body_error) = ClientBodyError::find(error) {
                let (wire, logged) = body_error.status();
                let mut response = text_response(wire, "request body refused");
                if version < Version::HTTP_2 {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                if logged != wire {
                    response.extensions_mut().insert(LogStatus(logged));
                }
                return response;
            }
        }
        let (status, text) = failure.describe(self.settings.header_timeout);
        tracing::warn!(upstream = %label, status = status.as_u16(), error = %text, "upstream failed");
        text_response(status, "the upstream did not answer")
    }
}

/// A response extension: the status to log and count when it differs from
/// the one on the wire (499 for a client that left mid-body, which is never
/// sent).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogStatus(pub(crate) StatusCode);

/// Put in a request's extensions by `strip-prefix`: the prefix taken off its
/// path, sent upstream as `X-Forwarded-Prefix` (after the untrusted peer's
/// own `X-Forwarded-*` are dropped, so it cannot be removed or forged).
#[derive(Debug, Clone)]
pub(crate) struct ForwardedPrefix(pub HeaderValue);

/// Rewrites the client's request headers for `upstream` in place: hop-by-hop
/// out, `X-Forwarded-*` in, and Host. The request line needs nothing: the
/// head encoder writes the origin-form target and HTTP/1.1 whatever the
/// client spoke (`h1/encode.rs`).
fn upstream_head(
    parts: &mut http::request::Parts,
    upstream: &UpstreamTarget,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
    upgrade: bool,
) {
    headers::rewrite_request(&mut parts.headers, client, host, upgrade);
    if let Some(ForwardedPrefix(prefix)) = parts.extensions.remove() {
        parts.headers.insert(&headers::X_FORWARDED_PREFIX, prefix);
    }
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(value) = HeaderValue::from_str(upstream.authority.as_str()) {
            parts.headers.insert(header::HOST, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_without_upstreams_is_refused_not_a_panic_later() {
        let metrics = Metrics::new();
        assert!(Proxy::new(&ProxyConfig::new(Vec::new()), &metrics, &[]).is_none());
        let one = ProxyConfig::new(vec![crate::config::Upstream::Tcp {
            host: "127.0.0.1".into(),
            port: 8000,
        }]);
        let proxy = Proxy::new(&one, &metrics, &[]).expect("one upstream");
        assert_eq!(&*proxy.upstreams[0].label, "127.0.0.1:8000");
    }
}
