//! The `proxy` handler: forward a request to an upstream and stream the answer back.
//!
//! ```text
//! request ─► rewrite headers ─► pick upstream ─► pooled client (retry once on a
//!         dead keep-alive connection) ─► response headers or 502/504
//!         ─► 101: hand back a tunnel that splices both upgraded streams
//! ```

mod client;
mod connector;
pub(crate) mod headers;
pub(crate) mod splice;
mod tunnel;
mod upstream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::body::{text_response, Body};
use crate::config::ProxyConfig;
pub(crate) use client::ClientInfo;
pub(crate) use tunnel::Tunnel;
use upstream::UpstreamPool;

/// A configured `proxy` directive, ready to forward requests.
#[derive(Debug)]
pub(crate) struct Proxy {
    upstreams: Vec<UpstreamPool>,
    next: AtomicUsize,
    header_timeout: Duration,
    idle_timeout: Duration,
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
    /// Builds connection pools for every upstream of `config`.
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        Proxy {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| UpstreamPool::new(u.clone(), config))
                .collect(),
            next: AtomicUsize::new(0),
            header_timeout: config.header_timeout,
            idle_timeout: config.idle_timeout,
        }
    }

    /// Forwards `req` and returns the upstream's response, or a 502/504 page.
    ///
    /// `host` is the host the client asked for; it becomes the upstream's Host.
    pub(crate) async fn forward(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
        host: Option<HeaderValue>,
    ) -> Forwarded {
        let pool = self.pick();
        let (response, tunnel) = match self.exchange(pool, req, client, host.as_ref()).await {
            Ok(answer) => answer,
            Err(failure) => (self.failure_response(&pool.label, failure), None),
        };
        Forwarded {
            response,
            upstream: pool.label.clone(),
            tunnel,
        }
    }

    /// One request/response exchange with `pool`'s upstream; on a `101` the
    /// upgraded streams come back as a [`Tunnel`].
    async fn exchange(
        &self,
        pool: &UpstreamPool,
        mut req: Request<Incoming>,
        client: &ClientInfo,
        host: Option<&HeaderValue>,
    ) -> Result<(Response<Body>, Option<Tunnel>), ForwardError> {
        let upgrade =
            req.version() == Version::HTTP_11 && headers::is_upgrade_request(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        upstream_head(&mut parts, pool, client, host, upgrade).map_err(ForwardError::Target)?;
        let response = self
            .send_with_retry(pool, parts, body)
            .await
            .map_err(ForwardError::Send)?;
        Ok(self.client_response(response, client_upgrade, &pool.label))
    }

    /// Sends through the pool. A request without a body on an idempotent
    /// method is replayed once on a fresh connection if the pooled one turns
    /// out to have been closed by the backend (not for connect errors: a fresh
    /// connection would fail the same way).
    async fn send_with_retry(
        &self,
        pool: &UpstreamPool,
        parts: http::request::Parts,
        body: Incoming,
    ) -> Result<Response<Incoming>, SendError> {
        let replay =
            (is_idempotent(&parts.method) && http_body::Body::is_end_stream(&body)).then(|| {
                (
                    parts.method.clone(),
                    parts.uri.clone(),
                    parts.headers.clone(),
                )
            });
        let request = Request::from_parts(parts, Body::from(body));
        match (self.send(&pool.pooled, request).await, replay) {
            (Err(SendError::Failed(e)), Some((method, uri, headers))) if !e.is_connect() => {
                tracing::debug!(upstream = %pool.label, error = %error_chain(&e), "retrying on a fresh connection");
                let mut retry = Request::new(Body::empty());
                *retry.method_mut() = method;
                *retry.uri_mut() = uri;
                *retry.headers_mut() = headers;
                self.send(&pool.fresh, retry).await
            }
            (result, _) => result,
        }
    }

    /// The upstream's response as the client gets it. On `101 Switching
    /// Protocols` to an upgrade request the body is empty and both upgraded
    /// streams become the tunnel.
    fn client_response(
        &self,
        response: Response<Incoming>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        label: &Arc<str>,
    ) -> (Response<Body>, Option<Tunnel>) {
        let (mut parts, body) = response.into_parts();
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        headers::rewrite_response(&mut parts.headers, switching);
        let mut response = Response::from_parts(parts, Body::from(body));
        let tunnel = match client_upgrade {
            Some(client_upgrade) if switching => {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                *response.body_mut() = Body::empty();
                Some(Tunnel::new(
                    client_upgrade,
                    upstream_upgrade,
                    self.idle_timeout,
                    label.clone(),
                ))
            }
            _ => None,
        };
        (response, tunnel)
    }

    /// The page for a client whose request got no upstream response. The
    /// details stay in the log: clients learn nothing about the backend.
    fn failure_response(&self, label: &str, failure: ForwardError) -> Response<Body> {
        match failure {
            ForwardError::Target(e) => {
                text_response(StatusCode::BAD_REQUEST, &format!("bad request target: {e}"))
            }
            ForwardError::Send(error) if error.is_client_gone() => {
                // The client's own request body broke (it hung up mid-upload):
                // not the upstream's fault. 499 is nginx's status for this.
                tracing::debug!(upstream = %label, "client went away while sending its request body");
                text_response(CLIENT_CLOSED_REQUEST, "request body incomplete")
            }
            ForwardError::Send(error) => {
                let (status, text) = error.describe(self.header_timeout);
                tracing::warn!(upstream = %label, status = status.as_u16(), error = %text, "upstream failed");
                text_response(status, "the upstream did not answer")
            }
        }
    }

    /// Round robin over the upstreams.
    fn pick(&self) -> &UpstreamPool {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.upstreams.len().max(1);
        &self.upstreams[i]
    }

    async fn send(
        &self,
        client: &upstream::UpstreamClient,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        match tokio::time::timeout(self.header_timeout, client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(SendError::Failed(e)),
            Err(_) => Err(SendError::HeaderTimeout),
        }
    }
}

/// Why forwarding produced no upstream response.
enum ForwardError {
    /// The request target cannot be made into an upstream URI.
    Target(http::uri::InvalidUriParts),
    /// Sending failed or timed out.
    Send(SendError),
}

/// Why no upstream response came back.
enum SendError {
    /// Connecting or exchanging the request failed.
    Failed(hyper_util::client::legacy::Error),
    /// The upstream took longer than `header-timeout` to send response headers.
    HeaderTimeout,
}

/// nginx's "client closed request", for the access log of aborted uploads.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl SendError {
    /// Whether the failure came from the client's request body stream rather
    /// than from the upstream. hyper reports a failing request body as a
    /// "user" error; bellhop builds every other part of the request itself, so
    /// a user error here means the client's upload broke.
    fn is_client_gone(&self) -> bool {
        let SendError::Failed(e) = self else {
            return false;
        };
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            if cause
                .downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_user)
            {
                return true;
            }
            source = cause.source();
        }
        false
    }

    /// The status for the client and a one-line reason for the log and page.
    fn describe(&self, header_timeout: Duration) -> (StatusCode, String) {
        match self {
            SendError::HeaderTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("upstream sent no response headers within {header_timeout:?}"),
            ),
            SendError::Failed(e) if e.is_connect() => (
                StatusCode::BAD_GATEWAY,
                format!("cannot connect to upstream: {}", error_chain(e)),
            ),
            SendError::Failed(e) => (
                StatusCode::BAD_GATEWAY,
                format!("upstream connection failed: {}", error_chain(e)),
            ),
        }
    }
}

/// The innermost cause is the useful part ("Connection refused"), the outer
/// layers only say "client error (Connect)".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Rewrites the client's request head for `pool`'s upstream: headers
/// (hop-by-hop out, `X-Forwarded-*` in), Host, an absolute URI, and HTTP/1.1
/// whatever the client spoke (h2 requests would otherwise be refused by the h1
/// pool).
fn upstream_head(
    parts: &mut http::request::Parts,
    pool: &UpstreamPool,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
    upgrade: bool,
) -> Result<(), http::uri::InvalidUriParts> {
    headers::rewrite_request(&mut parts.headers, client, host, upgrade);
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(value) = HeaderValue::from_str(pool.authority.as_str()) {
            parts.headers.insert(header::HOST, value);
        }
    }
    parts.uri = upstream_uri(&pool.authority, &parts.uri)?;
    parts.version = Version::HTTP_11;
    Ok(())
}

/// `http://{upstream}{path?query}`: hyper's client needs an absolute URI. The
/// parts are reference-counted, so this copies no bytes.
fn upstream_uri(
    authority: &http::uri::Authority,
    original: &Uri,
) -> Result<Uri, http::uri::InvalidUriParts> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(
        original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts)
}
