//! Copies bytes both ways between two streams without a buffer per connection.
//!
//! `tokio::io::copy_bidirectional` keeps two buffers alive for the whole life of
//! a tunnel, 16 KiB per WebSocket even when it is idle for hours. Here a read
//! goes into a buffer on the stack and is written straight to the other side;
//! only bytes the other side cannot take yet are moved to the heap, and that
//! allocation is freed as soon as they are written. An idle tunnel holds no
//! buffer at all.
//!
//! EOF on one side becomes a write shutdown on the other while the opposite
//! direction keeps flowing (half-close); the splice ends when both directions
//! have ended.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Size of the on-stack read buffer.
const CHUNK: usize = 16 * 1024;
/// Reads per direction per poll before yielding to other tasks.
const BUDGET: usize = 32;

/// Bytes copied each way when a splice ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Copied {
    /// From `a` to `b`.
    pub a_to_b: u64,
    /// From `b` to `a`.
    pub b_to_a: u64,
}

/// Which way a read's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// From `a` to `b`.
    AToB,
    /// From `b` to `a`.
    BToA,
}

/// Copies `a` ⇄ `b` until both directions reach EOF. `on_read` is called for
/// every successful non-empty read with its direction and length (idle
/// tracking, and byte counts that outlive a splice cut short).
pub(crate) fn splice<'s, A, B, F>(a: &'s mut A, b: &'s mut B, on_read: F) -> Splice<'s, A, B, F>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Way, usize),
{
    Splice {
        a,
        b,
        a_to_b: Direction::default(),
        b_to_a: Direction::default(),
        on_read,
    }
}

/// The future returned by [`splice`].
#[derive(Debug)]
pub(crate) struct Splice<'s, A, B, F> {
    a: &'s mut A,
    b: &'s mut B,
    a_to_b: Direction,
    b_to_a: Direction,
    on_read: F,
}

/// The state of one direction.
#[derive(Debug, Default)]
struct Direction {
    /// Bytes read but not yet written, only while the writer pushes back.
    pending: Option<Box<[u8]>>,
    /// How much of `pending` has been written.
    written: usize,
    /// Data was written since the last flush.
    unflushed: bool,
    /// The reader reached EOF.
    eof: bool,
    /// The writer has been shut down: this direction is over.
    done: bool,
    /// Total bytes copied.
    copied: u64,
}

impl Direction {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        on_read: &mut impl FnMut(usize),
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        for _ in 0..BUDGET {
            ready!(self.poll_write_pending(cx, writer))?;
            if self.eof {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            let mut chunk = [0u8; CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    // Nothing more to read right now: push out what we wrote.
                    if self.unflushed {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let data = buf.filled();
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            on_read(data.len());
            self.copied += data.len() as u64;
            let mut offset = 0;
            while offset < data.len() {
                match Pin::new(&mut *writer).poll_write(cx, &data[offset..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => {
                        offset += n;
                        self.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // The writer pushes back; keep the rest until it drains.
                        self.pending = Some(data[offset..].into());
                        self.written = 0;
                        return Poll::Pending;
                    }
                }
            }
        }
        // Budget spent with data still flowing: let other tasks run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes out `pending`, freeing it once empty.
    fn poll_write_pending<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        if let Some(pending) = &self.pending {
            while self.written < pending.len() {
                let n = ready!(Pin::new(&mut *writer).poll_write(cx, &pending[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.unflushed = true;
            }
            self.pending = None;
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<A, B, F> Future for Splice<'_, A, B, F>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Way, usize) + Unpin,
{
    type Output = io::Result<Copied>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let on_read = &mut this.on_read;
        let forward = this
            .a_to_b
            .poll_copy(cx, &mut *this.a, &mut *this.b, &mut |n| {
                on_read(Way::AToB, n)
            })?;
        let backward = this
            .b_to_a
            .poll_copy(cx, &mut *this.b, &mut *this.a, &mut |n| {
                on_read(Way::BToA, n)
            })?;
        if forward.is_ready() && backward.is_ready() {
            Poll::Ready(Ok(Copied {
                a_to_b: this.a_to_b.copied,
                b_to_a: this.b_to_a.copied,
            }))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close() {
        // client <-> (a  splice  b) <-> server, over in-memory pipes small
        // enough that the writer pushes back and `pending` is exercised.
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut server) = tokio::io::duplex(1024);
        let mut reads = 0u32;
        let mut seen = Copied::default();
        let splicer = tokio::spawn(async move {
            let copied = splice(&mut a, &mut b, |way, n| {
                reads += 1;
                match way {
                    Way::AToB => seen.a_to_b += n as u64,
                    Way::BToA => seen.b_to_a += n as u64,
                }
            })
            .await;
            (copied, reads, seen)
        });

        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            received, payload,
            "client->server bytes, then EOF (half-close)"
        );
        // The other direction still works after the client's half-close.
        server.write_all(b"reply after half-close").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply after half-close");

        let (copied, reads, seen) = splicer.await.unwrap();
        let copied = copied.unwrap();
        assert_eq!(copied.a_to_b, payload.len() as u64);
        assert_eq!(copied.b_to_a, 22);
        assert!(reads > 0);
        assert_eq!(seen, copied, "on_read sees every byte, each way");
    }
}
