//! Getting a response head from an upstream over a connection `reach` found:
//! the header timeout, and the one retry after a stale pooled connection.
//!
//! uvicorn (and most backends) close an idle keep-alive connection after a
//! few seconds; a request that meets such a connection fails through no fault
//! of the backend. It is retried once on a new connection when that is safe:
//! - the connection was found dead before the request was written (hyper
//!   hands the request back): any request, nothing reached the backend;
//! - the connection died after the request was written but before any
//!   response byte (hyper reports the end of the connection, an
//!   `IncompleteMessage` or a reset, and keeps the request), and the request
//!   is idempotent and has no body: its head is copied before sending on a
//!   reused connection, and sent again from the copy.
//!
//! How long the connection sat in the pool says nothing here: the backend's
//! idle timer starts at its last response byte, bellhop's pool clock when the
//! response has been forwarded, which for a download to a slow client can be
//! seconds later. So a connection idle for a millisecond can still meet the
//! backend's close. A request with a body is never replayed (the body has been
//! streamed and is gone): it gets the 502.
//!
//! A new connection that fails is retried in one case only: it died before
//! any response byte, the request is replayable, and a second connect is then
//! refused. That is a backend going down (`systemctl restart`) with the
//! request still in its accept queue, unread: closing the listening socket
//! resets what is queued. The request then waits for the backend like any
//! other (`upstream-wait`). If the second connect succeeds the backend is up
//! and the failure was this request's own: it gets the 502, and a request
//! that crashes its backend is not sent twice.

use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;

use super::conn::{Home, OpenError, UpstreamConn};
use super::reach::{open, reach, Ready, Source};
use super::upstream::UpstreamTarget;
use crate::body::Body;

/// Timeouts and pool settings for reaching one `proxy` directive's upstreams.
#[derive(Debug, Clone, Copy)]
pub(super) struct SendSettings {
    /// `header-timeout`: request sent to response head received, per attempt.
    pub header_timeout: Duration,
    /// `connect-timeout`.
    pub connect_timeout: Duration,
    /// `pool-idle-timeout`.
    pub idle_timeout: Duration,
    /// `upstream-wait`.
    pub wait: Duration,
}

/// Sends `request` on `ready`, a connection to `upstream`, and returns the
/// response head with the connection it arrived on (the caller streams the
/// body from it).
pub(super) async fn send(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    ready: Ready,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Box<UpstreamConn>), SendError> {
    let mut conn = match ready {
        Ready::New(conn) => return send_new(upstream, settings, conn, request).await,
        Ready::Pooled(conn) => conn,
    };
    conn.home = Some(Home {
        key: upstream.key,
        idle_timeout: settings.idle_timeout,
    });
    let replay = Replay::of(&request);
    let idled = conn.idled;
    let mut failed =
        match tokio::time::timeout(settings.header_timeout, conn.request(request)).await {
            Err(_) => return Err(SendError::HeaderTimeout),
            Ok(Ok(response)) => return Ok((response, conn)),
            Ok(Err(failed)) => failed,
        };
    drop(conn);
    if let Some(unsent) = failed.take_message() {
        tracing::debug!(upstream = %upstream.label, error = %error_chain(failed.error()), "pooled connection closed, sending on a new one");
        return send_fresh(upstream, settings, unsent, true).await;
    }
    let error = failed.into_error();
    match replay {
        Some(replay) if !error.is_user() => {
            tracing::debug!(upstream = %upstream.label, error = %error_chain(&error), ?idled, "reused connection closed before any response byte; replaying on a fresh connection");
            // The replacement serves this request only, as before the pool
            // was rewritten: tests count the connections this costs.
            send_fresh(upstream, settings, replay.into_request(), false).await
        }
        _ => Err(SendError::Failed(error)),
    }
}

/// Sends `request` on a new connection to `upstream` (waiting for it if it
/// is restarting: its pooled connection may have died for that reason),
/// which returns to the pool after the exchange when `reuse`.
async fn send_fresh(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    request: Request<Body>,
    reuse: bool,
) -> Result<(Response<Incoming>, Box<UpstreamConn>), SendError> {
    let source = Source::New { reuse };
    match reach(std::slice::from_ref(upstream), 0, settings, source).await {
        Ok((_, Ready::New(conn) | Ready::Pooled(conn))) => send_on(conn, settings, request).await,
        Err(unreached) => Err(SendError::Open(unreached.error)),
    }
}

/// Sends `request` on a connection just opened for it, replaying it once if
/// the backend turns out to have been going down (see the module docs).
async fn send_new(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    conn: Box<UpstreamConn>,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Box<UpstreamConn>), SendError> {
    let replay = Replay::of(&request);
    let error = match send_on(conn, settings, request).await {
        Err(SendError::Failed(error)) if died_unanswered(&error) => error,
        other => return other,
    };
    let Some(replay) = replay else {
        return Err(SendError::Failed(error));
    };
    // A probe: its refusal is recorded like any failed connect; a connection
    // it opens is dropped (the backend is up, so the 502 stands).
    match open(upstream, settings, false).await {
        Err(OpenError::Connect(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::debug!(upstream = %upstream.label, error = %error_chain(&error), "new connection reset unanswered and the upstream now refuses: restarting; the request waits for it");
            send_fresh(upstream, settings, replay.into_request(), true).await
        }
        _ => Err(SendError::Failed(error)),
    }
}

/// Whether an exchange ended with the connection closing or resetting before
/// any response byte (not a timeout, a malformed response or our own error).
fn died_unanswered(error: &hyper::Error) -> bool {
    if error.is_user() || error.is_parse() || error.is_timeout() {
        return false;
    }
    if error.is_incomplete_message() || error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = cause.source();
    }
    false
}

/// Sends `request` on a connection nobody has used yet.
async fn send_on(
    mut conn: Box<UpstreamConn>,
    settings: SendSettings,
    request: Request<Body>,
) -> Result<(Response<Incoming>, Box<UpstreamConn>), SendError> {
    match tokio::time::timeout(settings.header_timeout, conn.request(request)).await {
        Err(_) => Err(SendError::HeaderTimeout),
        Ok(Ok(response)) => Ok((response, conn)),
        Ok(Err(failed)) => Err(SendError::Failed(failed.into_error())),
    }
}

/// A copy of a bodiless idempotent request head, to send it again.
struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    /// `None` for requests that must not be sent twice.
    fn of(request: &Request<Body>) -> Option<Replay> {
        (is_idempotent(request.method()) && request.body().is_end_stream()).then(|| Replay {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        })
    }

    fn into_request(self) -> Request<Body> {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.headers_mut() = self.headers;
        request
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Why no upstream response came back.
#[derive(Debug)]
pub(super) enum SendError {
    /// No connection could be set up.
    Open(OpenError),
    /// The exchange failed.
    Failed(hyper::Error),
    /// The upstream took longer than `header-timeout` to send response headers.
    HeaderTimeout,
}

impl SendError {
    /// The status for the client and a one-line reason for the log and page.
    pub(super) fn describe(&self, header_timeout: Duration) -> (http::StatusCode, String) {
        use http::StatusCode;
        match self {
            SendError::HeaderTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("upstream sent no response headers within {header_timeout:?}"),
            ),
            SendError::Open(OpenError::Connect(e)) => (
                StatusCode::BAD_GATEWAY,
                format!("cannot connect to upstream: {}", error_chain(e)),
            ),
            SendError::Open(OpenError::Handshake(e)) | SendError::Failed(e) => (
                StatusCode::BAD_GATEWAY,
                format!("upstream connection failed: {}", error_chain(e)),
            ),
        }
    }
}

/// The innermost cause is the useful part ("Connection refused"), the outer
/// layers only say what was being done.
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
