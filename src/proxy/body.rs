//! The body of a proxied response, which also drives its upstream connection.
//!
//! hyper reads the upstream's body on the connection future; with no task of
//! its own for the connection, the body polls it. When the last byte has been
//! read the connection goes back to the pool; if the client leaves before
//! that, dropping the body closes the connection (a half-read response cannot
//! be resumed by the next request).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;

use super::conn::UpstreamConn;
use super::pool;

/// An upstream response body plus the connection it arrives on.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    body: Incoming,
    /// `None` once the exchange is over (connection pooled or dropped).
    conn: Option<Box<UpstreamConn>>,
}

impl UpstreamBody {
    /// Wraps the body of a response that arrived on `conn`. A body that is
    /// empty from the start (HEAD, 204, 304, `Content-Length: 0`) may never be
    /// polled, so its connection is released at once.
    pub(super) fn new(body: Incoming, conn: Box<UpstreamConn>) -> Self {
        let mut wrapped = UpstreamBody {
            body,
            conn: Some(conn),
        };
        if wrapped.body.is_end_stream() {
            wrapped.release();
        }
        wrapped
    }

    /// The exchange is complete: the connection returns to its pool, or is
    /// closed if it has none.
    fn release(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Some(home) = conn.home {
                pool::checkin(conn, home);
            }
        }
    }

    /// Polls the body; when it waits for bytes, drives the connection (which
    /// reads them) and polls the body once more, so a chunk that was already
    /// on the socket is not left for another wake-up.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<hyper::Result<Frame<Bytes>>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.conn.as_mut() {
            Some(conn) => {
                conn.drive(cx);
                Pin::new(&mut self.body).poll_frame(cx)
            }
            None => Poll::Pending,
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = this.poll_body(cx);
        match &frame {
            // hyper stops polling a body whose length says it is complete, so
            // the last data frame may be the last call.
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
