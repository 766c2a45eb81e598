//! One log line per request, written when the response body is finished.
//!
//! Logging at the end rather than when headers are ready gives the real
//! duration and byte count of streamed responses (SSE, downloads). The line is
//! emitted from `Drop`, so a response the client abandons is logged too.
//!
//! When the `access` target is off (`--log-level warn` or quieter) nothing is
//! gathered or formatted: [`enabled`] is checked once per request. When it is
//! on, the line is formatted into the log layer's reused per-thread buffer
//! and queued without allocating (see `logging::batch`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri};
use http_body::{Body as _, Frame, SizeHint};

use super::connection::InFlight;
use crate::body::{Body, BodyError};
use crate::proxy::ClientInfo;

/// Whether access-log lines are written at all. A cached per-callsite answer
/// (the log filter is static), so asking once per request costs a load.
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// The facts of one request, gathered before it is handled.
#[derive(Debug)]
pub(super) struct RequestLog {
    /// When the request head was received.
    pub start: Instant,
    /// The peer and the client behind it (the same unless the peer is a
    /// trusted proxy).
    pub client: ClientInfo,
    /// Request method.
    pub method: Method,
    /// Host or `:authority` as the client sent it.
    pub host: Option<HeaderValue>,
    /// Request target (path and query are logged).
    pub uri: Uri,
    /// Response status.
    pub status: StatusCode,
    /// The upstream that answered, for proxied requests.
    pub upstream: Option<Arc<str>>,
}

/// A response body that counts its bytes and logs the request when done.
#[derive(Debug)]
pub(super) struct LoggedBody {
    inner: Body,
    bytes: u64,
    finished: bool,
    /// `None` when access logging is off.
    log: Option<RequestLog>,
    _in_flight: InFlight,
}

impl LoggedBody {
    /// Wraps `inner`; the log line (if any) is written when it ends or is dropped.
    pub(super) fn new(inner: Body, log: Option<RequestLog>, in_flight: InFlight) -> Self {
        LoggedBody {
            inner,
            bytes: 0,
            finished: false,
            log,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.finished = true,
            _ => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(log) = &self.log else { return };
        let finished = self.finished || self.inner.is_end_stream();
        tracing::info!(
            target: "access",
            peer = %log.client.peer,
            client = %log.client.ip,
            method = %log.method,
            host = log.host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or("-"),
            path = log.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            status = log.status.as_u16(),
            upstream = log.upstream.as_deref().unwrap_or("-"),
            duration_ms = (log.start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            bytes = self.bytes,
            complete = finished,
            "request"
        );
    }
}
