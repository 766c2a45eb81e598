//! The socket under a server TLS stream, which takes over the unsent tail
//! of a record the kernel took only part of, so that rustls can free it.
//!
//! Why: rustls keeps each encrypted record in its own `Vec` until the last
//! byte of it is sent. When a client stops reading, the socket fills in
//! the middle of a record, and the record's whole allocation (up to
//! 16.4 KiB) stays pinned for as long as the client stays away, although
//! part of it left long ago. Copying the tail (on average half a record)
//! into an allocation of its exact size and telling rustls the record went
//! out lets rustls free it: a slow reader of a large response held
//! 16.4 KiB of records before, its tail now.
//!
//! Only the tail of the record the socket cut is taken: records the socket
//! took nothing of stay with rustls, already exact in size, and a write
//! that ends on a record boundary passes through untouched. A client that
//! reads fast pays a copy of at most one record on each short write (the
//! socket was full anyway).
//!
//! Until the tail is sent, every write, flush and shutdown sends it first
//! and waits on the socket while it cannot, so nothing rustls makes later
//! (records, alerts, a close_notify) can overtake it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

/// A client socket (`inner`) that holds the unsent tail of a cut record.
#[derive(Debug)]
pub struct RecordTail<IO> {
    inner: IO,
    /// What is left to send of the record the socket cut; empty (and
    /// unallocated) otherwise.
    tail: Vec<u8>,
    /// How much of `tail` has been sent.
    sent: usize,
}

impl<IO> RecordTail<IO> {
    pub(crate) fn new(inner: IO) -> Self {
        RecordTail {
            inner,
            tail: Vec::new(),
            sent: 0,
        }
    }
}

impl<IO: AsyncWrite + Unpin> RecordTail<IO> {
    /// Sends the held tail; `Pending` (woken by the socket) while it cannot.
    fn poll_send_tail(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.tail.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.tail[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if !self.tail.is_empty() {
            self.tail = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// What a write of `bufs` that the socket took `taken` bytes of
    /// reports to rustls: if the socket cut a buffer (a record) in the
    /// middle, its tail is held here and counted as written.
    fn take_cut_tail(&mut self, bufs: &[IoSlice<'_>], taken: usize) -> usize {
        let mut start = 0;
        for buf in bufs {
            let end = start + buf.len();
            if taken < end {
                if taken > start {
                    self.tail = buf[taken - start..].to_vec();
                    self.sent = 0;
                    return end;
                }
                return taken;
            }
            start = end;
        }
        taken
    }
}

crate::io_through::read_through!(RecordTail);

impl<IO: AsyncWrite + Unpin> AsyncWrite for RecordTail<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_tail(cx))?;
        let taken = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        Poll::Ready(Ok(this.take_cut_tail(bufs, taken)))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_tail(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_tail(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::task::Waker;

    /// A socket that takes at most `room` bytes per write and then is full
    /// (`Pending`) until `room` is raised again.
    #[derive(Default)]
    struct Socket {
        room: usize,
        got: Vec<u8>,
    }

    impl AsyncWrite for Socket {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.room == 0 {
                return Poll::Pending;
            }
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(this.room);
                this.got.extend_from_slice(&buf[..take]);
                this.room -= take;
                n += take;
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn with_room(room: usize) -> RecordTail<Socket> {
        RecordTail::new(Socket {
            room,
            got: Vec::new(),
        })
    }

    fn write(stream: &mut RecordTail<Socket>, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
        let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        Pin::new(stream).poll_write_vectored(&mut Context::from_waker(Waker::noop()), &slices)
    }

    fn flush(stream: &mut RecordTail<Socket>) -> Poll<io::Result<()>> {
        Pin::new(stream).poll_flush(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_record_cut_in_the_middle_is_taken_whole_and_its_tail_held() {
        let mut stream = with_room(5);
        let written = write(&mut stream, &[b"abcd", b"efgh", b"ijkl"]);
        // The socket took "abcd" and "e": the second record's tail is held,
        // the third stays with the writer.
        assert!(matches!(written, Poll::Ready(Ok(8))), "{written:?}");
        assert_eq!(stream.tail, b"fgh");
        assert_eq!(stream.tail.capacity(), 3);
        assert_eq!(stream.inner.got, b"abcde");
    }

    #[test]
    fn a_write_that_ends_on_a_record_boundary_holds_nothing() {
        let mut stream = with_room(8);
        let written = write(&mut stream, &[b"abcd", b"efgh", b"ijkl"]);
        assert!(matches!(written, Poll::Ready(Ok(8))), "{written:?}");
        assert!(stream.tail.is_empty());
    }

    #[test]
    fn nothing_overtakes_the_tail() {
        let mut stream = with_room(2);
        assert!(matches!(write(&mut stream, &[b"abcd"]), Poll::Ready(Ok(4))));
        // Full: the next write and a flush wait, and take nothing new.
        assert!(write(&mut stream, &[b"wxyz"]).is_pending());
        assert!(flush(&mut stream).is_pending());
        assert_eq!(stream.inner.got, b"ab");
        // Room for the tail and one byte more: the tail goes first, whole.
        stream.inner.room = 3;
        assert!(matches!(write(&mut stream, &[b"wxyz"]), Poll::Ready(Ok(4))));
        assert_eq!(stream.inner.got, b"abcdw");
        assert_eq!(stream.tail, b"xyz");
        stream.inner.room = 100;
        assert!(matches!(flush(&mut stream), Poll::Ready(Ok(()))));
        assert_eq!(stream.inner.got, b"abcdwxyz");
        assert_eq!(stream.tail.capacity(), 0, "the sent tail is freed");
    }

    #[test]
    fn a_full_socket_takes_nothing_and_holds_nothing() {
        let mut stream = with_room(0);
        assert!(write(&mut stream, &[b"abcd"]).is_pending());
        assert!(stream.tail.is_empty());
    }
}
