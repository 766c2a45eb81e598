//! Waiting for a connection's first byte before anything is built for it.
//!
//! A connection task's future is allocated whole when the task is spawned:
//! every state it may reach later (the TLS handshake with its rustls
//! connection, hyper's HTTP/1.1 or h2 connection) sits inline in it, sized
//! for the largest. A client that connects and says nothing would so pin
//! over 10 KiB for as long as its deadline lets it (19,000 such connections
//! to a TLS port: 240 MiB). The task therefore starts with only
//! [`first_byte`]'s small future, and the code that serves the connection is
//! boxed once bytes have arrived, so a silent connection costs its socket, a
//! timer and a task of a few hundred bytes, on TLS and plain-HTTP ports alike.
//!
//! The wait counts against the deadline of what follows it (the TLS
//! handshake timeout, or `client-header-timeout` for the first request head
//! on plain HTTP), so it never adds to it.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// How the wait for the first byte ended.
#[derive(Debug)]
pub(super) enum FirstByte {
    /// Bytes (or the peer's FIN) are there: serve the connection.
    Arrived,
    /// Nothing came before the deadline.
    TimedOut,
    /// The socket failed while waiting.
    Failed(std::io::Error),
    /// The listener is stopping (shutdown, or a reload removed its port).
    Stopped,
}

/// Waits until a byte (or the end of the stream) has arrived on `stream`,
/// `expired` fires, or `stop` is cancelled; consumes nothing.
///
/// A peek, not `readable()`: tokio reports a freshly accepted socket
/// readable at once (seen with strace: rustls' 4 KiB read right after
/// accept, answered EAGAIN), so `readable()` alone waited for nothing.
/// Polled by hand rather than through `select!` and `timeout_at`: the waker
/// then sits in the socket's own readiness slot instead of a readiness
/// future inline in the task, which halves this future (it is what every
/// silent connection holds).
///
/// `expired` is the caller's timer: what comes after the wait needs its
/// deadline too, and one timer in the caller's future is smaller than a
/// timer here plus a copy of the deadline there.
pub(super) async fn first_byte(
    stream: &TcpStream,
    mut expired: Pin<&mut Sleep>,
    stop: &CancellationToken,
) -> FirstByte {
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    poll_fn(|cx| {
        if stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(FirstByte::Stopped);
        }
        let mut byte = [0u8; 1];
        match stream.poll_peek(cx, &mut ReadBuf::new(&mut byte)) {
            Poll::Ready(Ok(_)) => return Poll::Ready(FirstByte::Arrived),
            Poll::Ready(Err(e)) => return Poll::Ready(FirstByte::Failed(e)),
            Poll::Pending => {}
        }
        match expired.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(FirstByte::TimedOut),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::net::TcpStream;
    use tokio_util::sync::CancellationToken;

    use super::super::connection::{serve_plain, Accepted};
    use super::super::https::serve_tls;
    use super::super::Shared;
    use crate::limit::ConnPermit;

    /// The size of the future `serve` returns, without calling it.
    fn future_size<F, R>(_: &F) -> usize
    where
        F: FnOnce(TcpStream, Accepted, ConnPermit, Arc<Shared>, CancellationToken) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// What a connection that sends nothing holds is its task's future:
    /// kept small, whatever serving the connection takes later (once over
    /// 10 KiB inline, 456 bytes in a debug build when this was written).
    #[test]
    fn a_silent_connection_holds_a_small_future() {
        for (what, size) in [
            ("TLS", future_size(&serve_tls)),
            ("plain HTTP", future_size(&serve_plain)),
        ] {
            assert!(size <= 1024, "{what}: {size} bytes");
        }
    }
}
