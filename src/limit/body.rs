//! A client's request body as bellhop forwards it: at most `max-body` bytes,
//! with no pause longer than `client-body-timeout`, and framing errors told
//! apart from a client that went away.
//!
//! The body fails instead of passing on the frame that would cross the limit,
//! so the upstream never sees more than `max-body` bytes; the proxy then
//! aborts the upstream request and answers with the status
//! [`ClientBodyError::status`] gives (when no response has started yet).
//! Each failure is logged here, once, with the reason.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::server::{H1Body, H2Body};

/// What the body of one request may do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Bytes allowed in all (`max-body`).
    pub max: u64,
    /// Longest wait for the next bytes (`client-body-timeout`).
    pub stall: Duration,
}

/// Why a client's request body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// More bytes than `max-body`.
    #[error("request body larger than max-body ({max} bytes)")]
    TooLarge {
        /// The limit that was crossed.
        max: u64,
    },
    /// No bytes for `client-body-timeout` while bellhop waited for them.
    #[error("no request body bytes for {0:?} (client-body-timeout)")]
    Stalled(Duration),
    /// The chunked framing (or h2 stream) was invalid.
    #[error("malformed request body: {0}")]
    Malformed(#[source] BoxError),
    /// The client closed or reset the connection mid-body.
    #[error("client went away mid-body: {0}")]
    Gone(#[source] BoxError),
}

impl ClientBodyError {
    /// A failure of the client's stream: bad framing, or the client gone.
    fn sorted(malformed: bool, error: impl Into<BoxError>) -> Self {
        if malformed {
            ClientBodyError::Malformed(error.into())
        } else {
            ClientBodyError::Gone(error.into())
        }
    }

    /// The status the client gets when no response has started, and the one
    /// logged. They differ only for a client that went away: nobody reads the
    /// answer, and 499 (nginx's "client closed request") is for logs only,
    /// never a status on the wire, so the wire gets 400.
    pub(crate) fn status(&self) -> (StatusCode, StatusCode) {
        match self {
            ClientBodyError::TooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE)
            }
            ClientBodyError::Stalled(_) => {
                (StatusCode::REQUEST_TIMEOUT, StatusCode::REQUEST_TIMEOUT)
            }
            ClientBodyError::Malformed(_) => (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST),
            ClientBodyError::Gone(_) => (StatusCode::BAD_REQUEST, CLIENT_CLOSED_REQUEST),
        }
    }

    /// The first `ClientBodyError` in `error`'s chain of sources (an upstream
    /// send that failed because of the request body carries it there).
    pub(crate) fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Self> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            if let Some(crate::body::BodyError::Client(found)) = e.downcast_ref() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// nginx's "client closed request": logged for a client that left mid-body.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// An error from the client's stream, whichever protocol it speaks.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body as the server hands it to the phases: read by
/// bellhop's HTTP/1.1 server, or from an h2 stream.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// From an HTTP/1.1 connection.
    H1(H1Body),
    /// From an h2 stream.
    H2(H2Body),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    /// Failures come sorted: bad framing from the client, or the client gone.
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            RequestBody::H1(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| ClientBodyError::sorted(e.is_malformed(), e)),
            RequestBody::H2(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|e| ClientBodyError::sorted(e.is_library(), e)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::H1(body) => body.is_end_stream(),
            RequestBody::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::H1(body) => body.size_hint(),
            RequestBody::H2(body) => body.size_hint(),
        }
    }
}

/// A request body held to [`BodyLimits`].
#[derive(Debug)]
pub(crate) struct ClientBody {
    incoming: RequestBody,
    limits: BodyLimits,
    /// Bytes passed on so far.
    received: u64,
    /// Armed while bellhop waits for the client; made on the first wait only.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` counts down now (it is reset when bytes arrive).
    waiting: bool,
    /// Who sent it, for the log line.
    client: IpAddr,
    /// Set after the first error: the body is over.
    failed: bool,
}

impl ClientBody {
    /// Wraps `incoming`, sent by `client`.
    pub(crate) fn new(incoming: RequestBody, limits: BodyLimits, client: IpAddr) -> Self {
        ClientBody {
            incoming,
            limits,
            received: 0,
            stall: None,
            waiting: false,
            client,
            failed: false,
        }
    }

    /// Ends the body with `error`, logging why.
    fn fail(
        &mut self,
        error: ClientBodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.failed = true;
        let (_, logged) = error.status();
        if let ClientBodyError::Gone(_) = error {
            // Routine (a cancelled upload); the access line says 499.
            tracing::debug!(client = %self.client, error = %error, "client left mid-body, upstream request aborted");
        } else {
            tracing::info!(client = %self.client, status = logged.as_u16(), error = %error, "request body refused, upstream request aborted");
        }
        Poll::Ready(Some(Err(error)))
    }

    /// Whether the stall deadline passed while waiting (arming it if this
    /// is the start of a wait).
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.limits.stall;
        let sleep = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.waiting {
            sleep.as_mut().reset(deadline);
            self.waiting = true;
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Pending => {
                if this.stalled(cx) {
                    return this.fail(ClientBodyError::Stalled(this.limits.stall));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                this.waiting = false;
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.received = this.received.saturating_add(len);
                if this.received > this.limits.max {
                    return this.fail(ClientBodyError::TooLarge {
                        max: this.limits.max,
                    });
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => this.fail(error),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
