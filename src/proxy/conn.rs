//! One HTTP/1.1 connection to an upstream, driven by the task that uses it.
//!
//! hyper-util's pooled client runs every upstream connection on a task of its
//! own and hands each request to it over a channel: two tasks, wake-ups and
//! (on a work-stealing runtime) thread hand-offs per request. Here the
//! connection future is polled by whoever holds the connection: the request
//! task while it waits for the response head, then the response body while it
//! streams, then nobody while it sits idle in the pool. So a request, its
//! upstream connection and its response stay on one task.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::rt::TokioIo;

use super::connector::{connect, UpstreamStream};
use super::pool::PoolKey;
use crate::body::Body;
use crate::config::Upstream;

/// Upper bound of the read buffer per upstream connection: how far bellhop
/// reads ahead of a slow client (hyper's default lets one pin ~400 KiB).
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

/// Where a connection goes once its exchange is over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Home {
    /// The pool lane of its upstream.
    pub key: PoolKey,
    /// How long it may then sit idle.
    pub idle_timeout: Duration,
}

/// A connection's request handle and the connection future itself, kept
/// together (and boxed once per connection, so moving it between the pool,
/// the request and the response body copies one pointer).
pub(super) struct UpstreamConn {
    send: http1::SendRequest<Body>,
    conn: http1::Connection<TokioIo<UpstreamStream>, Body>,
    /// The connection future finished (closed, failed or handed over for an
    /// upgrade); polling it again is not allowed.
    finished: Option<hyper::Result<()>>,
    /// The pool it returns to; `None` for a connection used once.
    pub home: Option<Home>,
    /// How long it sat in the pool before this checkout.
    pub idled: Duration,
}

impl fmt::Debug for UpstreamConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConn")
            .field("finished", &self.finished.is_some())
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl UpstreamConn {
    /// Dials `target` and sets up HTTP/1.1 on it. No bytes are exchanged yet.
    pub(super) async fn open(
        target: &Upstream,
        connect_timeout: Duration,
        home: Option<Home>,
    ) -> Result<Box<UpstreamConn>, OpenError> {
        let stream = connect(target, connect_timeout)
            .await
            .map_err(OpenError::Connect)?;
        let (send, conn) = http1::Builder::new()
            .max_buf_size(UPSTREAM_READ_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(OpenError::Handshake)?;
        Ok(Box::new(UpstreamConn {
            send,
            conn,
            finished: None,
            home,
            idled: Duration::ZERO,
        }))
    }

    /// Drives the connection (reads, writes, keep-alive bookkeeping) as far as
    /// it goes without blocking; `cx` is woken when it can go further.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) {
        if self.finished.is_none() {
            // Without shutdown: after a 101 the stream is taken over, not closed.
            if let Poll::Ready(result) = self.conn.poll_without_shutdown(cx) {
                self.finished = Some(result);
            }
        }
    }

    /// Whether the connection can carry another request: driven once without
    /// a waker, it must neither have ended (the backend's FIN or an error shows
    /// up here) nor be busy with the previous exchange.
    pub(super) fn is_reusable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.finished.is_none() && self.send.is_ready()
    }

    /// Sends `request` and drives the connection until the response head
    /// arrives. When the connection dies before the request was written, the
    /// error hands the request back for a retry elsewhere.
    pub(super) async fn request(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        let mut response = pin!(self.send.try_send_request(request));
        poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }

    /// After a `101 Switching Protocols`: drives the connection until hyper
    /// lets go of the stream, then returns it with any bytes the upstream sent
    /// after the 101 (already read into hyper's buffer).
    pub(super) async fn into_upgraded(mut self: Box<Self>) -> io::Result<(UpstreamStream, Bytes)> {
        poll_fn(|cx| {
            self.drive(cx);
            match &self.finished {
                Some(_) => Poll::Ready(()),
                None => Poll::Pending,
            }
        })
        .await;
        match self.finished.take() {
            Some(Ok(())) => {
                let parts = self.conn.into_parts();
                Ok((parts.io.into_inner(), parts.read_buf))
            }
            Some(Err(e)) => Err(io::Error::other(e)),
            None => Err(io::Error::other("upstream connection not finished")),
        }
    }
}

/// Why a new upstream connection could not be set up.
#[derive(Debug)]
pub(super) enum OpenError {
    /// Dialing failed or timed out.
    Connect(io::Error),
    /// hyper refused the stream (it never does for HTTP/1.1 today).
    Handshake(hyper::Error),
}
