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
//!
//! A WebSocket's splice ([`Splice::websocket`]) also follows the frame
//! headers each way (`ws_frames`: a few bytes of state, no buffer), so that
//! bellhop can end it the way WebSocket peers expect ([`Splice::close_now`]):
//! each direction finishes the frame under way, then gets bellhop's Close
//! frame (1001, going away) instead of whatever would come next; then what
//! the peers still send is read and dropped until each has sent its Close
//! (or EOF), and both sockets are shut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod goodbye;

use goodbye::{CloseTo, Frames};

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
/// every read with its direction and the number of bytes forwarded (idle
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
        closing: false,
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
    /// [`Splice::close_now`] was called: the directions say goodbye.
    closing: bool,
}

impl<A, B, F> Splice<'_, A, B, F> {
    /// `early`: bytes `b` sent before the splice began (read by whoever set
    /// the streams up), written to `a` before anything else. Call it once.
    pub(crate) fn b_sent_first(mut self, early: &[u8]) -> Self {
        if !early.is_empty() {
            if let Some(frames) = &mut self.b_to_a.frames {
                frames.observe(early);
            }
            self.b_to_a.pending = Some(early.into());
            self.b_to_a.written = 0;
            self.b_to_a.copied += early.len() as u64;
        }
        self
    }

    /// Follows WebSocket frames both ways, `a` being the client and `b` the
    /// upstream, so that [`close_now`](Self::close_now) can close cleanly.
    pub(crate) fn websocket(mut self) -> Self {
        let mut back = Frames::new(CloseTo::Client);
        if let Some(pending) = &self.b_to_a.pending {
            back.observe(&pending[self.b_to_a.written..]);
        }
        self.a_to_b.frames = Some(Frames::new(CloseTo::Upstream));
        self.b_to_a.frames = Some(back);
        self
    }

    /// Starts a WebSocket's goodbye; polling the splice then finishes each
    /// frame under way, sends each side bellhop's Close (unless that side
    /// already got one through the tunnel), waits for the peers' Close or
    /// EOF and shuts both sockets before it resolves. Nothing bounds that
    /// wait here: the caller does. Returns `false` (and changes nothing)
    /// when the splice does not follow frames ([`websocket`](Self::websocket)).
    pub(crate) fn close_now(&mut self) -> bool {
        if self.a_to_b.frames.is_none() || self.b_to_a.frames.is_none() {
            return false;
        }
        self.a_to_b.begin_close();
        self.b_to_a.begin_close();
        self.closing = true;
        true
    }
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
    /// WebSocket frames, when the splice follows them.
    frames: Option<Frames>,
}

impl Direction {
    /// Copies until EOF (then shuts the writer down) or, while a WebSocket
    /// closes, until the frame under way has been forwarded.
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
            if self.at_boundary() {
                return Poll::Ready(Ok(()));
            }
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
            let data = match &mut self.frames {
                Some(frames) => &data[..frames.forwardable(data)],
                None => data,
            };
            if data.is_empty() {
                continue;
            }
            on_read(data.len());
            self.copied += data.len() as u64;
            ready!(self.poll_write_read(cx, writer, data))?;
        }
        // Budget spent with data still flowing: let other tasks run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes a read's `data`; what the writer does not take yet goes to
    /// `pending` (and the direction waits for the writer).
    fn poll_write_read<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
        data: &[u8],
    ) -> Poll<io::Result<()>> {
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
        Poll::Ready(Ok(()))
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

impl<A, B, F> Splice<'_, A, B, F> {
    /// The bytes forwarded each way so far.
    fn copied(&self) -> Copied {
        Copied {
            a_to_b: self.a_to_b.copied,
            b_to_a: self.b_to_a.copied,
        }
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
        if this.closing {
            return this.poll_closing(cx);
        }
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
            Poll::Ready(Ok(this.copied()))
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
