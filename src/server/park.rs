//! Idle HTTP/1.1 connections give their buffers back: once a keep-alive
//! connection has had nothing in flight for [`PARK_AFTER`], hyper's
//! connection is taken apart and only the stream stays, until the client's
//! next bytes arrive and a new hyper connection picks up from them.
//!
//! Why: hyper keeps an 8 KiB read buffer and an 8 KiB buffer for response
//! heads for the whole life of a connection, busy or not, and the connection
//! state around them. An idle keep-alive connection, and a slow reader whose
//! response is all in the kernel's socket buffers, held about 30 KiB each
//! (nginx: 15 KiB; it frees its buffers when a connection goes idle). Parked,
//! a connection keeps its stream (TLS state included), its task and its
//! context, and nothing of hyper.
//!
//! How: when the connection's task finds hyper waiting for a request head,
//! no response in flight and everything written flushed (`Pace::settled`)
//! for [`PARK_AFTER`], it marks the connection as parking and asks hyper to
//! shut down gracefully. An idle hyper connection then closes at once, and
//! [`Resume`] holds back the stream's shutdown; `into_parts` hands back the
//! stream and any bytes hyper had read but not parsed (the start of a head).
//! Those bytes, or the first read once the client speaks again, go in front
//! of the stream ([`Resume`]) for the next hyper connection.
//!
//! Not parked: a connection with a request body not yet read to its end
//! (hyper may still be reading or discarding it after the response, which a
//! graceful shutdown would cut short; a proxied body read whole counts as
//! done, one never read keeps the connection unparked), an upgraded one, and
//! one that has not served a request
//! since it was last resumed (a head that stays incomplete does not cycle
//! hyper connections; its deadline runs in hyper as before).
//!
//! [`PARK_AFTER`] keeps busy keep-alive connections (a client sending its next
//! request within it) from paying for a new hyper connection per request;
//! until then the check costs a timer reset per request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::pace::Pace;

/// How long an HTTP/1.1 connection is idle before it is parked.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(100);

/// The most a parked connection's first read takes at once; the rest stays in
/// the stream for hyper. Read into the stack, so a parked connection holds
/// no buffer.
const FIRST_READ: usize = 4096;

/// The stream as hyper sees it: `prefix` first (bytes read while parked, or
/// left unparsed by the hyper connection before), then `inner`. Shutting it
/// down is held back while its connection parks: hyper closes its side, the
/// stream stays open.
#[derive(Debug)]
pub(super) struct Resume<I> {
    inner: I,
    prefix: Bytes,
    pace: Arc<Pace>,
}

impl<I> Resume<I> {
    /// `inner` for a new connection, nothing read ahead; `pace` says when
    /// it parks.
    pub(super) fn new(inner: I, pace: Arc<Pace>) -> Self {
        Resume {
            inner,
            prefix: Bytes::new(),
            pace,
        }
    }

    /// Reads `prefix` before the stream.
    pub(super) fn set_prefix(&mut self, prefix: Bytes) {
        self.prefix = prefix;
    }
}

impl<I: AsyncRead + Unpin> Resume<I> {
    /// Waits for the client's next bytes while parked: up to [`FIRST_READ`]
    /// of them, or `None` once the client has closed its side.
    pub(super) async fn next_bytes(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| {
            let mut buf = [0u8; FIRST_READ];
            let mut read = ReadBuf::new(&mut buf);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
            let filled = read.filled();
            Poll::Ready(Ok(
                (!filled.is_empty()).then(|| Bytes::copy_from_slice(filled))
            ))
        })
        .await
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Resume<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // Read to its end, it would still hold its allocation.
            this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Resume<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pace.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// The prefix comes first, in pieces as small as the reader asks for, then
    /// the stream.
    #[tokio::test]
    async fn reads_the_prefix_then_the_stream() {
        let (client, mut server) = tokio::io::duplex(64);
        server.write_all(b" world").await.unwrap();
        drop(server);
        let mut stream = Resume {
            inner: client,
            prefix: Bytes::from_static(b"hello"),
            pace: Pace::new(),
        };
        let mut first = [0u8; 3];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hel");
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "lo world");
        assert!(stream.prefix.is_empty());
    }

    /// Parked, the next bytes are read once they come; a closed client reads
    /// as `None`.
    #[tokio::test]
    async fn next_bytes_waits_for_the_client() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut stream = Resume::new(client, Pace::new());
        let waiting = tokio::spawn(async move {
            let first = stream.next_bytes().await.unwrap();
            let after = stream.next_bytes().await.unwrap();
            (first, after)
        });
        // One turn of this (single-threaded) runtime: the reader ran and waits.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing sent yet");
        server.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        drop(server);
        let (first, after) = waiting.await.unwrap();
        assert_eq!(first.as_deref(), Some(&b"GET / HTTP/1.1\r\n"[..]));
        assert_eq!(after, None);
    }

    /// While parking, hyper's shutdown leaves the stream open; otherwise it
    /// closes it.
    #[tokio::test]
    async fn shutdown_is_held_while_parking() {
        let (client, mut server) = tokio::io::duplex(64);
        let pace = Pace::new();
        let mut stream = Resume::new(client, pace.clone());
        pace.set_parking(true);
        stream.shutdown().await.unwrap();
        stream.write_all(b"still open").await.unwrap();
        let mut got = [0u8; 10];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"still open");

        pace.set_parking(false);
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "closed after the real shutdown");
    }
}
