//! A request body read from an h2 stream.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use h2::{Reason, RecvStream};
use http::HeaderMap;
use http_body::{Frame, SizeHint};

/// The body of one h2 request: DATA frames, then trailers.
///
/// Each DATA frame read gives its bytes back to the client's flow-control
/// window at once: bellhop holds a frame only until the upstream takes it,
/// and what the client may send ahead is the window the connection announced
/// (`h2/mod.rs`).
#[derive(Debug)]
pub(crate) struct H2Body {
    recv: RecvStream,
    /// Bytes still due by the request's `content-length` (h2 itself refuses
    /// a stream whose DATA do not add up to it).
    remaining: Option<u64>,
    data_done: bool,
}

impl H2Body {
    pub(super) fn new(recv: RecvStream, headers: &HeaderMap) -> Self {
        let remaining = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        H2Body {
            recv,
            remaining,
            data_done: false,
        }
    }
}

/// The end of a body the client cut short with `RST_STREAM(NO_ERROR)`: "I
/// need no more of your answer's wait", an early response (RFC 9113 §8.1),
/// not a failure.
fn ends_quietly(error: &h2::Error) -> bool {
    error.reason() == Some(Reason::NO_ERROR)
}

impl http_body::Body for H2Body {
    type Data = Bytes;
    /// `is_library()` when the client broke the protocol (h2 noticed it and
    /// reset the stream), else the client went away or reset the stream.
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // The stream is open, so the release cannot fail.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(remaining) = &mut this.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) if ends_quietly(&e) => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if ends_quietly(&e) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
