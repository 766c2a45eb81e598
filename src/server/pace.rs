//! Backpressure for HTTP/1.1 responses: a response body yields more only
//! once the client's stream has taken what it yielded before.
//!
//! Why: hyper polls a response body for more while its write queue has room
//! (up to `max_buf_size`, which is also the request-head limit, so it cannot
//! be made small), whether or not the client reads. For a client that reads
//! nothing, that queue filled with upstream read buffers, and every byte in
//! it was a byte bellhop had pulled off the upstream for nobody. Paced, a
//! body stops once [`WINDOW`] bytes are on their way: the rest of the
//! response waits in the kernel's socket buffers and the backend blocks on
//! its write, as it does behind nginx.
//!
//! How: [`PacedBody`] counts what it hands hyper, and [`PacedIo`], the
//! stream hyper writes to, notes when a write took everything hyper offered
//! (hyper offers its whole queue to each write: one `writev`, or its
//! flattened buffer) and a flush then completed: all of it has left hyper's
//! queue and every buffer under it (rustls' records included) for the
//! kernel, and the count starts again. Both are polled by the connection's
//! own task (hyper's HTTP/1.1 dispatcher polls the body, writes and flushes
//! in the same poll), so the flush that completes wakes the task, and the
//! body is polled again. h2 is not paced this way: its streams share one
//! connection and have flow control of their own.
//!
//! rustls would otherwise go on taking plaintext into its queue of encrypted
//! records while the socket is full (up to its buffer limit, each record
//! partly sent keeping its whole allocation); paced, it holds at most the
//! one write that did not fit in the kernel.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWrite;

/// Bytes a body may have on their way (handed to hyper, not yet all in the
/// kernel) before it waits: one upstream read (`UPSTREAM_READ_MAX`), and
/// several smaller ones (a unix socket's reads are a few KiB each) in one
/// write. It is what a client that reads nothing holds in hyper and rustls.
/// Measured against 32 KiB and against no pacing, 64 MiB downloads through
/// TLS ran as fast with each (alternating runs, within the machine's noise).
const WINDOW: usize = 16 * 1024;

/// What the stream, the bodies and the task of one HTTP/1.1 connection
/// share. Atomics only because hyper wants `Send` bodies: one task touches
/// them (`Relaxed`).
#[derive(Debug)]
pub(super) struct Pace {
    /// Bytes handed to hyper since its queue last emptied into the kernel.
    on_the_way: AtomicUsize,
    /// A body returned `Pending` until the queue is written.
    waiting: AtomicBool,
    /// Everything hyper wrote has reached the kernel, and it has not tried
    /// to write since: its queue is empty.
    settled: AtomicBool,
    /// The connection is being parked ([`park`](super::park)).
    parking: AtomicBool,
}

impl Pace {
    /// A new pace for one connection, shared by its stream and bodies.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Pace {
            on_the_way: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            settled: AtomicBool::new(true),
            parking: AtomicBool::new(false),
        })
    }

    /// All that hyper had queued reached the kernel: wakes the waiting body
    /// (with the waker of the task flushing, which is the body's).
    fn drained(&self, cx: &Context<'_>) {
        self.on_the_way.store(0, Ordering::Relaxed);
        self.settled.store(true, Ordering::Relaxed);
        if self.waiting.swap(false, Ordering::Relaxed) {
            cx.waker().wake_by_ref();
        }
    }

    /// Whether hyper's write queue is empty and all of it in the kernel.
    pub(super) fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }

    /// Marks the connection as parking (or back in service).
    pub(super) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Ordering::Relaxed);
    }

    /// Whether the connection is parking.
    pub(super) fn is_parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// Whether the body may yield more; if not, it is noted as waiting (the
    /// flush that empties the queue wakes it).
    fn ready(&self) -> bool {
        let full = self.on_the_way.load(Ordering::Relaxed) >= WINDOW;
        self.waiting.store(full, Ordering::Relaxed);
        !full
    }

    /// A piece of `n` bytes was handed to hyper (an empty one is dropped,
    /// never written, so it counts nothing).
    fn yielded(&self, n: usize) {
        let on_the_way = self.on_the_way.load(Ordering::Relaxed);
        self.on_the_way.store(on_the_way + n, Ordering::Relaxed);
    }
}

/// The client's stream, telling [`Pace`] when what hyper wrote has all
/// reached the kernel.
#[derive(Debug)]
pub(super) struct PacedIo<I> {
    inner: I,
    pace: Arc<Pace>,
    /// The last write took all hyper offered; a completed flush then means
    /// hyper's queue and the stream's buffers are empty.
    wrote_all: bool,
}

impl<I> PacedIo<I> {
    /// Paces the writes to `inner` with `pace`.
    pub(super) fn new(inner: I, pace: Arc<Pace>) -> Self {
        PacedIo {
            inner,
            pace,
            wrote_all: false,
        }
    }

    /// Passes a write's result on; `offered` is how many bytes hyper passed
    /// in, all it had queued. Any write, even one that waits, unsettles the
    /// queue until a full write and a flush settle it again.
    fn wrote(&mut self, offered: usize, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if offered > 0 {
            self.pace.settled.store(false, Ordering::Relaxed);
        }
        if let Poll::Ready(Ok(n)) = poll {
            self.wrote_all = n == offered;
        }
        poll
    }
}

super::read_through::read_through!(PacedIo);

impl<I: AsyncWrite + Unpin> AsyncWrite for PacedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(buf.len(), poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(bufs.iter().map(|b| b.len()).sum(), poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper flushes after each write that emptied its queue.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        if std::mem::take(&mut this.wrote_all) {
            this.pace.drained(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A response body that waits, once [`WINDOW`] bytes are on their way, for
/// them to leave hyper's write queue before it polls its source again.
#[derive(Debug)]
pub(super) struct PacedBody<B> {
    inner: B,
    pace: Arc<Pace>,
}

impl<B> PacedBody<B> {
    /// Paces `inner` by the writes `pace` counts.
    pub(super) fn new(inner: B, pace: Arc<Pace>) -> Self {
        PacedBody { inner, pace }
    }
}

impl<B> http_body::Body for PacedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        if !this.pace.ready() {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.pace.yielded(data.remaining());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    use bytes::Bytes;
    use http_body::Body as _;

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A body of endless pieces of half a window that counts how often it
    /// is asked.
    #[derive(Default)]
    struct Pieces(usize);

    impl http_body::Body for Pieces {
        type Data = Bytes;
        type Error = io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
            self.0 += 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0; WINDOW / 2])))))
        }
    }

    /// A stream that takes everything while `open`, and nothing otherwise.
    struct Gate {
        open: bool,
    }

    impl AsyncWrite for Gate {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.open {
                Poll::Ready(Ok(buf.len()))
            } else {
                Poll::Pending
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.open {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Whether `body` gave a piece.
    fn next(body: &mut PacedBody<Pieces>, cx: &mut Context<'_>) -> bool {
        Pin::new(body).poll_frame(cx).is_ready()
    }

    #[test]
    fn a_full_window_waits_until_written_and_flushed() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let pace = Pace::new();
        let mut body = PacedBody::new(Pieces::default(), pace.clone());
        let mut io = PacedIo::new(Gate { open: true }, pace);

        assert!(next(&mut body, &mut cx), "the first half window");
        assert!(next(&mut body, &mut cx), "the second half window");
        assert!(!next(&mut body, &mut cx), "more than a window on its way");
        assert_eq!(body.inner.0, 2, "the source asked again");

        // Written, but the stream below still holds it.
        let window = [0u8; WINDOW];
        assert!(Pin::new(&mut io).poll_write(&mut cx, &window).is_ready());
        io.inner.open = false;
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        assert!(!next(&mut body, &mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);

        // Gone to the kernel: the waiting body is woken and gets its piece.
        io.inner.open = true;
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(next(&mut body, &mut cx), "the next piece");
        assert!(next(&mut body, &mut cx));
        assert_eq!(body.inner.0, 4);

        // A write that took only part of what was offered does not count.
        assert!(!next(&mut body, &mut cx));
        let poll = io.wrote(WINDOW, Poll::Ready(Ok(4)));
        assert!(matches!(poll, Poll::Ready(Ok(4))));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert!(!next(&mut body, &mut cx));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }
}
