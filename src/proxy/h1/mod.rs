//! bellhop's own HTTP/1.1 client for upstream connections: small, strict, and
//! polled by the task that serves the client.
//!
//! ```text
//! request parts ─► encode: head bytes into the connection's reused buffer
//!               ─► exchange: head (+ first body bytes, one writev), body
//!                  (length or chunked), then the response head (1xx skipped,
//!                  101 handed to the tunnel) ─► decode: head + framing
//!               ─► body: data cut from the read buffer as it arrives
//! ```
//!
//! Why not hyper's client: every proxied request already runs through hyper's
//! server for the client; a second state machine with its dispatch channels
//! and wake-ups for the upstream doubled the work. This client does only what
//! a proxy needs: the request head is encoded once from the rewritten parts
//! (and those bytes are the replay for the stale-connection retry), the
//! response head is parsed once into the `HeaderMap` the server sends on.
//! Anything malformed from the upstream is an error (a 502) and its
//! connection is never reused.

pub(in crate::proxy) mod decode;
pub(in crate::proxy) mod encode;
mod exchange;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::conn::{UPSTREAM_HEAD_LIMIT, UPSTREAM_READ_MAX};
use super::connector::UpstreamStream;
use crate::body::BodyError;
use crate::http1::{BodyDecoder, Decoded, FieldSpans, FramingError};
pub(in crate::proxy) use exchange::{Asked, Failure, Stage};

/// First read size; reads grow while they fill the buffer, up to
/// [`UPSTREAM_READ_MAX`].
const FIRST_READ: usize = 8 * 1024;

/// The largest last piece of a read that is copied out of the read buffer
/// rather than taking the buffer with it (`Connection::poll_body`).
const COPIED_PIECE_MAX: usize = 2 * 1024;

/// Read size once the client has stopped taking the response: what it does
/// not take waits in rustls as the records of one read, so small reads keep
/// that small; reads grow again as they fill.
const SHED_READ: usize = 4 * 1024;

/// Why an exchange or a response body failed.
#[derive(Debug, thiserror::Error)]
pub(in crate::proxy) enum Error {
    /// The upstream closed the connection before any response byte.
    #[error("upstream closed the connection before responding")]
    Closed,
    /// The upstream closed the connection in the middle of a response.
    #[error("upstream closed the connection mid-response")]
    Incomplete,
    /// Reading or writing the socket failed.
    #[error("upstream connection failed")]
    Io(#[source] io::Error),
    /// The response head is not HTTP/1.x.
    #[error("malformed response head from upstream")]
    Parse(#[source] httparse::Error),
    /// The response broke the protocol otherwise.
    #[error("malformed response from upstream: {0}")]
    Malformed(&'static str),
    /// The response head did not fit the read buffer.
    #[error("upstream response head larger than {UPSTREAM_HEAD_LIMIT} bytes")]
    HeadTooLarge,
    /// The client's request body failed (limit, timeout, bad framing, gone).
    #[error("request body failed")]
    Body(#[source] BodyError),
}

impl From<FramingError> for Error {
    fn from(error: FramingError) -> Self {
        match error {
            FramingError::Malformed(what) => Error::Malformed(what),
            FramingError::Incomplete => Error::Incomplete,
        }
    }
}

/// One HTTP/1.1 connection to an upstream: the stream and its two buffers.
#[derive(Debug)]
pub(in crate::proxy) struct Connection {
    stream: UpstreamStream,
    /// Bytes read and not yet consumed.
    read: BytesMut,
    /// Size of the next read (grows while reads fill it).
    read_size: usize,
    /// The encoded head of the current request, kept as its replay until the
    /// next request reuses the buffer.
    head: Vec<u8>,
    /// Whether the connection may carry another request once the current
    /// response is complete (the response head said so and nothing failed).
    keep_alive: bool,
    /// Whether a request has been sent on it (it came from the pool).
    used: bool,
    /// The current request's header map, emptied once its head is encoded:
    /// the response head is parsed into it. bellhop's server parses the next
    /// request head into the map of the response it just sent, so on a
    /// keep-alive connection one map goes round (request, response, next
    /// request) and no request allocates or grows one.
    spare_headers: HeaderMap,
    /// Where a response head's fields sit while it is parsed.
    spans: FieldSpans,
}

impl Connection {
    /// Wraps a freshly connected stream.
    pub(in crate::proxy) fn new(stream: UpstreamStream) -> Self {
        Connection {
            stream,
            read: BytesMut::new(),
            read_size: FIRST_READ,
            head: Vec::new(),
            keep_alive: true,
            used: false,
            spare_headers: HeaderMap::new(),
            spans: FieldSpans::default(),
        }
    }

    /// Whether an idle connection can carry another request: the last
    /// response left it open and clean, and the upstream has neither closed it
    /// nor sent anything since (checked without waiting).
    pub(in crate::proxy) fn is_reusable(&mut self) -> bool {
        self.is_clean()
            && self
                .poll_idle(&mut Context::from_waker(Waker::noop()))
                .is_none()
    }

    /// Whether the exchange that just ended left the connection fit for
    /// another: keep-alive, no error, and no bytes beyond the response.
    pub(in crate::proxy) fn is_clean(&self) -> bool {
        self.keep_alive && self.read.is_empty()
    }

    /// Gives back the buffers a paused response body does not need: the
    /// read buffer while it holds nothing (the next read allocates again,
    /// [`SHED_READ`] bytes), and the request's head, no replay once the
    /// response has begun. For a client that stopped reading, so that it
    /// pins neither, and for an idle connection outside the pool's warm few.
    pub(in crate::proxy) fn shed(&mut self) {
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        self.read_size = SHED_READ;
        self.head = Vec::new();
    }

    /// Whether the read buffer has an allocation.
    #[cfg(test)]
    pub(in crate::proxy) fn holds_read_buffer(&self) -> bool {
        self.read.capacity() > 0
    }

    /// The encoded head of the last request, for a replay elsewhere.
    pub(in crate::proxy) fn take_head(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.head)
    }

    /// Sends `head` (taken from a connection that died) on this one.
    pub(in crate::proxy) fn put_head(&mut self, head: Vec<u8>) {
        self.head = head;
    }

    /// Reads what is available into the read buffer; `Ok(0)` is the end of
    /// the stream.
    pub(in crate::proxy) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < self.read_size / 2 {
            // Allocated once the upstream has sent something: a response
            // the upstream is still producing (a long poll, an SSE stream
            // between events, a slow backend) holds no read buffer, nor do
            // the clients waiting on it.
            ready!(self.stream.poll_read_ready(cx))?;
            self.read.reserve(self.read_size);
        }
        let spare = self.read.capacity() - self.read.len();
        let polled = tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read);
        if let Poll::Ready(Ok(n)) = polled {
            if n == spare && self.read_size < UPSTREAM_READ_MAX {
                self.read_size = (self.read_size * 2).min(UPSTREAM_READ_MAX);
            }
        }
        polled
    }

    /// The next piece of a response body that `decoder` delimits; `None` at
    /// its end. Data is handed on as soon as it is read.
    pub(in crate::proxy) fn poll_body(
        &mut self,
        decoder: &mut BodyDecoder,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Error>>> {
        loop {
            let decoded = decoder.decode(&mut self.read);
            match decoded {
                Ok(Decoded::Data(data)) => {
                    if self.read.is_empty() {
                        if data.len() <= COPIED_PIECE_MAX {
                            // A small response's body (or its end): a copy
                            // goes on, and the buffer stays for the next
                            // response instead of a new one per request
                            // (~500 instructions, callgrind).
                            return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&data))));
                        }
                        // The piece is the rest of the buffer's allocation:
                        // let it go with the piece (freed once written to
                        // the client) rather than hold it here while the
                        // client is slow; the next read takes a fresh one.
                        self.read = BytesMut::new();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(e) => return self.fail(e.into()),
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => match decoder.eof() {
                    Ok(_) => {
                        self.keep_alive = false;
                        return Poll::Ready(None);
                    }
                    Err(e) => return self.fail(e.into()),
                },
                Ok(_) => {}
                Err(e) => return self.fail(Error::Io(e)),
            }
        }
    }

    /// Ends a body with `error`; the connection is not reused.
    fn fail(&mut self, error: Error) -> Poll<Option<Result<Bytes, Error>>> {
        self.keep_alive = false;
        Poll::Ready(Some(Err(error)))
    }

    /// Checks an idle connection without waiting: `None` while it is quiet,
    /// else why it cannot be used (closed, failed, or bytes nobody asked for).
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Option<Error> {
        match self.poll_fill(cx) {
            Poll::Pending => None,
            Poll::Ready(Ok(0)) => Some(Error::Closed),
            Poll::Ready(Ok(_)) => Some(Error::Malformed("bytes sent while idle")),
            Poll::Ready(Err(e)) => Some(Error::Io(e)),
        }
    }

    /// The stream and whatever the upstream sent after the head of a
    /// `101 Switching Protocols`: a copy, since the tunnel keeps it for its
    /// whole life, and the read buffer itself (even empty, frozen) would keep
    /// its allocation with it: 8 KiB per idle WebSocket, measured.
    pub(in crate::proxy) fn into_upgraded(self) -> (UpstreamStream, Bytes) {
        (self.stream, Bytes::copy_from_slice(&self.read))
    }
}
