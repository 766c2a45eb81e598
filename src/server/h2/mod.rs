//! The HTTP/2 side of a TLS connection: the h2 crate's server, driven by
//! bellhop in the connection's own task.
//!
//! ```text
//! mod.rs     the connection: handshake, streams accepted, idle GOAWAY, pings
//! stream.rs  one stream: its request through the phases, its answer sent
//! body.rs    a request body read from a stream
//! ```
//!
//! Each stream is a future in a `FuturesUnordered` that the connection's
//! future polls ([`InTask`]), streams first, so what they queue is written out
//! by the connection's poll that follows, in the same turn. (Spawned as a task
//! of its own, as hyper's executor did, each request cost a task allocated and
//! scheduled, and one more trip through the runtime's queue before its
//! answer reached the client: h2 p99 was 1.5× nginx's at the same p50,
//! bench/RESULTS.md.)
//!
//! Why h2 and not hyper's server on top of it: hyper's layer cost ~6 % of an
//! h2 request (callgrind, bench/RESULTS.md): keep-alive and window-probing
//! pings that lock a mutex and read the clock at every poll, a second pass
//! over the response's headers, the stream future's moves. bellhop pings on
//! its own timer, with fixed flow-control windows.

mod body;
mod stream;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;
use futures_util::StreamExt as _;
use h2::server::Connection;
use h2::{Ping, PingPong};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use body::H2Body;

use super::boxed::pin_in_place;
use super::connection::{Accepted, ConnContext};
use super::traffic::Counted;
use super::{Shared, MAX_REQUEST_HEAD};
use crate::limit::ConnPermit;

/// Concurrent streams per h2 connection (hyper's default was 200).
const MAX_STREAMS: u32 = 100;
/// Bytes an h2 stream may have queued and not yet sent: its body is polled
/// for more only below this. hyper's default, 400 KiB, is what every slow h2
/// reader held (517 KiB each with 8 MiB responses, against 51 KiB over
/// HTTP/1.1, whose writer holds one piece of a body, `server/h1`).
const SEND_BUFFER: usize = 16 * 1024;
/// What a client may send on one stream before bellhop has read it, and on
/// the whole connection: Go's and hyper's fixed windows. A request body is
/// read as fast as its upstream takes it, so this bounds what one
/// connection's uploads hold while an upstream is slow; 1 MiB per round trip
/// is 20 MB/s at 50 ms. The connection's window is twice a stream's, so one
/// upload stalled on its upstream leaves room for the others.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONN_WINDOW: u32 = 2 * STREAM_WINDOW;
/// Interval of h2 keep-alive pings, and how long to wait for their answer.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Serves one h2 connection until it closes.
///
/// HTTP/2 has no idle timeout of its own: a connection with no request in
/// flight for `idle` gets a GOAWAY, as does every connection on shutdown. One
/// that is still open and idle for another `idle` after its GOAWAY is dropped:
/// the GOAWAY only closes once the client has answered its PING, so a
/// client that stays silent would otherwise keep the connection forever. A
/// client that has not sent its connection preface after those two timeouts
/// is dropped the same way (no GOAWAY can go out before it).
///
/// Every [`PING_INTERVAL`] a PING goes out; a client that has not answered
/// it by the next one is gone (vanished without a FIN, or stuck), and its
/// connection is dropped.
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
    let context = ConnContext::new(shared, accepted, permit);
    let stream = Counted::new(context.guard(stream), context.clone());
    async move {
        let handshake = builder().handshake::<_, Bytes>(stream);
        let mut conn = tokio::select! {
            conn = handshake => match conn {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "h2 handshake failed");
                    return;
                }
            },
            () = stop.cancelled() => return,
            () = tokio::time::sleep(2 * idle) => {
                tracing::debug!(%peer, "no h2 connection preface; dropped");
                return;
            }
        };
        let mut pings = conn.ping_pong();
        let mut conn = pin!(InTask::new(conn, context.clone()));
        // When the idle GOAWAY went out; idleness counts again from there.
        let mut goaway: Option<Instant> = None;
        // When the PING waiting for its answer went out.
        let mut pinged: Option<Instant> = None;
        let mut next_ping = Instant::now() + PING_INTERVAL;
        let result = loop {
            let idle_from = |since: Instant| goaway.map_or(since, |sent| sent.max(since));
            let idle_deadline = context
                .idle_since()
                .map_or_else(|| Instant::now() + idle, |since| idle_from(since) + idle);
            let ping_deadline = pinged.map_or(next_ping, |sent| sent + PING_INTERVAL);
            let awaiting_pong = pinged.is_some();
            let event = async {
                tokio::select! {
                    () = stop.cancelled() => Event::Stop,
                    () = poll_fn(|cx| poll_pong(pings.as_mut(), cx)), if awaiting_pong => Event::Pong,
                    () = tokio::time::sleep_until(idle_deadline.min(ping_deadline)) => Event::Timer,
                }
            };
            let event = tokio::select! {
                biased;
                result = conn.as_mut() => break result,
                event = OnWake::new(event) => event,
            };
            match event {
                Event::Stop => {
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
                Event::Pong => {
                    pinged = None;
                    next_ping = Instant::now() + PING_INTERVAL;
                }
                Event::Timer => {
                    let now = Instant::now();
                    if pinged.is_some_and(|sent| sent + PING_INTERVAL <= now) {
                        tracing::debug!(%peer, "h2 PING not answered; connection dropped");
                        break Ok(());
                    }
                    if pinged.is_none() && next_ping <= now {
                        next_ping = now + PING_INTERVAL;
                        if pings
                            .as_mut()
                            .is_some_and(|p| p.send_ping(Ping::opaque()).is_ok())
                        {
                            pinged = Some(now);
                        }
                    }
                    if context
                        .idle_since()
                        .is_some_and(|since| idle_from(since) + idle <= now)
                    {
                        if goaway.is_some() {
                            tracing::debug!(%peer, "h2 connection still open and idle after its GOAWAY, dropped");
                            break Ok(());
                        }
                        conn.as_mut().graceful_shutdown();
                        goaway = Some(now);
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, error = %e, "h2 connection ended with an error");
        }
    }
}

/// What an h2 connection waits for besides its frames and streams.
enum Event {
    /// Shutdown (or the hand-over to a new process): GOAWAY.
    Stop,
    /// The answer to the PING in flight.
    Pong,
    /// The PING or idle deadline.
    Timer,
}

/// A future polled only when its own waker fired (and on its first poll).
///
/// The connection's loop waits on a token and a timer all along, beside a
/// connection woken at every frame; `select!` polls every branch at each
/// wake of the task, and for these that found nothing new it cost ~270 Ir
/// per poll, two polls per h2 request (callgrind).
struct OnWake<F> {
    /// Boxed to be `Unpin`; one is made per event, not per request.
    fut: Pin<Box<F>>,
    woken: Arc<Flag>,
    waker: Waker,
}

/// Whether an [`OnWake`] future was woken, and the task to wake.
struct Flag {
    set: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.set.store(true, SeqCst);
        self.task.wake();
    }
}

impl<F: Future> OnWake<F> {
    fn new(fut: F) -> Self {
        let woken = Arc::new(Flag {
            // The first poll polls it.
            set: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        OnWake {
            fut: Box::pin(fut),
            waker: Waker::from(woken.clone()),
            woken,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.woken.task.register(cx.waker());
        if !this.woken.set.swap(false, SeqCst) {
            return Poll::Pending;
        }
        this.fut
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

/// The answer to the PING in flight, if `pings` are there to send.
fn poll_pong(pings: Option<&mut PingPong>, cx: &mut Context<'_>) -> Poll<()> {
    match pings {
        Some(pings) => pings.poll_pong(cx).map(|_| ()),
        None => Poll::Pending,
    }
}

/// The server's h2 settings.
fn builder() -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_REQUEST_HEAD as u32)
        .max_send_buffer_size(SEND_BUFFER)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW);
    builder
}

/// A stream's future: its request answered, and the answer sent.
type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An h2 connection and its streams, polled as one future.
///
/// Each half is polled only when it was woken, each with a waker of its own
/// ([`Woken`]): a stream's answer wakes the connection (to write it), and a
/// frame the connection reads wakes a stream, both while this future is
/// being polled. Had they shared the task's waker, each such wake would
/// have queued the task for one more poll of both, whose connection half
/// (TLS read, h2 bookkeeping) found nothing to do (callgrind: +8 % per h2
/// request). A wake that comes while this future is polled only marks the
/// half; one that comes between polls wakes the task.
struct InTask<T> {
    conn: Connection<T, Bytes>,
    context: Arc<ConnContext>,
    streams: FuturesUnordered<Stream>,
    woken: Arc<Woken>,
    conn_waker: Waker,
    streams_waker: Waker,
}

/// Which half of an [`InTask`] was woken, and the task to wake.
#[derive(Default)]
struct Woken {
    conn: AtomicBool,
    streams: AtomicBool,
    /// The task is in [`InTask::poll`], which looks at the marks before it
    /// returns.
    polling: AtomicBool,
    task: AtomicWaker,
}

impl Woken {
    fn mark(&self, half: &AtomicBool) {
        half.store(true, SeqCst);
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

/// Wakes one half of an [`InTask`]: marks it in [`Woken`].
struct HalfWake {
    woken: Arc<Woken>,
    half: fn(&Woken) -> &AtomicBool,
}

impl HalfWake {
    fn waker(woken: &Arc<Woken>, half: fn(&Woken) -> &AtomicBool) -> Waker {
        Waker::from(Arc::new(HalfWake {
            woken: woken.clone(),
            half,
        }))
    }
}

impl Wake for HalfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.mark((self.half)(&self.woken));
    }
}

/// Rounds of one poll before it yields to the runtime: enough for a
/// stream's answer to be written and a new stream to start; a resource
/// out of tokio's cooperative budget wakes at once, and must not spin here.
const ROUNDS_PER_POLL: usize = 4;

impl<T: AsyncRead + AsyncWrite + Unpin> InTask<T> {
    fn new(conn: Connection<T, Bytes>, context: Arc<ConnContext>) -> Self {
        let woken = Arc::new(Woken::default());
        // The first poll polls both halves.
        woken.conn.store(true, SeqCst);
        woken.streams.store(true, SeqCst);
        InTask {
            conn,
            context,
            streams: FuturesUnordered::new(),
            conn_waker: HalfWake::waker(&woken, |w| &w.conn),
            streams_waker: HalfWake::waker(&woken, |w| &w.streams),
            woken,
        }
    }

    /// A GOAWAY: no new streams; the future ends once the open ones have
    /// been answered.
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        self.conn.graceful_shutdown();
        // The GOAWAY is written by the connection's next poll.
        self.woken.mark(&self.woken.conn);
    }

    /// Drives the connection: reads and writes frames, and starts a stream
    /// future for each new request. Ready when the connection has closed.
    fn poll_conn(&mut self) -> Poll<Result<(), h2::Error>> {
        let mut cx = Context::from_waker(&self.conn_waker);
        loop {
            match self.conn.poll_accept(&mut cx) {
                Poll::Ready(Some(Ok((request, respond)))) => {
                    // The stream's future holds the phases' one and is large.
                    let answer =
                        pin_in_place!(stream::answer(request, respond, self.context.clone()));
                    self.streams.push(answer);
                    // Started in the next round: its request goes upstream,
                    // an answer given at once is written in the round after.
                    self.woken.streams.store(true, SeqCst);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // h2 ends the connection once every stream is closed on
                // the wire; a stream future still here only has left to
                // notice that (or the connection failed, and its client is
                // gone): dropping it cancels what it waits for.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for InTask<T> {
    type Output = Result<(), h2::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let woken = this.woken.clone();
        woken.task.register(cx.waker());
        woken.polling.store(true, SeqCst);
        for _ in 0..ROUNDS_PER_POLL {
            // The streams first: the frames they queue, the connection's
            // poll below writes out in this same round.
            if woken.streams.swap(false, SeqCst) {
                let mut cx = Context::from_waker(&this.streams_waker);
                while let Poll::Ready(Some(())) = this.streams.poll_next_unpin(&mut cx) {}
            }
            if woken.conn.swap(false, SeqCst) {
                if let Poll::Ready(result) = this.poll_conn() {
                    return Poll::Ready(result);
                }
            }
            if !woken.streams.load(SeqCst) && !woken.conn.load(SeqCst) {
                woken.polling.store(false, SeqCst);
                // A wake from another thread between the check above and
                // the store saw `polling` and did not wake the task.
                if !woken.streams.load(SeqCst) && !woken.conn.load(SeqCst) {
                    return Poll::Pending;
                }
                woken.polling.store(true, SeqCst);
            }
        }
        woken.polling.store(false, SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
