//! Lingering close: after bellhop's last byte and its FIN, the connection is
//! kept open until the client closes its side (or a bound passes), instead
//! of being closed while the response's tail still waits in the kernel.
//!
//! Why: a socket the process has closed with unsent data in its send queue
//! is an orphan, and the kernel resets orphans when TCP memory runs short
//! (`TCP: out of memory -- consider tuning tcp_mem`,
//! `TcpExtTCPAbortOnMemory`): the client gets an RST instead of the last
//! megabytes of its download. That happens whenever bellhop closes after a
//! response, most of all while it drains after an upgrade or shuts down: a
//! large download's last buffers are still queued when the response ends.
//! While the socket stays open it is not an orphan, and the kernel keeps its
//! data. (nginx's `lingering_close` does the same for another reason: a
//! close with unread request bytes also sends an RST.)
//!
//! hyper calls `poll_shutdown` once, when it closes the connection; this
//! wrapper sends the FIN there, then reads and discards until the client's
//! EOF, for at most `limit` (`client-write-timeout`: the same patience as
//! for a client that does not read). An upgraded connection (WebSocket) is
//! left alone: its tunnel owns both directions, and a read here would steal
//! its bytes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::connection::ConnContext;

/// A client stream whose shutdown waits for the client to close its side.
#[derive(Debug)]
pub(super) struct Linger<I> {
    inner: I,
    limit: Duration,
    /// Set once the FIN is out: the bound on waiting for the client's EOF.
    waiting: Option<Pin<Box<Sleep>>>,
    /// The connection, to know whether a tunnel took it over.
    conn: Arc<ConnContext>,
}

impl<I> Linger<I> {
    /// Wraps `inner`, the stream of `conn`.
    pub(super) fn new(inner: I, limit: Duration, conn: Arc<ConnContext>) -> Self {
        Linger {
            inner,
            limit,
            waiting: None,
            conn,
        }
    }
}

impl<I: AsyncRead + Unpin> Linger<I> {
    /// Reads and discards until the client's EOF (or an error, or the
    /// bound): `Ready` when the socket may be closed.
    fn poll_client_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 1024];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        match self.waiting.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(()),
        }
    }
}

crate::io_through::read_through!(Linger);

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<I> {
    crate::io_through::write_through!(inner);

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.conn.is_upgraded() {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        if this.waiting.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.waiting = Some(Box::pin(tokio::time::sleep(this.limit)));
        }
        this.poll_client_close(cx).map(Ok)
    }
}
