//! Splices an upgraded client connection to an upgraded upstream connection.
//!
//! After a `101 Switching Protocols` both sides speak a protocol bellhop does not
//! parse (WebSocket, usually), so bytes are copied both ways until both sides
//! are done. Half-close is respected: EOF from one side becomes a write shutdown
//! on the other while the opposite direction keeps flowing. There is no lifetime
//! limit, only an idle timeout: no bytes either way for `idle` closes both.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes buffered per direction. WebSocket pushes are small; a smaller buffer
/// keeps a thousand idle sockets cheap while large messages still stream.
const BUFFER_SIZE: usize = 8 * 1024;

/// Why a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides closed; bytes copied client→upstream and upstream→client.
    Closed {
        /// Client to upstream.
        sent: u64,
        /// Upstream to client.
        received: u64,
    },
    /// No bytes either way for the idle timeout.
    Idle,
    /// bellhop is shutting down.
    Shutdown,
    /// A socket error on either side.
    Error(io::Error),
}

/// Waits for both upgrades, then copies bytes both ways until the tunnel ends.
pub async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    shutdown: CancellationToken,
) -> TunnelEnd {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => return TunnelEnd::Error(io::Error::other(e)),
    };
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Activity::new(TokioIo::new(client), started, activity.clone());
    let mut upstream = Activity::new(TokioIo::new(upstream), started, activity.clone());

    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        BUFFER_SIZE,
        BUFFER_SIZE,
    );
    tokio::select! {
        result = copy => match result {
            Ok((sent, received)) => TunnelEnd::Closed { sent, received },
            Err(e) => TunnelEnd::Error(e),
        },
        () = idle_expired(started, &activity, idle) => TunnelEnd::Idle,
        () = shutdown.cancelled() => TunnelEnd::Shutdown,
    }
}

/// Resolves once no read has seen a byte for `idle`.
async fn idle_expired(started: Instant, activity: &AtomicU64, idle: Duration) {
    loop {
        let last = started + Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A stream wrapper that records when it last read a byte, in milliseconds
/// since the tunnel started (an atomic, so no lock and no allocation per read).
struct Activity<T> {
    inner: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Activity<T> {
    fn new(inner: T, started: Instant, last: Arc<AtomicU64>) -> Self {
        Activity {
            inner,
            started,
            last,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = this.started.elapsed().as_millis();
            this.last
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
