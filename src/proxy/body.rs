//! The body of a proxied response, which also reads its upstream connection.
//!
//! With no task of its own for the connection, the body reads it: each poll
//! takes what the read buffer holds (as framed by the response head) and
//! reads the socket when that is not enough. When the last byte has been read
//! the connection goes back to the pool; if the client leaves before that,
//! dropping the body closes the connection (a half-read response cannot be
//! resumed by the next request).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::conn::UpstreamConn;
use super::pool;
use crate::http1::{BodyDecoder, Framing};

/// An upstream response body plus the connection it arrives on.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    decoder: BodyDecoder,
    /// `None` once the exchange is over (connection pooled or dropped).
    conn: Option<Box<UpstreamConn>>,
}

impl UpstreamBody {
    /// Wraps the body of a response framed as `framing` that arrived on
    /// `conn`. A body that is empty from the start (HEAD, 204, 304,
    /// `Content-Length: 0`) may never be polled, so its connection is released
    /// at once.
    pub(super) fn new(framing: Framing, conn: Box<UpstreamConn>) -> Self {
        let mut wrapped = UpstreamBody {
            decoder: BodyDecoder::new(framing),
            conn: Some(conn),
        };
        if wrapped.decoder.is_done() {
            wrapped.release();
        }
        wrapped
    }

    /// The exchange is complete: the connection returns to its pool when it
    /// has one and is fit for another request, else it is closed.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let (Some(home), true) = (conn.home, conn.io.is_clean()) {
                pool::checkin(conn, home);
            }
        }
    }
}

impl UpstreamBody {
    /// The client stopped taking the body: the connection gives back the
    /// buffers it does not need while paused.
    pub(crate) fn shed(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.io.shed();
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = conn.io.poll_body(&mut this.decoder, cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(data))) => {
                // hyper stops polling a body whose length says it is complete,
                // so the last data frame may be the last call.
                if this.decoder.is_done() {
                    this.release();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
