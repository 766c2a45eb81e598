//! Bytes in and out of each client connection, by site
//! (`bellhop_received_bytes_total`, `bellhop_sent_bytes_total`).
//!
//! The count sits in the connection's stream, under hyper (and above TLS, so
//! it is HTTP bytes: heads and bodies, and everything an upgraded WebSocket
//! carries, since hyper hands this same stream to the tunnel). Counting there
//! costs a plain add per read or write on a field only this connection's task
//! touches; the totals go to the shared counters once, when the stream is
//! dropped (the connection, or its tunnel, has ended).
//!
//! Which site: the first one a request on the connection was routed to (a
//! connection serves one site in practice: certificates are per name, so
//! browsers do not coalesce several sites on one h2 connection). Connections
//! that never reached a site count under the site label "".

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::connection::ConnContext;

/// A client stream that counts what passes through it.
#[derive(Debug)]
pub(super) struct Counted<I> {
    inner: I,
    received: u64,
    sent: u64,
    /// Says which site's counters get the totals.
    conn: Arc<ConnContext>,
}

impl<I> Counted<I> {
    /// Counts `inner`'s bytes for the site `conn` ends up serving.
    pub(super) fn new(inner: I, conn: Arc<ConnContext>) -> Self {
        Counted {
            inner,
            received: 0,
            sent: 0,
            conn,
        }
    }
}

impl<I> Drop for Counted<I> {
    fn drop(&mut self) {
        let metrics = &self.conn.shared.metrics;
        self.conn
            .site_bytes()
            .unwrap_or_else(|| metrics.unrouted_bytes())
            .add(self.received, self.sent);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.received += buf.filled().len().saturating_sub(before) as u64;
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.sent += n as u64;
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            this.sent += n as u64;
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
