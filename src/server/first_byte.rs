//! Waiting for a connection's first byte before anything is built for it.
//!
//! A connection task's future is allocated whole when the task is spawned:
//! every state it may reach later (the TLS handshake with its rustls
//! connection, hyper's HTTP/1.1 or h2 connection) sits inline in it, sized
//! for the largest. A client that connects to a TLS port and says nothing
//! would so pin over 10 KiB for as long as the handshake timeout lets it
//! (19,000 such connections: 240 MiB). The task therefore starts with only
//! [`first_byte`]'s small future, and the code that serves the connection is
//! boxed once bytes have arrived, so a silent connection costs its socket, a
//! timer and a task of a few hundred bytes.
//!
//! Plain HTTP is handed to hyper at accept instead: hyper's
//! `client-header-timeout` starts when it first reads, so a wait in front of
//! it would let a slow head take twice the timeout.

use tokio::net::TcpStream;
use tokio::time::Instant;
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
/// `deadline` passes, or `stop` is cancelled; consumes nothing.
///
/// A peek, not `readable()`: tokio reports a freshly accepted socket
/// readable at once (seen with strace: rustls' 4 KiB read right after
/// accept, answered EAGAIN), so `readable()` alone waited for nothing.
pub(super) async fn first_byte(
    stream: &TcpStream,
    deadline: Instant,
    stop: &CancellationToken,
) -> FirstByte {
    let mut byte = [0u8; 1];
    tokio::select! {
        ready = tokio::time::timeout_at(deadline, stream.peek(&mut byte)) => match ready {
            Ok(Ok(_)) => FirstByte::Arrived,
            Ok(Err(e)) => FirstByte::Failed(e),
            Err(_) => FirstByte::TimedOut,
        },
        () = stop.cancelled() => FirstByte::Stopped,
    }
}
