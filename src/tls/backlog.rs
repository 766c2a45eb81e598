//! How many encrypted bytes rustls may hold for a client whose socket is
//! full: a little once the socket has pushed back, the connection's usual
//! allowance otherwise.
//!
//! Why: tokio-rustls hands rustls every byte it is asked to write; rustls
//! encrypts them into records, up to its buffer limit of records not yet
//! sent, and the socket takes what it can. Nothing tells the writer above
//! that the client has stopped reading until that limit is reached: a
//! WebSocket tunnel whose client stopped reading went on pulling frames off
//! the upstream until rustls held 64 KiB of them (the default limit, kept
//! for HTTP/1.1, see [`HTTP1_LIMIT`]), and an h2 connection its whole
//! 16 KiB.
//!
//! How: a write that finds records of an earlier one still unsent
//! (`wants_write`) runs with the limit at [`BACKED_UP_LIMIT`]. rustls then
//! takes nothing while that much is unsent: the writer accepts no bytes,
//! tokio-rustls' write finds the socket still full and returns `Pending`
//! (woken by the socket, no spin). Should the records drain during the
//! write, it takes the rest a small record at a time, each sent before the
//! next is taken. A write that finds nothing unsent runs with the usual
//! limit, so a client that reads fast gets large records and one `writev`
//! per write, and pays a check per write for this.
//!
//! What it cannot shrink is the write that finds the socket full: rustls
//! takes it whole before the socket pushes back, so a client that stops
//! reading still pins that one write's records (one splice read of a
//! tunnel; an HTTP/1.1 response's piece, whose writes never start on
//! unsent records: `server/h1` asks for the next piece only once a flush
//! has sent them, so HTTP/1.1 responses are left as they were). Of those
//! records, the one the socket cut keeps only its unsent tail, at its exact
//! size, under rustls (`record_tail`); the ones after it stay. Keeping the
//! limit low from a backed-up write until one went through whole, as first
//! tried, gave them nothing (50 KiB per slow HTTP/1.1 reader against 48,
//! one `bench/memory.sh` run each, with hyper's server then): a piece
//! rustls did not take whole waits beside its partly sent records, holding
//! its whole upstream buffer.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use super::Alpn;

/// rustls' buffer limit for a write that starts on unsent records: the
/// most it takes on top of what is still unsent, and the size of the
/// records it makes for the rest of that write.
const BACKED_UP_LIMIT: usize = 4 * 1024;

/// The limit for HTTP/1.1, rustls' own default. A response's next piece
/// is asked for only once the last one has left for the kernel
/// (`server/h1`), so rustls holds at most one write of it, and takes a
/// whole one at once: the piece's buffer is then freed instead of waiting,
/// half taken, beside its own encrypted copy.
const HTTP1_LIMIT: usize = 64 * 1024;

/// The limit for h2: one full TLS record. h2 writes frames for as long as
/// its writes are taken, and with rustls' 64 KiB a client that stopped
/// reading pinned that much on top of h2's send buffer; with one record a
/// write that finds it unsent waits for the socket instead (tokio-rustls
/// writes each record out before taking more, so a fast client loses
/// nothing but a few batched writes).
const H2_LIMIT: usize = 16 * 1024;

/// A server TLS stream whose rustls buffer limit drops to
/// [`BACKED_UP_LIMIT`] while its client's socket is backed up.
#[derive(Debug)]
pub(crate) struct BoundedBacklog<IO> {
    inner: TlsStream<IO>,
    /// The limit while the socket keeps up.
    open_limit: usize,
    /// Whether [`BACKED_UP_LIMIT`] is in force (saves setting the limit
    /// again on every write).
    backed_up: bool,
}

impl<IO> BoundedBacklog<IO> {
    /// Wraps `inner`, which negotiated `alpn`, with the usual limit of its
    /// protocol in force.
    pub(crate) fn new(mut inner: TlsStream<IO>, alpn: Alpn) -> Self {
        let open_limit = match alpn {
            Alpn::H2 => H2_LIMIT,
            Alpn::Http1 => HTTP1_LIMIT,
        };
        inner.get_mut().1.set_buffer_limit(Some(open_limit));
        BoundedBacklog {
            inner,
            open_limit,
            backed_up: false,
        }
    }

    /// Sets the limit for the write about to run: low while records of an
    /// earlier write are unsent.
    fn fit_limit(&mut self) {
        let conn = &mut self.inner.get_mut().1;
        let backed_up = conn.wants_write();
        if backed_up != self.backed_up {
            self.backed_up = backed_up;
            let limit = if backed_up {
                BACKED_UP_LIMIT
            } else {
                self.open_limit
            };
            conn.set_buffer_limit(Some(limit));
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for BoundedBacklog<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for BoundedBacklog<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.fit_limit();
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.fit_limit();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
