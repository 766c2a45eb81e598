//! Getting a response head from an upstream over a connection `reach` found:
//! the header timeout, and the one retry after a stale pooled connection.
//!
//! uvicorn (and most backends) close an idle keep-alive connection after a
//! few seconds; a request that meets such a connection fails through no fault
//! of the backend. It is retried once on a new connection when that is safe:
//! - the connection was found dead before the request was written: any
//!   request, nothing reached the backend and its body is untouched;
//! - the connection died after the request was written but before any
//!   response byte (closed or reset), and the request is idempotent and has
//!   no body: the encoded head bytes are the replay (nothing else of the
//!   request is kept), sent again on the new connection.
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

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use http::request::Parts;
use http::Method;
use http_body::Body as _;
use tokio::time::Instant;

use super::conn::{Home, OpenError, UpstreamConn};
use super::h1::decode::{Delimited, Head};
use super::h1::encode::BodyKind;
use super::h1::{self, Asked, Failure, Stage};
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

/// A response head, how its body is framed, and the connection it arrived on
/// (the caller streams the body from it).
pub(super) type Answer = (Head, Delimited, Box<UpstreamConn>);

/// The request as it goes from one attempt to the next (its head bytes
/// travel in the connection's buffer).
struct Outgoing {
    body: Body,
    kind: BodyKind,
    asked: Asked,
    /// Idempotent and bodiless: may be sent again after it reached a backend.
    replayable: bool,
}

/// Sends the request of `parts` and `body` on `ready`, a connection to
/// `upstream`, and returns the response head. `upgrade`: the request asks
/// for a protocol switch. The headers of `parts` are taken once encoded (the
/// response head is parsed into their map).
pub(super) async fn send(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    ready: Ready,
    parts: &mut Parts,
    body: Body,
    upgrade: bool,
) -> Result<Answer, SendError> {
    let kind = body_kind(&body);
    let mut out = Outgoing {
        body,
        kind,
        asked: Asked {
            head_request: parts.method == Method::HEAD,
            upgrade,
        },
        replayable: kind == BodyKind::Empty && is_idempotent(&parts.method),
    };
    let mut conn = match ready {
        Ready::New(mut conn) => {
            conn.io.encode(parts, kind);
            // Boxed like the paths below: a new connection is the exception
            // once the pool is warm, and inline its replay logic would size
            // every request's future.
            return Box::pin(send_new(upstream, settings, conn, out)).await;
        }
        Ready::Pooled(conn) => conn,
    };
    conn.io.encode(parts, kind);
    conn.home = Some(Home {
        key: upstream.key,
        idle_timeout: settings.idle_timeout,
    });
    let idled = conn.idled;
    // Every path off the common one (a stale pooled connection, a replay)
    // is boxed where it starts: inline, its connect and second exchange
    // would size the future of every request (the forwarding future is
    // copied into its box once per request).
    let failure = match attempt(&mut conn, settings, &mut out).await {
        Ok((head, delimited)) => return Ok((head, delimited, conn)),
        Err(None) => return Err(SendError::HeaderTimeout),
        Err(Some(failure)) => failure,
    };
    let head = conn.io.take_head();
    drop(conn);
    match failure.stage {
        Stage::Unsent => {
            tracing::debug!(upstream = %upstream.label, error = %error_chain(&failure.error), "pooled connection closed, sending on a new one");
            Box::pin(send_fresh(upstream, settings, head, out, true)).await
        }
        Stage::Unanswered if out.replayable => {
            tracing::debug!(upstream = %upstream.label, error = %error_chain(&failure.error), ?idled, "reused connection closed before any response byte; replaying on a fresh connection");
            // The replacement serves this request only, as before the pool
            // was rewritten: tests count the connections this costs.
            Box::pin(send_fresh(upstream, settings, head, out, false)).await
        }
        _ => Err(SendError::Failed(failure.error)),
    }
}

/// How the request body goes on the wire: nothing, its known length, or
/// chunked.
fn body_kind(body: &Body) -> BodyKind {
    if body.is_end_stream() {
        return BodyKind::Empty;
    }
    match body.size_hint().exact() {
        Some(len) => BodyKind::Length(len),
        None => BodyKind::Chunked,
    }
}

/// Sends the request whose encoded `head` failed elsewhere on a new
/// connection to `upstream` (waiting for it if it is restarting: its pooled
/// connection may have died for that reason), which returns to the pool after
/// the exchange when `reuse`.
async fn send_fresh(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    head: Vec<u8>,
    mut out: Outgoing,
    reuse: bool,
) -> Result<Answer, SendError> {
    let source = Source::New { reuse };
    match reach(std::slice::from_ref(upstream), 0, settings, source).await {
        Ok((_, Ready::New(mut conn) | Ready::Pooled(mut conn))) => {
            conn.io.put_head(head);
            match attempt(&mut conn, settings, &mut out).await {
                Ok((head, delimited)) => Ok((head, delimited, conn)),
                Err(failure) => Err(SendError::from_attempt(failure)),
            }
        }
        Err(unreached) => Err(SendError::Open(unreached.error)),
    }
}

/// Sends the request on a connection just opened for it, replaying it once
/// if the backend turns out to have been going down (see the module docs).
async fn send_new(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    mut conn: Box<UpstreamConn>,
    mut out: Outgoing,
) -> Result<Answer, SendError> {
    let failure = match attempt(&mut conn, settings, &mut out).await {
        Ok((head, delimited)) => return Ok((head, delimited, conn)),
        Err(Some(failure)) if out.replayable && failure.died_unanswered() => failure,
        Err(failure) => return Err(SendError::from_attempt(failure)),
    };
    let head = conn.io.take_head();
    drop(conn);
    // Boxed, as every path off the common one (see `send`).
    Box::pin(replay_if_restarting(upstream, settings, head, out, failure)).await
}

/// After a request on a new connection was reset unanswered: replays it on
/// a fresh connection if the upstream now refuses connections (it is
/// restarting), else the failure stands.
async fn replay_if_restarting(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    head: Vec<u8>,
    out: Outgoing,
    failure: Failure,
) -> Result<Answer, SendError> {
    // A probe: its refusal is recorded like any failed connect; a connection
    // it opens is dropped (the backend is up, so the 502 stands).
    match open(upstream, settings, false).await {
        Err(OpenError::Connect(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::debug!(upstream = %upstream.label, error = %error_chain(&failure.error), "new connection reset unanswered and the upstream now refuses: restarting; the request waits for it");
            send_fresh(upstream, settings, head, out, true).await
        }
        _ => Err(SendError::Failed(failure.error)),
    }
}

/// One exchange on `conn` within the header timeout; `Err(None)` when the
/// timeout struck first.
async fn attempt(
    conn: &mut UpstreamConn,
    settings: SendSettings,
    out: &mut Outgoing,
) -> Result<(Head, Delimited), Option<Failure>> {
    let deadline = Instant::now() + settings.header_timeout;
    let UpstreamConn {
        io, header_timer, ..
    } = conn;
    let mut exchange = pin!(io.exchange(&mut out.body, out.kind, out.asked));
    poll_fn(|cx| {
        if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(Some));
        }
        header_timer.poll_until(deadline, cx).map(|()| Err(None))
    })
    .await
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
    Failed(h1::Error),
    /// The upstream took longer than `header-timeout` to send response headers.
    HeaderTimeout,
}

impl SendError {
    /// The error of an attempt that failed or (`None`) timed out.
    fn from_attempt(failure: Option<Failure>) -> SendError {
        match failure {
            None => SendError::HeaderTimeout,
            Some(failure) => SendError::Failed(failure.error),
        }
    }

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
            SendError::Failed(e) => (
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
