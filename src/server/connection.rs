//! Serves one accepted connection with hyper until it closes, its listener is
//! removed, or shutdown.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1::UpgradeableConnection;
use hyper::service::{service_fn, Service};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access_log::LoggedBody;
use super::linger::Linger;
use super::pace::{Pace, PacedBody, PacedIo};
use super::park::{Resume, PARK_AFTER};
use super::traffic::Counted;
use super::write_deadline::WriteDeadline;
use super::{service, Shared};
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
    /// Requests that arrived so far (the first head's deadline no longer
    /// applies once there is one).
    requests: AtomicU64,
    /// Requests whose body has not been read to its end: hyper may still be
    /// reading (or discarding) one after its response, so the connection is
    /// not parked while this is above 0. A body that is never read to its
    /// end (not proxied, refused, abandoned) keeps the connection unparked.
    open_bodies: AtomicUsize,
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
    fn new(shared: Arc<Shared>, accepted: Accepted, permit: ConnPermit) -> Arc<Self> {
        Arc::new(ConnContext {
            _open: shared.metrics.connection_opened(),
            shared,
            accepted,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            open_bodies: AtomicUsize::new(0),
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
    fn guard<I>(self: &Arc<Self>, stream: I) -> WriteDeadline<Linger<I>> {
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

    /// How many requests arrived so far.
    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// When the connection became idle, or `None` while requests are in flight.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.opened + Duration::from_millis(self.last_done_ms.load(Ordering::Acquire)))
    }
}

impl crate::limit::BodyEnd for ConnContext {
    fn body_ended(&self) {
        self.open_bodies.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks a request as in flight until its response body is done (dropped).
#[derive(Debug)]
pub(super) struct InFlight(Arc<ConnContext>);

impl InFlight {
    /// Counts a new request on `conn`; `body` when it comes with one.
    pub(super) fn new(conn: Arc<ConnContext>, body: bool) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.requests.fetch_add(1, Ordering::AcqRel);
        if body {
            conn.open_bodies.fetch_add(1, Ordering::AcqRel);
        }
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

/// The hyper service of one HTTP/1.1 connection: each request runs through
/// [`service::handle`] with the connection's context, and its response body
/// is paced by what the client takes (`pace`, see [`pace`](super::pace)).
fn requests(
    context: Arc<ConnContext>,
    pace: Arc<Pace>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<PacedBody<LoggedBody>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<PacedBody<LoggedBody>>, Infallible>> + Send,
> {
    service_fn(move |req| {
        let context = context.clone();
        let pace = pace.clone();
        async move {
            let response = service::handle(req, context).await;
            Ok::<_, Infallible>(response.map(|body| PacedBody::new(body, pace)))
        }
    })
}

/// An answered request, as hyper's HTTP/2 server takes it from [`streams`].
type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response<LoggedBody>, Infallible>> + Send>>;

/// [`requests`] for an HTTP/2 connection: each request's future boxed.
/// hyper spawns every stream as a task, and on the way the future is moved
/// whole about six times (callgrind: six copies of ~2.5 KiB per stream);
/// boxed, those are copies of a pointer, for one allocation.
fn streams(
    context: Arc<ConnContext>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<LoggedBody>,
    Error = Infallible,
    Future = BoxedAnswer,
> {
    service_fn(move |req| -> BoxedAnswer {
        let context = context.clone();
        Box::pin(async move { Ok::<_, Infallible>(service::handle(req, context).await) })
    })
}

/// Runs the HTTP/1.1 server side of one connection (plain TCP or TLS).
///
/// `stop` is the listener's token: cancelled on shutdown, and when a reload
/// removes the port, so kept-alive connections there close gently too.
///
/// The header-read timeout doubles as the keep-alive idle timeout. On shutdown
/// the connection finishes its current request and closes; an idle one closes
/// at once. With `first_head_by`, a connection whose first request head is
/// not complete by then is dropped (hyper too closes such a connection
/// without an answer: there is no request to answer yet).
///
/// A connection idle for [`PARK_AFTER`] is parked ([`park`](super::park)):
/// hyper's connection is taken apart until the client sends again, and a
/// parked connection idle for the rest of the keep-alive timeout closes.
///
/// The hyper connection is built before the returned future and moved into
/// it once, so the future holds one copy of it and of the stream (an `async
/// fn` holds its arguments twice, and each `async` layer around the
/// connection adds another copy: this is what every open HTTP/1.1
/// connection, slow reader or not, keeps on the heap).
///
/// Response bodies are paced by what the client takes ([`pace`](super::pace)):
/// a client that stops reading stops the reading of its upstream.
pub(super) fn serve_http1<I>(
    stream: I,
    accepted: Accepted,
    permit: ConnPermit,
    shared: Arc<Shared>,
    stop: CancellationToken,
    first_head_by: Option<Instant>,
) -> impl Future<Output = ()> + Send
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = accepted.peer;
    let context = ConnContext::new(shared.clone(), accepted, permit);
    let watched = context.clone();
    let pace = Pace::new();
    let stream = Counted::new(context.guard(stream), context.clone());
    let stream = Resume::new(PacedIo::new(stream, pace.clone()), pace.clone());
    let svc = requests(context, pace.clone());
    let mut phase = Phase::Serving(http1_connection(&shared, stream, svc));
    async move {
        // One timer for the connection's life: the first head's deadline,
        // then when to park, then (parked) the keep-alive timeout.
        let mut timer = pin!(tokio::time::sleep_until(
            first_head_by.unwrap_or_else(|| Instant::now() + PARK_AFTER)
        ));
        let mut first_head_by = first_head_by;
        loop {
            let Phase::Serving(conn) = &mut phase else {
                return;
            };
            let run = Run {
                since: watched.requests(),
                first_head_by: first_head_by.take(),
                watched: &watched,
                pace: &pace,
            };
            if let Ran::Closed(result) = run.until_idle(Pin::new(conn), timer.as_mut(), &stop).await
            {
                if let Err(e) = result {
                    // Clients that vanish or send garbage end here; hyper already
                    // answered what deserved an answer (400, 431, 408).
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            let Some((stream, unparsed)) = phase.park() else {
                return;
            };
            pace.set_parking(false);
            let _parked = shared.metrics.connection_parked();
            if unparsed.is_empty() {
                // Even empty, hyper's read buffer comes back holding its
                // whole allocation: dropped before the wait.
                drop(unparsed);
                let idle_since = watched.idle_since().unwrap_or_else(Instant::now);
                timer.as_mut().reset(idle_since + shared.idle_timeout);
                match parked(stream, timer.as_mut(), &stop).await {
                    Some(bytes) => stream.set_prefix(bytes),
                    None => return,
                }
            } else {
                // The start of a head hyper had read: resumed at once.
                stream.set_prefix(unparsed);
            }
            phase.resume(&shared);
        }
    }
}

/// An HTTP/1.1 connection's stream, with hyper's connection on it or parked.
/// One value for both, so the connection's future holds the larger of the
/// two, not both (boxing the larger would cost an allocation per park).
#[allow(clippy::large_enum_variant)]
enum Phase<I, S>
where
    S: hyper::service::HttpService<Incoming>,
{
    Serving(UpgradeableConnection<TokioIo<Resume<I>>, S>),
    Parked(Resume<I>, S),
    Over,
}

impl<I, S, B> Phase<I, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Takes hyper's connection (closed for parking) apart: the stream and
    /// the service stay; returns the stream and what hyper had read and not
    /// parsed. `None` when there was no connection to take apart (it became
    /// a tunnel).
    fn park(&mut self) -> Option<(&mut Resume<I>, bytes::Bytes)> {
        let Phase::Serving(conn) = std::mem::replace(self, Phase::Over) else {
            return None;
        };
        let parts = conn.into_parts()?;
        *self = Phase::Parked(parts.io.into_inner(), parts.service);
        match self {
            Phase::Parked(stream, _) => Some((stream, parts.read_buf)),
            _ => None,
        }
    }

    /// A new hyper connection on the parked stream.
    fn resume(&mut self, shared: &Shared) {
        if let Phase::Parked(stream, service) = std::mem::replace(self, Phase::Over) {
            *self = Phase::Serving(http1_connection(shared, stream, service));
        }
    }
}

/// How one hyper connection's run ended.
enum Ran {
    /// hyper closed the connection (or it was dropped at its first-head
    /// deadline).
    Closed(hyper::Result<()>),
    /// hyper let go of an idle connection to park it; the stream is open.
    Parked,
}

/// One hyper connection's run on an HTTP/1.1 stream.
struct Run<'a> {
    /// Requests that had arrived when it started: it parks only after
    /// serving one of its own.
    since: u64,
    first_head_by: Option<Instant>,
    watched: &'a ConnContext,
    pace: &'a Pace,
}

impl Run<'_> {
    /// Drives `conn` until it closes, or until it has been idle for
    /// [`PARK_AFTER`] and let go of its stream; on `stop` it finishes the
    /// request in progress, then closes.
    async fn until_idle<I, S, B>(
        self,
        mut conn: Pin<&mut UpgradeableConnection<TokioIo<Resume<I>>, S>>,
        mut timer: Pin<&mut tokio::time::Sleep>,
        stop: &CancellationToken,
    ) -> Ran
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        S: hyper::service::HttpService<Incoming, ResBody = B>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut stopped = pin!(stop.cancelled());
        let mut stopping = false;
        poll_fn(|cx| loop {
            let parking = self.pace.is_parking();
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(if parking { Ran::Parked } else { Ran::Closed(result) });
            }
            if !stopping && stopped.as_mut().poll(cx).is_ready() {
                stopping = true;
                conn.as_mut().graceful_shutdown();
                continue;
            }
            if stopping || parking {
                return Poll::Pending;
            }
            let requests = self.watched.requests();
            if requests == 0 {
                // Polled only until the first request arrived, not with every
                // wake-up of a busy connection.
                if let Some(deadline) = self.first_head_by {
                    if timer.deadline() != deadline {
                        timer.as_mut().reset(deadline);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        let peer = self.watched.accepted.peer;
                        tracing::debug!(%peer, "first request head not complete within client-header-timeout");
                        return Poll::Ready(Ran::Closed(Ok(())));
                    }
                }
                return Poll::Pending;
            }
            if requests == self.since
                || !self.pace.is_settled()
                || self.watched.open_bodies.load(Ordering::Acquire) > 0
                || self.watched.is_upgraded()
            {
                return Poll::Pending;
            }
            let Some(idle_since) = self.watched.idle_since() else {
                return Poll::Pending;
            };
            let park_at = idle_since + PARK_AFTER;
            if timer.deadline() != park_at {
                timer.as_mut().reset(park_at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Idle and flushed: hyper closes an idle connection at once, and
            // `Resume` keeps the stream open.
            self.pace.set_parking(true);
            conn.as_mut().graceful_shutdown();
        })
        .await
    }
}

/// Waits, parked, for the client's next bytes; `None` once the connection
/// is over: the client closed (the stream is shut down as hyper would), the
/// keep-alive `timer` ran out or `stop` came (closed at once).
async fn parked<I>(
    stream: &mut Resume<I>,
    timer: Pin<&mut tokio::time::Sleep>,
    stop: &CancellationToken,
) -> Option<bytes::Bytes>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let read = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        () = timer => return None,
        read = stream.next_bytes() => Some(read),
    };
    match read {
        Some(Ok(Some(bytes))) => Some(bytes),
        Some(Err(e)) => {
            tracing::debug!(error = %e, "parked connection failed");
            None
        }
        // The client's FIN, or shutdown: close our side as hyper does.
        Some(Ok(None)) | None => {
            let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
            None
        }
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

/// Runs the HTTP/2 server side of one TLS connection.
///
/// HTTP/2 has no idle timeout of its own: a connection with no request in
/// flight for `idle` gets a GOAWAY, as does every connection on shutdown. One
/// that is still open and idle for another `idle` after its GOAWAY is dropped:
/// hyper only closes once the peer has sent its connection preface (and, after
/// that, answered the GOAWAY's ping), so a peer that stays silent after the TLS
/// handshake would otherwise keep the connection forever.
///
/// Built like [`serve_http1`]: the connection is moved into the returned
/// future once.
pub(super) fn serve_h2<I>(
    stream: I,
    accepted: Accepted,
    permit: ConnPermit,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (peer, idle) = (accepted.peer, shared.idle_timeout);
    let context = ConnContext::new(shared.clone(), accepted, permit);
    let stream = context.guard(stream);
    let watched = context.clone();
    let stream = Counted::new(stream, context.clone());
    let svc = streams(context);
    let mut conn = shared.http2.serve_connection(TokioIo::new(stream), svc);
    async move {
        let mut conn = Pin::new(&mut conn);
        // When the idle GOAWAY went out; idleness counts again from there.
        let mut goaway: Option<Instant> = None;
        let result = loop {
            let idle_from = |since: Instant| goaway.map_or(since, |sent| sent.max(since));
            let deadline = watched
                .idle_since()
                .map_or_else(|| Instant::now() + idle, |since| idle_from(since) + idle);
            tokio::select! {
                result = conn.as_mut() => break result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
                () = tokio::time::sleep_until(deadline) => {
                    if watched.idle_since().is_some_and(|since| idle_from(since) + idle <= Instant::now()) {
                        if goaway.is_some() {
                            tracing::debug!(%peer, "h2 connection still open and idle after its GOAWAY, dropped");
                            break Ok(());
                        }
                        conn.as_mut().graceful_shutdown();
                        goaway = Some(Instant::now());
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "h2 connection ended with an error");
        }
    }
}
