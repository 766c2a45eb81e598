//! Splices an upgraded client connection to an upgraded upstream connection.
//!
//! After a `101 Switching Protocols` both sides speak a protocol bellhop does not
//! parse (WebSocket, usually), so bytes are copied both ways until both sides
//! are done. Half-close is respected: EOF from one side becomes a write shutdown
//! on the other while the opposite direction keeps flowing. There is no lifetime
//! limit, only an idle timeout: no bytes either way for `idle` closes both.
//!
//! When bellhop must end a tunnel itself (shutdown, or the end of the drain
//! after an upgrade), a WebSocket is closed as WebSocket peers expect: each
//! side gets a Close frame with code 1001 (going away) once the frame under way
//! has been forwarded, and then has up to [`CLOSE_GRACE`] to answer with its
//! own Close or EOF (see `splice`). Other upgraded protocols end with a FIN.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{header, HeaderMap};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::UpstreamConn;
use super::splice::{splice, Way};

/// How long a WebSocket that bellhop closes may take to finish the frame
/// under way and answer bellhop's Close, before its sockets are shut
/// regardless. Long enough for a browser on a slow link to send its Close
/// (a round trip plus a frame in flight), short enough that a stop is not
/// held up by a peer that never answers. Shutdown's `grace-period` bounds
/// it too, when shorter.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The client's side of an upgrade, as the proxy finds it in the request's
/// extensions: the server hands its connection over once the 101 has been
/// written. (Extensions must be `Clone`; the one that is claimed first gets
/// the connection.)
#[derive(Debug, Clone)]
pub(crate) struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<UpgradedClient>>>>);

/// A claimed [`ClientUpgrade`]: resolves to the client's connection.
#[derive(Debug)]
pub(crate) struct UpgradeWait(oneshot::Receiver<UpgradedClient>);

/// The server's end of a [`ClientUpgrade`].
#[derive(Debug)]
pub(crate) struct UpgradeHandover(oneshot::Sender<UpgradedClient>);

/// A connection's upgrade: the server keeps the handover, the request
/// carries the other end to the proxy.
pub(crate) fn upgrade_pair() -> (UpgradeHandover, ClientUpgrade) {
    let (handover, upgrade) = oneshot::channel();
    (
        UpgradeHandover(handover),
        ClientUpgrade(Arc::new(Mutex::new(Some(upgrade)))),
    )
}

impl ClientUpgrade {
    /// Takes the right to the client's connection (`None` once taken).
    pub(crate) fn claim(&self) -> Option<UpgradeWait> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.take().map(UpgradeWait)
    }
}

impl UpgradeHandover {
    /// Whether a tunnel still waits for the connection.
    pub(crate) fn is_wanted(&self) -> bool {
        !self.0.is_closed()
    }

    /// Hands `io` over, with `early`: what the client sent right behind its
    /// request. `false` if nobody waits for it any more.
    pub(crate) fn hand_over<I>(self, io: I, early: Bytes) -> bool
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.0
            .send(UpgradedClient {
                io: Box::new(io),
                early,
            })
            .is_ok()
    }
}

impl Future for UpgradeWait {
    type Output = io::Result<UpgradedClient>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|handed| {
            handed
                .map_err(|_| io::Error::other("the client's connection closed before the upgrade"))
        })
    }
}

/// What any client stream is to a tunnel.
trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// The client's upgraded connection: `early` is read before the stream.
pub(crate) struct UpgradedClient {
    io: Box<dyn ClientIo>,
    early: Bytes,
}

impl std::fmt::Debug for UpgradedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradedClient")
            .field("early", &self.early.len())
            .finish_non_exhaustive()
    }
}

impl AsyncRead for UpgradedClient {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.early.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.early.len().min(buf.remaining());
        buf.put_slice(&this.early.split_to(n));
        if this.early.is_empty() {
            // Read to its end, it would still hold its allocation.
            this.early = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for UpgradedClient {
    crate::io_through::write_through!(io);

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Both halves of a `101 Switching Protocols`, waiting to be spliced.
///
/// The proxy hands this back with the 101 response instead of spawning it: the
/// caller owns the tasks that must end on shutdown (and may count open
/// tunnels), and the proxy stays free of the server's types.
#[derive(Debug)]
#[must_use = "a tunnel carries nothing until it runs"]
pub(crate) struct Tunnel {
    client: UpgradeWait,
    /// The upstream connection that answered 101; it gives up its stream
    /// once driven past the 101.
    upstream: Box<UpstreamConn>,
    idle: Duration,
    /// The upstream's label, for the log lines.
    label: Arc<str>,
    /// The protocol is WebSocket: frames are followed, and a shutdown
    /// closes it with Close frames rather than a FIN.
    websocket: bool,
}

impl Tunnel {
    /// `switched`: the headers of the upstream's 101, whose `Upgrade` says
    /// which protocol the tunnel carries.
    pub(super) fn new(
        client: UpgradeWait,
        upstream: Box<UpstreamConn>,
        idle: Duration,
        label: Arc<str>,
        switched: &HeaderMap,
    ) -> Tunnel {
        let websocket = switched
            .get(header::UPGRADE)
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"websocket"));
        Tunnel {
            client,
            upstream,
            idle,
            label,
            websocket,
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
            websocket,
        } = self;
        let end = splice_until_end(client, upstream, idle, websocket, shutdown).await;
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
            Why::Shutdown if websocket => {
                tracing::debug!(upstream = %label, sent, received, "WebSocket closed for shutdown (Close 1001 to both sides)")
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

/// Waits for both upgrades, then copies bytes both ways until the tunnel
/// ends; on shutdown a WebSocket gets its goodbye, bounded by [`CLOSE_GRACE`].
async fn splice_until_end(
    client: UpgradeWait,
    upstream: Box<UpstreamConn>,
    idle: Duration,
    websocket: bool,
    shutdown: CancellationToken,
) -> TunnelEnd {
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
    let mut client = client;
    // What the upstream sent right behind its 101 (hyper had already read
    // it) goes to the client before anything else.
    received.fetch_add(early.len() as u64, Ordering::Relaxed);
    let mut copy = splice(&mut client, &mut upstream, |way, n| {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.store(ms, Ordering::Relaxed);
        let count = match way {
            Way::AToB => &sent,
            Way::BToA => &received,
        };
        count.fetch_add(n as u64, Ordering::Relaxed);
    });
    if websocket {
        copy = copy.websocket();
    }
    let mut copy = copy.b_sent_first(&early);
    let why = tokio::select! {
        result = &mut copy => match result {
            Ok(_) => Why::Closed,
            Err(e) => Why::Error(e),
        },
        () = idle_expired(started, &activity, idle) => Why::Idle,
        () = shutdown.cancelled() => Why::Shutdown,
    };
    if matches!(why, Why::Shutdown) && copy.close_now() {
        // Past the grace the sockets close with a FIN, as without tracking.
        if tokio::time::timeout(CLOSE_GRACE, copy).await.is_err() {
            tracing::debug!(close_grace = ?CLOSE_GRACE, "WebSocket goodbye unfinished (a frame under way or no Close reply); closing its sockets");
        }
    }
    TunnelEnd {
        why,
        sent: sent.into_inner(),
        received: received.into_inner(),
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
