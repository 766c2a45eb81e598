//! A request body as the service reads it, fed by the connection that reads
//! the client's stream.
//!
//! The connection owns the stream (it also writes the response, maybe while
//! the body is still coming), so the body cannot read it itself. Instead the
//! body and the connection share one small [`Pipe`]: a body that finds no
//! bytes says it wants more and returns `Pending`; the connection, which
//! polls the service (and so the body) in its own task, sees the want after
//! that poll, reads and decodes the next piece, leaves it in the pipe and
//! polls the service again. No channel, no second task, no wake-up between
//! tasks; the mutex is only there because the service's future must be
//! `Send`, and is never contended.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::http1::{Framing, FramingError};

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H1BodyError {
    /// The chunked framing was invalid.
    #[error("{0}")]
    Malformed(&'static str),
    /// The client closed the connection before the body's end.
    #[error("connection closed before the end of the request body")]
    Incomplete,
    /// Reading the client's stream failed.
    #[error("reading the request body failed: {0}")]
    Io(#[source] std::io::Error),
}

impl H1BodyError {
    /// Bad framing from the client, rather than the client going away.
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, H1BodyError::Malformed(_))
    }
}

impl From<FramingError> for H1BodyError {
    fn from(error: FramingError) -> Self {
        match error {
            FramingError::Malformed(why) => H1BodyError::Malformed(why),
            FramingError::Incomplete => H1BodyError::Incomplete,
        }
    }
}

/// What the body and its connection share.
#[derive(Debug, Default)]
pub(super) struct Pipe(Mutex<PipeState>);

#[derive(Debug, Default)]
struct PipeState {
    /// A piece decoded and not yet taken.
    piece: Option<Bytes>,
    /// The body is complete (after `piece`).
    ended: bool,
    /// The body failed (after `piece`).
    failed: Option<H1BodyError>,
    /// The body asked for more and got `Pending`.
    wants: bool,
    /// The task that asked, if it is not the connection's own.
    waker: Option<Waker>,
}

impl Pipe {
    fn state(&self) -> MutexGuard<'_, PipeState> {
        // A panic while holding it leaves nothing half-written that matters.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the body is waiting for a piece.
    pub(super) fn wants(&self) -> bool {
        let state = self.state();
        state.wants && state.piece.is_none()
    }

    /// Hands the body its next piece, its end or its failure; wakes the task
    /// that asked unless it is `cx`'s (the connection polls the service
    /// again anyway).
    pub(super) fn put(&self, cx: &Context<'_>, outcome: Result<Option<Bytes>, H1BodyError>) {
        let mut state = self.state();
        match outcome {
            Ok(Some(piece)) => state.piece = Some(piece),
            Ok(None) => state.ended = true,
            Err(e) => state.failed = Some(e),
        }
        state.wants = false;
        if let Some(waker) = state.waker.take() {
            if !waker.will_wake(cx.waker()) {
                waker.wake();
            }
        }
    }
}

/// A client's HTTP/1.1 request body, read through its connection.
#[derive(Debug)]
pub(crate) struct H1Body {
    /// `None` for a request without a body.
    pipe: Option<Arc<Pipe>>,
    /// Bytes still to come, when the head said.
    remaining: Option<u64>,
    /// The end or a failure was handed out.
    done: bool,
}

impl H1Body {
    /// The body a head framed as `framing` announced; `pipe` is shared with
    /// the connection.
    pub(super) fn new(framing: Framing, pipe: Option<Arc<Pipe>>) -> Self {
        let remaining = match framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked | Framing::Close => None,
        };
        H1Body {
            remaining,
            done: remaining == Some(0) || pipe.is_none(),
            pipe,
        }
    }
}

impl http_body::Body for H1Body {
    type Data = Bytes;
    type Error = H1BodyError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1BodyError>>> {
        let this = self.get_mut();
        let Some(pipe) = this.pipe.as_ref().filter(|_| !this.done) else {
            return Poll::Ready(None);
        };
        let mut state = pipe.state();
        if let Some(piece) = state.piece.take() {
            if let Some(left) = &mut this.remaining {
                *left = left.saturating_sub(piece.len() as u64);
            }
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if let Some(e) = state.failed.take() {
            this.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        if state.ended {
            this.done = true;
            return Poll::Ready(None);
        }
        state.wants = true;
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for H1Body {
    fn drop(&mut self) {
        // A body dropped while waiting must not keep the connection reading.
        if let Some(pipe) = &self.pipe {
            pipe.state().wants = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use http_body::Body as _;

    use super::*;

    #[test]
    fn pieces_then_the_end() {
        let pipe = Arc::new(Pipe::default());
        let mut body = H1Body::new(Framing::Length(5), Some(pipe.clone()));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(!body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!pipe.wants());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(pipe.wants());
        pipe.put(&cx, Ok(Some(Bytes::from_static(b"hello"))));
        assert!(!pipe.wants());
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("a piece");
        };
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(body.is_end_stream());
        pipe.put(&cx, Ok(None));
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }

    #[test]
    fn a_failure_ends_the_body() {
        let pipe = Arc::new(Pipe::default());
        let mut body = H1Body::new(Framing::Chunked, Some(pipe.clone()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        pipe.put(&cx, Err(H1BodyError::Malformed("invalid chunked framing")));
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Err(e))) => assert!(e.is_malformed()),
            other => panic!("{other:?}"),
        }
        assert!(body.is_end_stream());
        drop(body);
        assert!(!pipe.wants(), "a dropped body wants nothing");
    }

    #[test]
    fn an_empty_body_is_over_at_once() {
        let body = H1Body::new(Framing::Empty, None);
        assert!(body.is_end_stream());
    }
}
