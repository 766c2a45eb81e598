//! What every connection carries (`Accepted`, `ConnContext`, `InFlight`).
//! HTTP/1.1 is bellhop's own ([`h1`](super::h1)), HTTP/2 the h2 crate's,
//! driven by bellhop ([`h2`](super::h2)); the admin listener's HTTP/1.1 runs
//! on hyper ([`drive_http1`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1::UpgradeableConnection;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::linger::Linger;
use super::write_deadline::WriteDeadline;
use super::Shared;
use crate::config::Scheme;
use crate::limit::ConnPermit;
use crate::metrics::{OpenGuard, SiteBytes};

/// One accepted connection as the accept loop saw it: built once there and
/// handed down through TLS and hyper to every request, so no layer re-derives
/// (or is told by a positional flag) who is on the other end and how.
#[derive(Debug, Clone, Copy)]
pub(super) struct Accepted {
    /// The client's address (IPv4-mapped IPv6 already made plain IPv4).
    pub peer: SocketAddr,
    /// The configured port of the listener (the router's key; 0 for ephemeral).
    pub port: u16,
    /// `Https` when the connection began with a TLS handshake.
    pub scheme: Scheme,
    /// The TLS version negotiated (`TLSv1.3`), once the handshake is done.
    pub tls: Option<&'static str>,
}

/// What every request on one connection shares. An upgraded tunnel keeps
/// it too: the socket, and so its place under the connection caps, lives on
/// in the tunnel.
#[derive(Debug)]
pub(super) struct ConnContext {
    /// State shared by the whole server.
    pub shared: Arc<Shared>,
    /// Who is connected, on which port, over which scheme.
    pub accepted: Accepted,
    /// Requests whose response has not finished yet.
    in_flight: AtomicUsize,
    /// When the last response finished, in ms since `opened`.
    last_done_ms: AtomicU64,
    opened: Instant,
    /// Set when the connection became a tunnel (WebSocket): the write
    /// deadline then gives way to the tunnel's idle timeout.
    upgraded: AtomicBool,
    /// The byte counters of the first site a request here was routed to.
    site_bytes: OnceLock<SiteBytes>,
    /// Keeps `bellhop_open_connections` counting this connection (its
    /// stream holds the context, so an upgraded connection counts until its
    /// tunnel ends).
    _open: OpenGuard,
    /// This connection's place under `max-connections` and per-IP caps.
    _permit: ConnPermit,
}

impl ConnContext {
    pub(super) fn new(shared: Arc<Shared>, accepted: Accepted, permit: ConnPermit) -> Arc<Self> {
        Arc::new(ConnContext {
            _open: shared.metrics.connection_opened(),
            shared,
            accepted,
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            opened: Instant::now(),
            upgraded: AtomicBool::new(false),
            site_bytes: OnceLock::new(),
            _permit: permit,
        })
    }

    /// Marks the connection as handed to a tunnel.
    pub(super) fn set_upgraded(&self) {
        self.upgraded.store(true, Ordering::Release);
    }

    /// Whether the connection was handed to a tunnel.
    pub(super) fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// The client's stream with `client-write-timeout` applied, closed
    /// with a lingering close (linger.rs says why).
    pub(super) fn guard<I>(self: &Arc<Self>, stream: I) -> WriteDeadline<Linger<I>> {
        let timeout = self.shared.client_write_timeout;
        let stream = Linger::new(stream, timeout, self.clone());
        WriteDeadline::new(stream, timeout, self.clone())
    }

    /// Notes the site a request was routed to; the connection's bytes go to
    /// the first one (one atomic load once it is known).
    pub(super) fn serves(&self, bytes: &SiteBytes) {
        if self.site_bytes.get().is_none() {
            let _ = self.site_bytes.set(bytes.clone());
        }
    }

    /// The counters this connection's bytes go to, if a request reached a site.
    pub(super) fn site_bytes(&self) -> Option<&SiteBytes> {
        self.site_bytes.get()
    }

    /// When the connection became idle, or `None` while requests are in flight.
    pub(super) fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.opened + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire)))
    }
}

/// Marks a request as in flight until its response body is done (dropped).
#[derive(Debug)]
pub(super) struct InFlight(Arc<ConnContext>);

impl InFlight {
    /// Counts a new request on `conn`.
    pub(super) fn new(conn: Arc<ConnContext>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_done_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An HTTP/1.1 server connection (with upgrades) of `svc` on `stream`, with
/// the server's HTTP/1.1 settings.
fn http1_connection<I, S, B>(
    shared: &Shared,
    stream: I,
    svc: S,
) -> UpgradeableConnection<TokioIo<I>, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    shared
        .http1
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
}

/// Drives one HTTP/1.1 connection with `svc` (and the server's HTTP/1.1
/// settings) until it closes; on `stop` it finishes the request in progress,
/// then closes. Shared by the site listeners and the admin listener.
pub(super) async fn drive_http1<I, S, B>(
    shared: &Shared,
    stream: I,
    svc: S,
    stop: &CancellationToken,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1_connection(shared, stream, svc);
    tokio::pin!(conn);
    until_stopped(conn, stop).await
}

/// Drives `conn` until it closes; on `stop` it finishes the request in
/// progress, then closes (an idle connection closes at once).
async fn until_stopped<I, S, B>(
    mut conn: Pin<&mut UpgradeableConnection<TokioIo<I>, S>>,
    stop: &CancellationToken,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
