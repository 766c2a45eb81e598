//! Splices an upgraded client connection to an upgraded upstream connection.
//!
//! After a `101 Switching Protocols` both sides speak a protocol bellhop does not
//! parse (WebSocket, usually), so bytes are copied both ways until both sides
//! are done. Half-close is respected: EOF from one side becomes a write shutdown
//! on the other while the opposite direction keeps flowing. There is no lifetime
//! limit, only an idle timeout: no bytes either way for `idle` closes both.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::UpstreamConn;
use super::splice::{splice, Way};

/// Both halves of a `101 Switching Protocols`, waiting to be spliced.
///
/// The proxy hands this back with the 101 response instead of spawning it: the
/// caller owns the tasks that must end on shutdown (and may count open
/// tunnels), and the proxy stays free of the server's types.
#[derive(Debug)]
#[must_use = "a tunnel carries nothing until it runs"]
pub(crate) struct Tunnel {
    client: OnUpgrade,
    /// The upstream connection that answered 101; it gives up its stream
    /// once driven past the 101.
    upstream: Box<UpstreamConn>,
    idle: Duration,
    /// The upstream's label, for the log lines.
    label: Arc<str>,
}

impl Tunnel {
    pub(super) fn new(
        client: OnUpgrade,
        upstream: Box<UpstreamConn>,
        idle: Duration,
        label: Arc<str>,
    ) -> Tunnel {
        Tunnel {
            client,
            upstream,
            idle,
            label,
        }
    }

    /// Splices both streams until the tunnel ends or `shutdown` is cancelled,
    /// logs why it ended, and says so.
    pub(crate) async fn run(self, shutdown: CancellationToken) -> TunnelEnd {
        let Tunnel {
            client,
            upstream,
            idle,
            label,
        } = self;
        let end = splice_until_end(client, upstream, idle, shutdown).await;
        let TunnelEnd {
            why,
            sent,
            received,
        } = &end;
        match why {
            Why::Closed => {
                tracing::debug!(upstream = %label, sent, received, "upgraded connection closed")
            }
            Why::Idle => {
                tracing::info!(upstream = %label, idle_timeout = ?idle, sent, received, "upgraded connection idle, closed")
            }
            Why::Shutdown => {
                tracing::debug!(upstream = %label, sent, received, "upgraded connection closed for shutdown")
            }
            Why::Error(e) => {
                tracing::debug!(upstream = %label, error = %e, sent, received, "upgraded connection ended with an error")
            }
        }
        end
    }
}

/// How a tunnel ended, and what it carried until then.
#[derive(Debug)]
pub(crate) struct TunnelEnd {
    /// Why it ended.
    pub why: Why,
    /// Bytes from the client to the upstream.
    pub sent: u64,
    /// Bytes from the upstream to the client.
    pub received: u64,
}

impl TunnelEnd {
    /// Whether both sides closed it (rather than a timeout, shutdown or error).
    pub(crate) fn closed_cleanly(&self) -> bool {
        matches!(self.why, Why::Closed)
    }
}

/// Why a tunnel ended.
#[derive(Debug)]
pub(crate) enum Why {
    /// Both sides closed.
    Closed,
    /// No bytes either way for the idle timeout.
    Idle,
    /// bellhop is shutting down.
    Shutdown,
    /// A socket error on either side.
    Error(io::Error),
}

/// Waits for both upgrades, then copies bytes both ways until the tunnel ends.
async fn splice_until_end(
    client: OnUpgrade,
    upstream: Box<UpstreamConn>,
    idle: Duration,
    shutdown: CancellationToken,
) -> TunnelEnd {
    let client = async { client.await.map_err(io::Error::other) };
    let (client, (mut upstream, early)) = match tokio::try_join!(client, upstream.into_upgraded()) {
        Ok(pair) => pair,
        Err(e) => {
            return TunnelEnd {
                why: Why::Error(e),
                sent: 0,
                received: 0,
            }
        }
    };
    let started = Instant::now();
    // Milliseconds since `started` of the last read that moved a byte, and
    // the bytes each way: the splice and the idle watchdog run in one task,
    // relaxed atomics suffice, and the counts survive a splice cut short.
    let activity = AtomicU64::new(0);
    let sent = AtomicU64::new(0);
    let received = AtomicU64::new(0);
    let mut client = TokioIo::new(client);
    let copy = async {
        let early = send_early(&mut client, early).await?;
        received.fetch_add(early, Ordering::Relaxed);
        splice(&mut client, &mut upstream, |way, n| {
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            activity.store(ms, Ordering::Relaxed);
            let count = match way {
                Way::AToB => &sent,
                Way::BToA => &received,
            };
            count.fetch_add(n as u64, Ordering::Relaxed);
        })
        .await
    };
    let why = tokio::select! {
        result = copy => match result {
            Ok(_) => Why::Closed,
            Err(e) => Why::Error(e),
        },
        () = idle_expired(started, &activity, idle) => Why::Idle,
        () = shutdown.cancelled() => Why::Shutdown,
    };
    TunnelEnd {
        why,
        sent: sent.into_inner(),
        received: received.into_inner(),
    }
}

/// Writes what the upstream sent right behind its 101 (hyper had already read
/// it) to the client before the splice starts; returns its length.
async fn send_early(client: &mut (impl AsyncWrite + Unpin), early: Bytes) -> io::Result<u64> {
    if early.is_empty() {
        return Ok(0);
    }
    client.write_all(&early).await?;
    Ok(early.len() as u64)
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
