//! `client-write-timeout`: a client that stops reading is closed once a
//! write to it has been blocked that long.
//!
//! The deadline sits on the connection's byte stream (under hyper, above
//! TLS), so it covers every response alike: proxied bodies, SSE, files and
//! bellhop's own pages, on HTTP/1.1 and h2. It only runs while a write is
//! blocked: a response that is merely slow to produce (an idle SSE stream)
//! writes nothing and is never cut. Once a connection is upgraded
//! (WebSocket) the tunnel's `idle-timeout` governs it instead, and this
//! deadline steps aside.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

use super::connection::ConnContext;

/// A client stream whose writes fail after `timeout` without progress.
#[derive(Debug)]
pub(super) struct WriteDeadline<I> {
    inner: I,
    timeout: Duration,
    /// Made the first time a write blocks, then reset for each blocked write.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether `sleep` counts down for the write blocked now.
    blocked: bool,
    /// The connection: its peer for the log, and whether it was upgraded.
    conn: Arc<ConnContext>,
}

impl<I> WriteDeadline<I> {
    /// Wraps `inner`, the stream of `conn`.
    pub(super) fn new(inner: I, timeout: Duration, conn: Arc<ConnContext>) -> Self {
        WriteDeadline {
            inner,
            timeout,
            sleep: None,
            blocked: false,
            conn,
        }
    }

    /// Called after a write or flush returned `Pending`: arms the deadline
    /// at the start of a blocked stretch, and fails once it has passed.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.conn.is_upgraded() {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.blocked {
            sleep.as_mut().reset(deadline);
            self.blocked = true;
        }
        if sleep.as_mut().poll(cx).is_ready() {
            tracing::info!(peer = %self.conn.accepted.peer, timeout = ?self.timeout, "client stopped reading, connection closed (client-write-timeout)");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client-write-timeout: the client stopped reading",
            ));
        }
        Ok(())
    }

    /// Passes a write or flush result on, tracking whether it blocked.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                self.blocked = false;
                ready
            }
        }
    }
}

crate::io_through::read_through!(WriteDeadline);

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.track(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
