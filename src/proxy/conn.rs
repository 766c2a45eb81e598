//! One HTTP/1.1 connection to an upstream, driven by the task that uses it.
//!
//! hyper-util's pooled client ran every upstream connection on a task of its
//! own and handed each request to it over a channel: two tasks, wake-ups and
//! (on a work-stealing runtime) thread hand-offs per request. Here the
//! connection ([`h1::Connection`], bellhop's own HTTP/1.1 client) is read and
//! written by whoever holds it: the request task while it sends the request
//! and waits for the response head, then the response body while it streams,
//! then nobody while it sits idle in the pool. So a request, its upstream
//! connection and its response stay on one task.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::connector::{connect, UpstreamStream};
use super::h1;
use super::pool::PoolKey;
use crate::config::Upstream;

/// The largest response head bellhop accepts from an upstream.
pub(super) const UPSTREAM_HEAD_LIMIT: usize = 64 * 1024;

/// The largest single read from an upstream, which bounds how far a body
/// is read ahead of a slow client per read: each piece stays allocated while
/// hyper's write queue holds it. 16 KiB (one TLS record) rather than 64:
/// a slow reader of an 8 MiB response held 197 KiB with 64 KiB reads and
/// 157 KiB with 16 KiB ones, and a 256 MiB HTTPS download was no slower
/// (bench/RESULTS.md, "memory per connection").
pub(super) const UPSTREAM_READ_MAX: usize = 16 * 1024;

/// Where a connection goes once its exchange is over.
#[derive(Debug, Clone, Copy)]
pub(super) struct Home {
    /// The pool lane of its upstream.
    pub key: PoolKey,
    /// How long it may then sit idle.
    pub idle_timeout: Duration,
}

/// A connection and its pool bookkeeping, boxed once per connection so that
/// moving it between the pool, the request and the response body copies one
/// pointer.
#[derive(Debug)]
pub(super) struct UpstreamConn {
    /// The HTTP/1.1 connection itself.
    pub io: h1::Connection,
    /// The pool it returns to; `None` for a connection used once.
    pub home: Option<Home>,
    /// How long it sat in the pool before this checkout.
    pub idled: Duration,
    /// The header timeout's timer, kept for the connection's life: see
    /// [`HeaderTimer`].
    pub header_timer: HeaderTimer,
}

impl UpstreamConn {
    /// Dials `target`. No bytes are exchanged yet.
    pub(super) async fn open(
        target: &Upstream,
        connect_timeout: Duration,
        home: Option<Home>,
    ) -> Result<Box<UpstreamConn>, OpenError> {
        let stream = connect(target, connect_timeout)
            .await
            .map_err(OpenError::Connect)?;
        Ok(Box::new(UpstreamConn {
            io: h1::Connection::new(stream),
            home,
            idled: Duration::ZERO,
            header_timer: HeaderTimer::new(),
        }))
    }

    /// Whether the connection can carry another request: its last response
    /// left it open, and the backend has not closed it since (its FIN or an
    /// error shows up in a read that does not wait).
    pub(super) fn is_reusable(&mut self) -> bool {
        self.io.is_reusable()
    }

    /// After a `101 Switching Protocols`: the stream, with any bytes the
    /// upstream sent right behind the 101 (already read with the head).
    pub(super) async fn into_upgraded(self: Box<Self>) -> io::Result<(UpstreamStream, Bytes)> {
        Ok(self.io.into_upgraded())
    }
}

/// The timer behind `header-timeout`, armed lazily.
///
/// A `tokio::time::timeout` per exchange put a timer in the runtime's wheel
/// and took it out again for every request (~500 instructions, callgrind).
/// This one stays in the wheel at the deadline it was last armed for. An
/// exchange's deadline is never earlier than the previous one's (same
/// timeout, later start), so it is only re-armed when it fires: if the
/// current exchange's deadline has not come yet, the timer is moved there
/// and waits on. A connection in steady use re-arms it once per
/// `header-timeout`. Firing while nobody waits on it (the connection idle in
/// the pool) wakes the task that polled it last, which finds nothing to do.
#[derive(Debug)]
pub(super) struct HeaderTimer(Pin<Box<Sleep>>);

impl HeaderTimer {
    /// Fired already: the first exchange arms it at its own deadline.
    fn new() -> Self {
        HeaderTimer(Box::pin(tokio::time::sleep_until(Instant::now())))
    }

    /// Ready once `deadline` has passed.
    pub(super) fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.deadline() > deadline {
            // Armed for a longer timeout than this exchange's (only a new
            // setting could do that): its deadline is the one to keep.
            self.0.as_mut().reset(deadline);
        }
        loop {
            if self.0.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.0.deadline() >= deadline {
                return Poll::Ready(());
            }
            // An earlier exchange's deadline: this one's has not come.
            self.0.as_mut().reset(deadline);
        }
    }
}

/// Why a new upstream connection could not be set up.
#[derive(Debug)]
pub(super) enum OpenError {
    /// Dialing failed or timed out.
    Connect(io::Error),
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::body::Body;
    use h1::encode::BodyKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ASKED: h1::Asked = h1::Asked {
        head_request: false,
        upgrade: false,
    };

    /// Sends a bodiless GET on `conn`.
    pub(in crate::proxy) async fn get(
        conn: &mut UpstreamConn,
    ) -> Result<(h1::decode::Head, h1::decode::Delimited), h1::Failure> {
        let (mut parts, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        conn.io.encode(&mut parts, BodyKind::Empty);
        conn.io
            .exchange(&mut Body::empty(), BodyKind::Empty, ASKED)
            .await
    }

    /// The backend answers one request and closes; the close is on the
    /// socket before the next request is sent (as when its FIN lands right
    /// after the pool's check). The request fails as unsent, so it can go
    /// out on a new connection whatever it is.
    #[tokio::test]
    async fn request_on_a_connection_that_ended_first_fails_unsent() {
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
        let (head, delimited) = get(&mut conn).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(delimited.framing, crate::http1::Framing::Length(0));
        // Idle and ready, as in the pool; then the backend closes, and the
        // connection is not checked again before the next request.
        assert!(conn.is_reusable());
        close_tx.send(()).unwrap();
        closed_rx.await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), get(&mut conn)).await;
        match outcome {
            Ok(Err(failure)) => assert_eq!(failure.stage, h1::Stage::Unsent),
            Ok(Ok((head, _))) => panic!("answered {}", head.status),
            Err(_) => panic!("the request waited on the ended connection"),
        }
    }
}
