//! Opens transport connections to one upstream, TCP or unix socket.
//!
//! The upstream pool asks for a stream per new connection; `unix:` upstreams
//! and `host:port` ones then share the same HTTP/1.1 connection, pooling and
//! upgrade code. The stream type implements tokio's I/O traits so that an
//! upgraded connection can be spliced without hyper's boxed `Upgraded`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::Upstream;

/// Dials `target`, giving up after `limit`.
pub(super) async fn connect(target: &Upstream, limit: Duration) -> io::Result<UpstreamStream> {
    match tokio::time::timeout(limit, dial(target)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect timed out after {limit:?}"),
        )),
    }
}

async fn dial(target: &Upstream) -> io::Result<UpstreamStream> {
    match target {
        Upstream::Tcp { host, port } => {
            // `localhost` resolves to ::1 and 127.0.0.1; uvicorn listens on the
            // latter only, so try every address before giving up.
            let mut last_error = None;
            for addr in tokio::net::lookup_host((host.as_str(), *port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        return Ok(UpstreamStream::Tcp(stream));
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "host name resolved to no address")
            }))
        }
        Upstream::Unix { path } => Ok(UpstreamStream::Unix(UnixStream::connect(path).await?)),
    }
}

/// A connected upstream transport.
#[derive(Debug)]
pub(super) enum UpstreamStream {
    /// A TCP connection (TCP_NODELAY set).
    Tcp(TcpStream),
    /// A unix-domain socket connection.
    Unix(UnixStream),
}

impl UpstreamStream {
    /// Ready once the upstream has sent something (or closed): a reader
    /// allocates its buffer then, not while it waits.
    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            UpstreamStream::Tcp(s) => s.poll_read_ready(cx),
            UpstreamStream::Unix(s) => s.poll_read_ready(cx),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Tcp(s) => s.is_write_vectored(),
            UpstreamStream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
