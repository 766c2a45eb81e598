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
    /// `None` once dropped to hand back a request it never took (`request`).
    conn: Option<http1::Connection<TokioIo<UpstreamStream>, Body>>,
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
            conn: Some(conn),
            finished: None,
            home,
            idled: Duration::ZERO,
        }))
    }

    /// Drives the connection (reads, writes, keep-alive bookkeeping) as far as
    /// it goes without blocking; `cx` is woken when it can go further.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) {
        if let (None, Some(conn)) = (&self.finished, &mut self.conn) {
            // Without shutdown: after a 101 the stream is taken over, not closed.
            if let Poll::Ready(result) = conn.poll_without_shutdown(cx) {
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
    ///
    /// One way to die first needs help: a pooled connection whose backend's
    /// FIN arrives between the checkout and this first poll. hyper reads the
    /// EOF before it takes the request from its queue, ends the connection
    /// cleanly, and leaves the request queued, unanswered until the header
    /// timeout. Dropping the connection then hands the request back.
    pub(super) async fn request(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        let mut response = pin!(self.send.try_send_request(request));
        poll_fn(|cx| {
            self.drive(cx);
            let polled = response.as_mut().poll(cx);
            if polled.is_pending() && self.finished.is_some() && self.conn.take().is_some() {
                return response.as_mut().poll(cx);
            }
            polled
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
        match (self.finished.take(), self.conn.take()) {
            (Some(Ok(())), Some(conn)) => {
                let parts = conn.into_parts();
                Ok((parts.io.into_inner(), parts.read_buf))
            }
            (Some(Err(e)), _) => Err(io::Error::other(e)),
            (Some(Ok(())), None) => Err(io::Error::other("upstream connection dropped")),
            (None, _) => Err(io::Error::other("upstream connection not finished")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn get() -> Request<Body> {
        Request::get("/").body(Body::empty()).unwrap()
    }

    /// The backend answers one request and closes; the close is on the
    /// socket before the next request is polled for the first time (as when
    /// its FIN lands right after the pool's check). The request comes back
    /// unsent instead of waiting for the header timeout.
    #[tokio::test]
    async fn request_queued_on_a_connection_that_ended_first_is_handed_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            let _ = close_rx.await;
            // On loopback the FIN is in the peer's queue when this returns.
            sock.shutdown().await.unwrap();
            let _ = closed_tx.send(());
            let _ = sock.read(&mut buf).await;
        });
        let target = Upstream::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        let mut conn = UpstreamConn::open(&target, Duration::from_secs(5), None)
            .await
            .unwrap();
        let response = conn.request(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        // Idle and ready, as in the pool; then the backend closes, and the
        // connection is not polled again before the next request.
        assert!(conn.is_reusable());
        close_tx.send(()).unwrap();
        closed_rx.await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), conn.request(get())).await;
        match outcome {
            Ok(Err(mut failed)) => {
                assert!(failed.take_message().is_some(), "no request handed back")
            }
            Ok(Ok(r)) => panic!("answered {}", r.status()),
            Err(_) => panic!("the request was left queued on the ended connection"),
        }
    }
}
