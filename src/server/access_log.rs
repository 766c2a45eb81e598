//! One log line per request, written when the response body is finished.
//!
//! Logging at the end rather than when headers are ready gives the real
//! duration and byte count of streamed responses (SSE, downloads). The line is
//! emitted from `Drop`, so a response the client abandons is logged too. An
//! upgraded connection (WebSocket) is logged when its tunnel closes instead
//! (`Shared::spawn_tunnel`), with its lifetime and bytes each way.
//!
//! When the `access` target is off (`--log-level warn` or quieter) and the
//! site has no log file of its own, nothing is gathered or formatted:
//! [`enabled`] is checked once per request. Otherwise the line is formatted
//! into a reused per-thread buffer and queued without allocating (see
//! `access_line` and `logging::batch`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};

use super::access_line::{Moved, RequestLog};
use super::connection::InFlight;
use crate::body::{Body, BodyError};

/// Whether access-log lines are written at all. A cached per-callsite answer
/// (the log filter is static), so asking once per request costs a load.
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// A response body that counts its bytes and logs the request when done.
#[derive(Debug)]
pub(super) struct LoggedBody {
    inner: Body,
    bytes: u64,
    finished: bool,
    /// `None` when access logging is off. Boxed: the response carrying this
    /// body is moved a dozen times between phases, and 300 bytes of log
    /// fields in it were copied at every move, logging on or off.
    log: Option<Box<RequestLog>>,
    _in_flight: InFlight,
}

impl LoggedBody {
    /// Wraps `inner`; the log line (if any) is written when it ends or is dropped.
    pub(super) fn new(inner: Body, log: Option<Box<RequestLog>>, in_flight: InFlight) -> Self {
        LoggedBody {
            inner,
            bytes: 0,
            finished: false,
            log,
            _in_flight: in_flight,
        }
    }
}

impl LoggedBody {
    /// The client stopped taking the body for now ([`Body::shed`]).
    pub(super) fn shed(&mut self) {
        self.inner.shed();
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
        log.write(Moved {
            bytes: self.bytes,
            from_client: None,
            complete: self.finished || self.inner.is_end_stream(),
        });
    }
}
