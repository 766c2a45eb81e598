//! bellhop's own HTTP/1.1 server side: one task per connection reads each
//! request head, runs the request through the service, feeds the service
//! the request body as it asks, and writes the response, all from that task.
//!
//! ```text
//! read ─► head::parse ─► Request<H1Body> ─► service::handle ─► Response
//!  ▲       (431/414/400 answered here)       │ the body wants     │
//!  │                                          ▼ bytes              ▼
//!  │                   body::Pipe ◄─ decode ◄─ read        respond::head, then
//!  │                                                        the body's pieces
//!  └─ keep-alive: the next head; idle for PARK_AFTER, the buffers go
//! ```
//!
//! Why not hyper's server: every proxied request already has its upstream
//! side in bellhop's own client (`proxy/h1`); hyper's server added a second
//! dispatch state machine per request and held an 8 KiB read buffer and an
//! 8 KiB head buffer for each connection's whole life, busy or idle (an idle
//! connection could only give them back by taking hyper's connection apart).
//! Here the read buffer exists only while bytes are being read, the head
//! buffer only while a head is written, and a response body is polled for
//! its next piece only once the previous one is in the kernel (or in
//! rustls), so a client that stops reading stops the upstream.
//!
//! Behaviour kept from hyper, which the tests hold: 431 past
//! `MAX_REQUEST_HEAD` or 100 header fields, 400 for a malformed head, no
//! answer for a head that is incomplete at its deadline (there is no request
//! to answer), `100 Continue` sent when the service first reads a body the
//! client announced with `Expect: 100-continue`, a client that closes while
//! its request is served aborts the request, and shutdown finishes the
//! request in flight and then closes.

mod body;
mod head;
mod respond;

pub(crate) use body::{H1Body, H1BodyError};

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::access_log::LoggedBody;
use super::boxed::pin_in_place;
use super::connection::{Accepted, ConnContext};
use super::traffic::Counted;
use super::{service, Shared, MAX_REQUEST_HEAD};
use crate::http1::{BodyDecoder, ChunkSize, Decoded, CHUNK_END, LAST_CHUNK};
use crate::limit::{ConnPermit, RequestBody};
use crate::proxy::{upgrade_pair, UpgradeHandover};
use body::Pipe;
use head::{Head, Refusal};
use respond::{Asked, Sending};

/// How long a keep-alive connection waits with its buffers before it gives
/// them back (it is then "parked"): a client that sends its next request at
/// once does not pay for new buffers per request.
pub(super) const PARK_AFTER: Duration = Duration::from_millis(100);

/// What a read asks for at least; the buffer grows by this when less room
/// than [`MIN_READ_ROOM`] is left.
const READ_SIZE: usize = 8 * 1024;
const MIN_READ_ROOM: usize = 1024;

/// The most a read takes at once without a read buffer (parked, or watching
/// for the client leaving while its request is served): into the stack, and
/// only what came is copied to the heap.
const STACK_READ: usize = 4 * 1024;

/// A piece of a response body this small is copied behind the head or chunk
/// size line it goes with, so that the stream gets one slice (a body that is
/// ready with its head leaves in one plain write).
const COPY_AT_MOST: usize = 2 * 1024;

/// The interim response a client that sent `Expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Serves one HTTP/1.1 connection (plain TCP or TLS) until it closes, it
/// is upgraded, or `stop` (shutdown, or a reload that removes the port).
///
/// `first_head_by`: the connection is dropped unanswered if its first
/// request head is not complete by then (the waiting room's deadline, from
/// accept); later heads get `client-header-timeout` from the end of the
/// previous response, which is also the keep-alive timeout.
pub(in crate::server) fn serve_http1<I>(
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
    let context = ConnContext::new(shared, accepted, permit);
    let io = Counted::new(context.guard(stream), context.clone());
    let mut connection = Connection {
        io,
        read: BytesMut::new(),
        write: Vec::new(),
        spare_headers: HeaderMap::new(),
        context,
    };
    // The connection is this future's own captured variable, which `run`
    // borrows: an `async fn` taking it by value would hold it twice (its
    // argument and its local, both kept for the future's life: 1.5 KiB
    // more per TLS connection, measured).
    async move {
        if let Some(handover) = connection.run(stop, first_head_by).await {
            // Whatever the client sent behind its request is the tunnel's
            // first bytes: copied, since the read buffer would pin its
            // whole allocation for the tunnel's life (8 KiB per idle
            // WebSocket, measured).
            handover.hand_over(connection.io, Bytes::copy_from_slice(&connection.read));
        }
    }
}

/// One client connection and its two buffers.
struct Connection<I> {
    io: I,
    /// Bytes read and not yet consumed; no allocation while parked.
    read: BytesMut,
    /// The response head being written (and chunk size lines).
    write: Vec<u8>,
    /// The last response's header map, emptied: the next request's head is
    /// parsed into it (no map allocated per request on a busy connection).
    spare_headers: HeaderMap,
    context: Arc<ConnContext>,
}

/// A request the service answered, and what writing the answer needs of it.
struct Answered {
    /// The response's head, its headers still to be written.
    parts: http::response::Parts,
    body: LoggedBody,
    /// Where the request body stands (the service may have left some).
    decoder: BodyDecoder,
    /// The client keeps the connection open.
    keep_alive: bool,
    /// The client's side of an upgrade, for a 101.
    handover: Option<UpgradeHandover>,
    method: Method,
    version: Version,
}

/// What [`Connection::next_head`] waits with.
struct Waiting<'t, 's> {
    /// When the head must be complete.
    head_by: Instant,
    /// A request was served before (the connection may park).
    served: bool,
    timer: Pin<&'t mut tokio::time::Sleep>,
    stopped: Pin<&'t mut tokio_util::sync::WaitForCancellationFuture<'s>>,
}

/// What came instead of, or as, the next request. (Returned at once, never
/// stored: the size of the head variant costs nothing.)
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(Head),
    /// A head that cannot be served: answered, then closed.
    Refused(Refusal),
    /// The client closed, went quiet past its deadline, or shutdown: close.
    Close,
    /// The stream failed: drop it.
    Gone,
}

/// How an exchange left the connection.
enum After {
    /// A head that cannot be served: answered, then closed.
    Refused(Refusal),
    KeepAlive,
    Close,
    Gone,
    /// `101 Switching Protocols` went out: the stream goes to the tunnel.
    Upgrade(UpgradeHandover),
}

/// Why writing a response stopped.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("writing to the client failed: {0}")]
    Io(#[from] io::Error),
    #[error("the response body failed: {0}")]
    Body(#[source] crate::body::BodyError),
    #[error("the response body did not match its Content-Length")]
    Length,
}

impl<I> Connection<I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Serves requests until the connection closes; the client's side of
    /// an upgrade when a `101` went out and the stream goes to the tunnel.
    async fn run(
        &mut self,
        stop: CancellationToken,
        first_head_by: Option<Instant>,
    ) -> Option<UpgradeHandover> {
        let idle = self.context.shared.idle_timeout;
        let mut head_by = first_head_by.unwrap_or_else(|| Instant::now() + idle);
        let mut served = false;
        // One timer and one stop waiter for the connection's life, reset
        // rather than made anew per request: a new timer earlier than the
        // driver's next wake-up costs a wake-up of the runtime (an eventfd
        // write and an extra epoll_wait per request, measured), and each new
        // waiter a lock on the token.
        let mut timer = pin!(tokio::time::sleep_until(head_by));
        let mut stopped = pin!(stop.cancelled());
        loop {
            let waiting = Waiting {
                head_by,
                served,
                timer: timer.as_mut(),
                stopped: stopped.as_mut(),
            };
            // Each phase boxed: the connection's own future (what every
            // idle connection keeps) stays the size of its waiting state,
            // and a response that streams for long (a slow reader) no
            // longer holds the service's future (3.3 KiB) beside its own
            // state. The parsed head and the answered request are moved
            // whole into the next phase, never matched on across an await:
            // a match's scrutinee, even moved out of, stays in this future
            // for the whole exchange (1.3 KiB per connection, measured).
            let after = 'exchange: {
                let head = match self.next_head(waiting).await {
                    Next::Head(head) => head,
                    Next::Refused(refusal) => break 'exchange After::Refused(refusal),
                    Next::Close => break 'exchange After::Close,
                    Next::Gone => break 'exchange After::Gone,
                };
                let answered = pin_in_place!(self.answer(head)).await;
                let responding =
                    answered.map(|answered| pin_in_place!(self.respond(answered, &stop)));
                match responding {
                    Some(responding) => responding.await,
                    None => After::Gone,
                }
            };
            match after {
                After::KeepAlive => {}
                After::Refused(_) | After::Close => {
                    if let After::Refused(refusal) = after {
                        self.refuse(refusal).await;
                    }
                    // `Linger` (under `io`) makes this a lingering close.
                    let _ = poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
                    return None;
                }
                After::Gone => return None,
                After::Upgrade(handover) => return Some(handover),
            }
            served = true;
            head_by = Instant::now() + idle;
        }
    }

    /// Reads until the next request head is complete (or refused), the
    /// client closes, its deadline passes, or shutdown finds nothing begun.
    /// Once a request was served, the buffers go after [`PARK_AFTER`] with
    /// nothing read.
    async fn next_head(&mut self, waiting: Waiting<'_, '_>) -> Next {
        let Waiting {
            head_by,
            served,
            mut timer,
            mut stopped,
        } = waiting;
        // `head_by` is the end of the last response plus the idle timeout.
        let park_at = head_by
            .checked_sub(self.context.shared.idle_timeout)
            .map_or(head_by, |done| done + PARK_AFTER);
        timer.as_mut().reset(if served && park_at < head_by {
            park_at
        } else {
            head_by
        });
        let mut parked = None;
        let peer = self.context.accepted.peer;
        poll_fn(|cx| loop {
            if !self.read.is_empty() {
                match head::parse(&mut self.read, MAX_REQUEST_HEAD, &mut self.spare_headers) {
                    Ok(Some(head)) => return Poll::Ready(Next::Head(head)),
                    Ok(None) => {}
                    Err(refusal) => return Poll::Ready(Next::Refused(refusal)),
                }
            } else if stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Next::Close);
            }
            if timer.as_mut().poll(cx).is_ready() {
                if timer.deadline() >= head_by {
                    tracing::debug!(%peer, "request head not complete within client-header-timeout");
                    return Poll::Ready(Next::Close);
                }
                // Parked: no buffers beyond the bytes of a head begun.
                self.read = BytesMut::from(&self.read[..]);
                self.write = Vec::new();
                self.spare_headers = HeaderMap::new();
                parked = Some(self.context.shared.metrics.connection_parked());
                timer.as_mut().reset(head_by);
                continue;
            }
            // A head that has not begun is read through the stack: the
            // buffer then holds what came (a GET's few hundred bytes,
            // reused by the next head), not a read's worth of room that a
            // long response would pin.
            let read = if parked.is_some() || self.read.is_empty() {
                self.poll_read_stack(cx)
            } else {
                self.poll_read(cx)
            };
            match ready!(read) {
                Ok(0) => return Poll::Ready(Next::Close),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "reading a request head failed");
                    return Poll::Ready(Next::Gone);
                }
            }
        })
        .await
    }

    /// Runs one request through the service, feeding it the request body as
    /// it asks; `None` if the client left first.
    async fn answer(&mut self, head: Head) -> Option<Answered> {
        let Head {
            request,
            framing,
            keep_alive,
            expects_continue,
            upgrade,
        } = head;
        let mut decoder = BodyDecoder::new(framing);
        let pipe = (!decoder.is_done()).then(|| Arc::new(Pipe::default()));
        let mut request = request.map(|()| RequestBody::H1(H1Body::new(framing, pipe.clone())));
        let handover = upgrade.then(|| {
            let (handover, client) = upgrade_pair();
            request.extensions_mut().insert(client);
            handover
        });
        let method = request.method().clone();
        let version = request.version();
        let mut answer = pin!(service::handle(Box::new(request), self.context.clone()));
        let mut to_continue = expects_continue.then_some(0);
        let response = poll_fn(|cx| loop {
            if let Poll::Ready(response) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(response));
            }
            if let Some(pipe) = pipe.as_ref().filter(|p| p.wants()) {
                match self.poll_feed(cx, pipe, &mut decoder, &mut to_continue) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if decoder.is_done() && self.read.is_empty() && self.poll_client_gone(cx).is_ready() {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        })
        .await;
        let Some(response) = response else {
            tracing::debug!(peer = %self.context.accepted.peer, "client closed the connection before its response");
            return None;
        };
        let (parts, body) = response.into_parts();
        Some(Answered {
            parts,
            body,
            decoder,
            keep_alive,
            handover,
            method,
            version,
        })
    }

    /// Writes the service's answer and says what becomes of the connection.
    ///
    /// Not an `async fn`: that would keep `answered` twice for as long as
    /// the body streams (its argument and the locals taken out of it); the
    /// block works on the captured `answered` in place.
    #[allow(clippy::manual_async_fn)]
    fn respond<'a>(
        &'a mut self,
        mut answered: Answered,
        stop: &'a CancellationToken,
    ) -> impl Future<Output = After> + Send + 'a {
        async move {
            // A request body the service left unread: what is already here
            // of it is dropped; if that is not all of it, the connection
            // cannot carry another request.
            let mut close = !answered.keep_alive
                || !self.discard_buffered(&mut answered.decoder)
                || stop.is_cancelled();
            self.write.clear();
            let asked = Asked {
                method: &answered.method,
                version: answered.version,
            };
            let hint = answered.body.size_hint();
            let status = answered.parts.status;
            let sending = respond::head(
                status,
                &mut answered.parts.headers,
                &hint,
                asked,
                &mut close,
                &mut self.write,
            );
            // The values are slices of the upstream's read buffer: cleared
            // now, they do not pin it while the body streams, and the map
            // is the next request's (or goes if the client stalls).
            answered.parts.headers.clear();
            self.spare_headers = std::mem::take(&mut answered.parts.headers);
            let sent = self.send(sending, &mut answered.body).await;
            // Ends the request: its access-log line, `InFlight`.
            drop(answered.body);
            if let Err(e) = sent {
                tracing::debug!(peer = %self.context.accepted.peer, error = %e, "response not completed");
                return After::Gone;
            }
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return match answered.handover {
                    Some(handover) if handover.is_wanted() => After::Upgrade(handover),
                    _ => After::Close,
                };
            }
            if close {
                After::Close
            } else {
                After::KeepAlive
            }
        }
    }

    /// Gives the service's body its next piece (after the `100 Continue` the
    /// client may be waiting for): from the read buffer, reading more when
    /// it holds none.
    fn poll_feed(
        &mut self,
        cx: &mut Context<'_>,
        pipe: &Pipe,
        decoder: &mut BodyDecoder,
        to_continue: &mut Option<usize>,
    ) -> Poll<io::Result<()>> {
        if let Some(sent) = to_continue {
            while *sent < CONTINUE.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[*sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *sent += n;
            }
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            *to_continue = None;
        }
        let outcome = loop {
            match decoder.decode(&mut self.read) {
                Ok(Decoded::Data(piece)) => break Ok(Some(piece)),
                Ok(Decoded::End) => break Ok(None),
                Err(e) => break Err(e.into()),
                Ok(Decoded::NeedMore) => {}
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) => break decoder.eof().map(|_| None).map_err(H1BodyError::from),
                Ok(_) => {}
                Err(e) => break Err(H1BodyError::Io(e)),
            }
        };
        pipe.put(cx, outcome);
        Poll::Ready(Ok(()))
    }

    /// Drops what the read buffer holds of an unread request body; whether
    /// that was the rest of it.
    fn discard_buffered(&mut self, decoder: &mut BodyDecoder) -> bool {
        loop {
            match decoder.decode(&mut self.read) {
                Ok(Decoded::Data(_)) => {}
                Ok(Decoded::End) => return true,
                Ok(Decoded::NeedMore) | Err(_) => return false,
            }
        }
    }

    /// Watches a connection whose request is complete for the client
    /// leaving; ready when it has (bytes it sends meanwhile, a pipelined
    /// request, are kept for later and end the watch).
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match ready!(self.poll_read_stack(cx)) {
            Ok(0) | Err(_) => Poll::Ready(()),
            Ok(_) => Poll::Pending,
        }
    }

    /// Writes the head in `self.write` and then the body's pieces, each
    /// framed as `sending` says. A piece is asked for only once the one
    /// before is written; the first is asked for before the head goes, so
    /// that a ready body leaves with its head in one write.
    async fn send(&mut self, sending: Sending, body: &mut LoggedBody) -> Result<(), SendError> {
        let mut out = Out::default();
        let mut left = match sending {
            Sending::Length(len) => Some(len),
            _ => None,
        };
        let mut ended = sending == Sending::Nothing;
        let mut asked_first = false;
        let mut flushed = true;
        poll_fn(|cx| loop {
            let queued = out.pending(&self.write);
            if !queued && !flushed {
                // What rustls took of the last piece reaches the kernel
                // before the body is asked for more: a client that reads
                // nothing holds one piece in bellhop, not rustls' whole
                // buffer, and the upstream waits.
                if Pin::new(&mut self.io).poll_flush(cx)?.is_pending() {
                    self.shed(&mut out, body);
                    return Poll::Pending;
                }
                flushed = true;
            }
            if !ended && (!queued || !asked_first) {
                asked_first = true;
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending if queued => {}
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        ended = true;
                        if left.is_some_and(|left| left > 0) {
                            return Poll::Ready(Err(SendError::Length));
                        }
                        if sending == Sending::Chunked {
                            out.tail = LAST_CHUNK;
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(SendError::Body(e))),
                    Poll::Ready(Some(Ok(frame))) => {
                        let Ok(data) = frame.into_data() else {
                            // Trailers: not sent.
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        if let Some(left) = &mut left {
                            let len = data.len() as u64;
                            if len > *left {
                                return Poll::Ready(Err(SendError::Length));
                            }
                            *left -= len;
                        }
                        self.queue(&mut out, data, sending == Sending::Chunked, queued);
                    }
                }
            }
            if out.pending(&self.write) {
                if self.poll_write_out(cx, &mut out)?.is_pending() {
                    self.shed(&mut out, body);
                    return Poll::Pending;
                }
                flushed = false;
                continue;
            }
            if ended {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
        })
        .await
    }

    /// The client is not taking the response: the buffers it need not pin
    /// while it waits go (the read buffer when empty, the head buffer when
    /// written, the upstream's read buffer). Only a stalled response pays
    /// for allocating them again.
    fn shed(&mut self, out: &mut Out, body: &mut LoggedBody) {
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        if out.lead >= self.write.len() {
            self.write = Vec::new();
            out.lead = 0;
        }
        self.spare_headers = HeaderMap::new();
        body.shed();
    }

    /// Puts a piece of body `data` behind what `out` still has to write
    /// (`queued`: the head has not gone yet), with its chunk framing if
    /// `chunked`. A small piece is copied into the write buffer, so the
    /// stream gets one slice (rustls takes several by collecting them into
    /// a `Vec` per write).
    fn queue(&mut self, out: &mut Out, data: Bytes, chunked: bool, queued: bool) {
        let copied = data.len() <= COPY_AT_MOST;
        if (chunked || copied) && !queued {
            // The last head or chunk line is written: the buffer starts again.
            self.write.clear();
            out.lead = 0;
        }
        if chunked {
            self.write
                .extend_from_slice(ChunkSize::new(data.len()).as_bytes());
        }
        if copied {
            self.write.extend_from_slice(&data);
            if chunked {
                self.write.extend_from_slice(CHUNK_END);
            }
        } else {
            if chunked {
                out.tail = CHUNK_END;
            }
            out.data = data;
        }
    }

    /// Writes `out` (the unwritten end of `self.write`, then its data and
    /// tail) to the client, in as few writes as the stream takes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>, out: &mut Out) -> Poll<io::Result<()>> {
        while out.pending(&self.write) {
            let parts = [&self.write[out.lead..], &out.data[..], out.tail];
            let mut slices = [IoSlice::new(&[]); 3];
            let mut count = 0;
            for part in parts.into_iter().filter(|part| !part.is_empty()) {
                slices[count] = IoSlice::new(part);
                count += 1;
            }
            let slices = &slices[..count];
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.advance(n, self.write.len());
        }
        Poll::Ready(Ok(()))
    }

    /// Answers a refused head (no body), before the connection closes.
    async fn refuse(&mut self, refusal: Refusal) {
        let peer = self.context.accepted.peer;
        tracing::debug!(%peer, status = refusal.status.as_u16(), why = refusal.why, "request head refused");
        self.write.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.write,
            "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            refusal.status.as_str(),
            refusal.status.canonical_reason().unwrap_or(""),
        );
        let mut out = Out::default();
        let written = poll_fn(|cx| {
            ready!(self.poll_write_out(cx, &mut out))?;
            Pin::new(&mut self.io).poll_flush(cx)
        })
        .await;
        if let Err(e) = written {
            tracing::debug!(%peer, error = %e, "could not answer a refused head");
        }
    }

    /// Reads into the read buffer, growing it when it is nearly full.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < MIN_READ_ROOM {
            self.read.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// Reads up to [`STACK_READ`] bytes into the stack and appends what came
    /// to the read buffer, which grows only by that (a parked client that
    /// dribbles a head holds what it sent, not a read buffer).
    fn poll_read_stack(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Not zeroed: `ReadBuf` tracks what the read filled.
        let mut stack = [const { MaybeUninit::<u8>::uninit() }; STACK_READ];
        let mut buf = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let got = buf.filled();
        self.read.extend_from_slice(got);
        Poll::Ready(Ok(got.len()))
    }
}

/// What is left to write of a response's current step: the end of the
/// connection's write buffer from `lead`, then `data`, then `tail`.
#[derive(Debug, Default)]
struct Out {
    lead: usize,
    data: Bytes,
    tail: &'static [u8],
}

impl Out {
    fn pending(&self, write: &[u8]) -> bool {
        self.lead < write.len() || !self.data.is_empty() || !self.tail.is_empty()
    }

    /// `n` more bytes were written; `written_len` is the write buffer's.
    fn advance(&mut self, mut n: usize, write_len: usize) {
        let lead = (write_len - self.lead).min(n);
        self.lead += lead;
        n -= lead;
        let data = self.data.len().min(n);
        self.data.advance(data);
        if self.data.is_empty() {
            // Emptied, it would still pin the buffer it was cut from.
            self.data = Bytes::new();
        }
        n -= data;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_advances_across_its_parts() {
        let write = b"head".to_vec();
        let mut out = Out {
            lead: 0,
            data: Bytes::from_static(b"data"),
            tail: b"\r\n",
        };
        out.advance(3, write.len());
        assert_eq!(
            (out.lead, &out.data[..], out.tail),
            (3, &b"data"[..], &b"\r\n"[..])
        );
        out.advance(3, write.len());
        assert_eq!(
            (out.lead, &out.data[..], out.tail),
            (4, &b"ta"[..], &b"\r\n"[..])
        );
        out.advance(3, write.len());
        assert_eq!((&out.data[..], out.tail), (&b""[..], &b"\n"[..]));
        assert!(out.pending(&write));
        out.advance(1, write.len());
        assert!(!out.pending(&write));
    }
}
