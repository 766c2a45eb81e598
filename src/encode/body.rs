//! A body compressed as it streams.
//!
//! The inner body is read as an `AsyncBufRead` ([`BodyReader`]) by
//! async-compression's encoder, whose output is cut into chunks of at most
//! [`CHUNK`] bytes. When the inner body has nothing ready (a proxied stream
//! waiting on its upstream), the encoder flushes what it has, so a slow stream
//! still reaches the client piece by piece instead of sitting in the compressor.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{GzipEncoder, ZstdEncoder};
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http_body::Body as _;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use crate::body::Body;
use crate::config::Encoding;

/// Largest compressed chunk handed to hyper at once.
const CHUNK: usize = 32 * 1024;

/// The compressor, by coding.
#[derive(Debug)]
enum Encoder {
    Gzip(GzipEncoder<BodyReader>),
    Zstd(ZstdEncoder<BodyReader>),
}

/// `inner` compressed with one coding.
#[derive(Debug)]
pub(crate) struct EncodedBody {
    encoder: Encoder,
    buf: BytesMut,
    done: bool,
}

impl EncodedBody {
    /// Compresses `inner` with `encoding` (library default levels: gzip 6, zstd 3).
    pub(crate) fn new(inner: Body, encoding: Encoding) -> Self {
        let reader = BodyReader {
            body: inner,
            chunk: Bytes::new(),
        };
        let encoder = match encoding {
            Encoding::Gzip => Encoder::Gzip(GzipEncoder::new(reader)),
            Encoding::Zstd => Encoder::Zstd(ZstdEncoder::new(reader)),
        };
        EncodedBody {
            encoder,
            buf: BytesMut::new(),
            done: false,
        }
    }

    /// Whether the compressed stream has ended.
    pub(crate) fn is_end_stream(&self) -> bool {
        self.done
    }

    /// The next compressed chunk, or `None` at the end.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.done {
            return Poll::Ready(None);
        }
        self.buf.reserve(CHUNK);
        let mut limited = (&mut self.buf).limit(CHUNK);
        let poll = match &mut self.encoder {
            Encoder::Gzip(e) => tokio_util::io::poll_read_buf(Pin::new(e), cx, &mut limited),
            Encoder::Zstd(e) => tokio_util::io::poll_read_buf(Pin::new(e), cx, &mut limited),
        };
        match poll {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Ok(0)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(self.buf.split().freeze()))),
        }
    }
}

/// A [`Body`]'s data frames as an `AsyncBufRead`; trailers are dropped (they
/// cannot follow a body whose framing changed anyway).
#[derive(Debug)]
pub(super) struct BodyReader {
    body: Body,
    chunk: Bytes,
}

impl AsyncBufRead for BodyReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.chunk.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => break,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::other(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.chunk = data;
                    }
                }
            }
        }
        Poll::Ready(Ok(&this.chunk))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.get_mut().chunk.advance(amt);
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = match self.as_mut().poll_fill_buf(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(available)) => available,
        };
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.consume(n);
        Poll::Ready(Ok(()))
    }
}
