//! The HTTP/2 side of a TLS connection: hyper's server, with every stream
//! driven in the connection's own task.
//!
//! hyper hands each new stream to an executor. Given tokio's, each request
//! became a task of its own: a task allocated and scheduled per request, and
//! one more trip through the runtime's queue before its response reached the
//! client (the stream's task queued the frames and woke the connection's
//! task, which then waited its turn behind every other ready task to write
//! them). Under load that second wait is the tail: h2 p99 was 1.5× nginx's at
//! the same p50 (bench/RESULTS.md). Here the executor is [`Streams`], which
//! only queues the stream, and [`InTask`] polls the connection and its streams
//! together, the streams first, so what they queue is written out by the
//! connection's poll that follows, in the same turn.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;
use futures_util::StreamExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access_log::LoggedBody;
use super::connection::{Accepted, ConnContext};
use super::traffic::Counted;
use super::{service, Shared, MAX_REQUEST_HEAD};
use crate::limit::{ConnPermit, RequestBody};

/// Concurrent streams per h2 connection (hyper's default is 200).
const MAX_STREAMS: u32 = 100;
/// Bytes an h2 stream may have queued and not yet sent: its body is polled
/// for more only below this. hyper's default, 400 KiB, is what every slow h2
/// reader held (517 KiB each with 8 MiB responses, against 51 KiB over
/// HTTP/1.1, whose writer holds one piece of a body, `server/h1`).
const SEND_BUFFER: usize = 16 * 1024;
/// Interval of h2 keep-alive pings and how long to wait for their answer.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Serves one h2 connection until it closes.
///
/// HTTP/2 has no idle timeout of its own: a connection with no request in
/// flight for `idle` gets a GOAWAY, as does every connection on shutdown. One
/// that is still open and idle for another `idle` after its GOAWAY is dropped:
/// hyper only closes once the peer has sent its connection preface (and, after
/// that, answered the GOAWAY's ping), so a peer that stays silent after the TLS
/// handshake would otherwise keep the connection forever.
///
/// The hyper connection is built before the returned future and moved into
/// it once, so the future holds one copy of it and of the stream (an `async
/// fn` holds its arguments twice).
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
    let stream = context.guard(stream);
    let watched = context.clone();
    let stream = Counted::new(stream, context.clone());
    let svc = answer_streams(context);
    let streams = Streams::default();
    let conn = builder(streams.clone()).serve_connection(TokioIo::new(stream), svc);
    let mut conn = InTask::new(conn, streams);
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

/// The server's h2 settings, for one connection's streams. (hyper keeps
/// the executor in the builder, and each connection has its own.)
fn builder(streams: Streams) -> http2::Builder<Streams> {
    let mut builder = http2::Builder::new(streams);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_REQUEST_HEAD as u32)
        // What a stream may queue that its client has not taken yet.
        .max_send_buf_size(SEND_BUFFER)
        // One large upload must not stall every other stream (hyper#1960).
        .adaptive_window(true)
        // Pings find peers that vanished without a FIN.
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_INTERVAL);
    builder
}

/// An answered request, as hyper's HTTP/2 server takes it from
/// [`answer_streams`].
type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response<LoggedBody>, Infallible>> + Send>>;

/// The hyper service of an HTTP/2 connection: each request runs through
/// [`service::handle`] with the connection's context, its future boxed.
/// hyper wraps it in its stream future, which is moved a few times before
/// it is polled (callgrind: six copies of ~2.5 KiB per stream when each was
/// spawned); boxed, those are copies of a pointer, for one allocation.
fn answer_streams(
    context: Arc<ConnContext>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<LoggedBody>,
    Error = Infallible,
    Future = BoxedAnswer,
> {
    service_fn(move |req: Request<Incoming>| -> BoxedAnswer {
        let context = context.clone();
        let req = req.map(RequestBody::H2);
        Box::pin(async move { Ok::<_, Infallible>(service::handle(req, context).await) })
    })
}

/// A stream's future: hyper's, answering one request and sending the answer.
type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection's streams: it keeps each new stream
/// for [`InTask`] to poll, instead of spawning it. hyper calls it from
/// within the connection's poll, in the same task, so the lock is never
/// contended; it is a `Mutex` because hyper wants the executor `Send`.
#[derive(Clone, Default)]
struct Streams(Arc<Mutex<Vec<Stream>>>);

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(stream));
    }
}

impl Streams {
    /// Moves the streams hyper handed over since the last call into `into`;
    /// whether there were any.
    fn take_into(&self, into: &mut FuturesUnordered<Stream>) -> bool {
        let mut new = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let any = !new.is_empty();
        into.extend(new.drain(..));
        any
    }
}

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
struct InTask<C> {
    conn: C,
    handed: Streams,
    running: FuturesUnordered<Stream>,
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

/// Wakes the connection half.
struct ConnWake(Arc<Woken>);
/// Wakes the streams half.
struct StreamsWake(Arc<Woken>);

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.mark(&self.0.conn);
    }
}

impl Wake for StreamsWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.mark(&self.0.streams);
    }
}

/// Rounds of one poll before it yields to the runtime: enough for a
/// stream's answer to be written and a new stream to start; a resource
/// out of tokio's cooperative budget wakes at once, and must not spin here.
const ROUNDS_PER_POLL: usize = 4;

impl<C> InTask<C> {
    fn new(conn: C, handed: Streams) -> Self {
        let woken = Arc::new(Woken::default());
        // The first poll polls both halves.
        woken.conn.store(true, SeqCst);
        woken.streams.store(true, SeqCst);
        InTask {
            conn,
            handed,
            running: FuturesUnordered::new(),
            conn_waker: Waker::from(Arc::new(ConnWake(woken.clone()))),
            streams_waker: Waker::from(Arc::new(StreamsWake(woken.clone()))),
            woken,
        }
    }
}

// hyper-util's `GracefulConnection`: a hyper connection, as a future that
// can be told to shut down gracefully.
impl<C: GracefulConnection + Unpin> InTask<C> {
    /// A GOAWAY: no new streams; the future ends once the open ones have
    /// been answered.
    fn graceful_shutdown(mut self: Pin<&mut Self>) {
        Pin::new(&mut self.conn).graceful_shutdown();
        // The GOAWAY is written by the connection's next poll.
        self.woken.mark(&self.woken.conn);
    }
}

impl<C: GracefulConnection + Unpin> Future for InTask<C> {
    type Output = Result<(), C::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let woken = &*this.woken;
        woken.task.register(cx.waker());
        woken.polling.store(true, SeqCst);
        for _ in 0..ROUNDS_PER_POLL {
            // The streams first: the frames they queue, the connection's
            // poll below writes out in this same round.
            if woken.streams.swap(false, SeqCst) {
                let mut cx = Context::from_waker(&this.streams_waker);
                while let Poll::Ready(Some(())) = this.running.poll_next_unpin(&mut cx) {}
            }
            if woken.conn.swap(false, SeqCst) {
                let mut cx = Context::from_waker(&this.conn_waker);
                if let Poll::Ready(result) = Pin::new(&mut this.conn).poll(&mut cx) {
                    // hyper ends the connection once every stream is closed
                    // on the wire; a stream future still here only has left
                    // to notice that (or the connection failed, and its
                    // client is gone): dropping it cancels what it waits for.
                    return Poll::Ready(result);
                }
            }
            // New streams start in the next round (their requests go
            // upstream; an answer given at once is written in the round
            // after).
            if this.handed.take_into(&mut this.running) {
                woken.streams.store(true, SeqCst);
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
