//! Real backends on 127.0.0.1 ephemeral ports (and unix sockets) for bellhop to
//! forward to. Each one counts what it saw so tests can assert on the far side of
//! the proxy, not only on what the client got back.

pub mod echo;
pub mod idle_close;
pub mod raw;
pub mod slow;
pub mod sse;
pub mod upgrade;
pub mod ws;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use super::{spawn_task, Task};

/// The response body type all hyper backends use.
pub type RespBody = BoxBody<Bytes, Infallible>;

/// A whole body from bytes or a string.
pub fn full(b: impl Into<Bytes>) -> RespBody {
    Full::new(b.into()).boxed()
}

/// A body fed chunk by chunk through a channel; ends when the sender is dropped.
/// The sender's `send` fails once the body is dropped, which is how a backend
/// learns that its response is no longer wanted.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    /// A sender and the body it feeds (buffer of one chunk: no hidden buffering).
    pub fn channel() -> (mpsc::Sender<Bytes>, RespBody) {
        let (tx, rx) = mpsc::channel(1);
        (tx, ChannelBody(rx).boxed())
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Connection counters every hyper backend keeps.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections accepted so far.
    pub accepted: AtomicU64,
    /// Connections open right now.
    pub open: AtomicI64,
    /// Requests received so far.
    pub requests: AtomicU64,
}

impl ConnStats {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Connections open right now.
    pub fn open(&self) -> i64 {
        self.open.load(Ordering::SeqCst)
    }
    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Decrements a counter when dropped, so "open" counts survive early returns and aborts.
pub struct OpenGuard(pub Arc<ConnStats>);

impl OpenGuard {
    /// Counts one more open (and accepted) connection.
    pub fn new(stats: &Arc<ConnStats>) -> Self {
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        stats.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(stats.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a handler learns about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Peer address as text (`127.0.0.1:PORT`, or `unix` for unix sockets).
    pub peer: String,
}

/// A request handler: any async function from request to response.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>, ConnInfo) -> Pin<Box<dyn Future<Output = Response<RespBody>> + Send>>
        + Send
        + Sync,
>;

/// Wraps an async closure as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>, ConnInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<RespBody>> + Send + 'static,
{
    Arc::new(move |req, info| Box::pin(f(req, info)))
}

/// A hyper HTTP/1.1 backend on TCP 127.0.0.1:0 or a unix socket.
pub struct HttpBackend {
    /// TCP address (unset for unix-socket backends).
    pub tcp: Option<SocketAddr>,
    /// Socket path (unset for TCP backends).
    pub unix: Option<PathBuf>,
    /// Connection and request counters.
    pub stats: Arc<ConnStats>,
    _task: Task,
}

impl HttpBackend {
    /// Serves `h` on 127.0.0.1 at an ephemeral port.
    pub async fn tcp(h: Handler) -> Self {
        Self::tcp_at(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), h).await
    }

    /// Serves `h` at `addr` (a backend coming back on its port).
    pub async fn tcp_at(addr: std::net::SocketAddr, h: Handler) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let stats = Arc::new(ConnStats::default());
        let st = stats.clone();
        let task = spawn_task(async move {
            while let Ok((sock, peer)) = listener.accept().await {
                let info = ConnInfo {
                    peer: peer.to_string(),
                };
                tokio::spawn(serve(sock, info, h.clone(), st.clone()));
            }
        });
        HttpBackend {
            tcp: Some(addr),
            unix: None,
            stats,
            _task: task,
        }
    }

    /// Serves `h` on a unix socket at `path`.
    pub async fn unix(path: &Path, h: Handler) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind unix backend");
        let stats = Arc::new(ConnStats::default());
        let st = stats.clone();
        let task = spawn_task(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let info = ConnInfo {
                    peer: "unix".to_string(),
                };
                tokio::spawn(serve(sock, info, h.clone(), st.clone()));
            }
        });
        HttpBackend {
            tcp: None,
            unix: Some(path.to_path_buf()),
            stats,
            _task: task,
        }
    }

    /// The TCP address; panics for a unix-socket backend.
    pub fn addr(&self) -> SocketAddr {
        self.tcp.expect("not a TCP backend")
    }
}

/// Serves one connection with HTTP/1.1 keep-alive, counting it while open.
async fn serve<IO>(io: IO, info: ConnInfo, h: Handler, stats: Arc<ConnStats>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _open = OpenGuard::new(&stats);
    let svc = service_fn(move |req| {
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let fut = h(req, info.clone());
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}
