//! A body compressed as it streams.
//!
//! gzip runs on a pooled deflate state ([`Gzip`]) fed frame by frame
//! ([`GzipBody`]); zstd reads the inner body as an `AsyncBufRead`
//! ([`BodyReader`]) through async-compression's encoder. Either way output is
//! handed on in chunks of at most about [`CHUNK`] bytes, and when the inner
//! body has nothing ready (a proxied stream waiting on its upstream), what has
//! been compressed so far is flushed, so a slow stream still reaches the client
//! piece by piece instead of sitting in the compressor.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::ZstdEncoder;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use flate2::FlushCompress;
use http_body::Body as _;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use super::cache::{self, Source};
use super::gzip::Gzip;
use crate::body::Body;
use crate::config::Encoding;

/// Largest compressed chunk handed to hyper at once.
const CHUNK: usize = 32 * 1024;

/// The compressor, by coding.
#[derive(Debug)]
enum Encoder {
    Gzip(GzipBody),
    Zstd(ZstdEncoder<BodyReader>),
}

/// `inner` compressed with one coding.
#[derive(Debug)]
pub(crate) struct EncodedBody {
    encoder: Encoder,
    buf: BytesMut,
    done: bool,
    /// Collects the output of a static file for the cache, when it may be kept.
    keep: Option<Keep>,
}

/// The compressed chunks of a file so far, stored in the [`cache`] once the
/// whole body has been produced without error.
#[derive(Debug)]
struct Keep {
    source: Source,
    encoding: Encoding,
    chunks: Vec<Bytes>,
}

impl EncodedBody {
    /// Compresses `inner` with `encoding` (gzip level 6, zstd level 3).
    pub(crate) fn new(inner: Body, encoding: Encoding) -> Self {
        let encoder = match encoding {
            Encoding::Gzip => Encoder::Gzip(GzipBody {
                inner,
                gzip: Gzip::new(),
                unflushed: false,
                finished: false,
            }),
            Encoding::Zstd => Encoder::Zstd(ZstdEncoder::new(BodyReader {
                body: inner,
                chunk: Bytes::new(),
            })),
        };
        EncodedBody {
            encoder,
            buf: BytesMut::new(),
            done: false,
            keep: None,
        }
    }

    /// The same, and once the body is complete its compressed form is kept in
    /// the [`cache`] for `source`.
    pub(crate) fn kept(inner: Body, encoding: Encoding, source: Source) -> Self {
        let mut body = Self::new(inner, encoding);
        body.keep = Some(Keep {
            source,
            encoding,
            chunks: Vec::new(),
        });
        body
    }

    /// Whether the compressed stream has ended.
    pub(crate) fn is_end_stream(&self) -> bool {
        self.done
    }

    /// The next compressed chunk, or `None` at the end.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let poll = self.poll_compressed(cx);
        if self.keep.is_some() {
            match &poll {
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(keep) = self.keep.as_mut() {
                        keep.chunks.push(chunk.clone());
                    }
                }
                Poll::Ready(None) => {
                    if let Some(keep) = self.keep.take() {
                        cache::store(keep.source, keep.encoding, concat(&keep.chunks));
                    }
                }
                Poll::Ready(Some(Err(_))) => self.keep = None,
                Poll::Pending => {}
            }
        }
        poll
    }

    fn poll_compressed(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let e = match &mut self.encoder {
            Encoder::Gzip(gzip) => {
                let poll = gzip.poll_chunk(cx);
                if matches!(poll, Poll::Ready(None | Some(Err(_)))) {
                    self.done = true;
                }
                return poll;
            }
            Encoder::Zstd(e) => e,
        };
        self.buf.reserve(CHUNK);
        let mut limited = (&mut self.buf).limit(CHUNK);
        let poll = tokio_util::io::poll_read_buf(Pin::new(e), cx, &mut limited);
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

/// One buffer of exactly the chunks' size: a chunk may sit in a larger
/// allocation, which the cache's budget would not see.
fn concat(chunks: &[Bytes]) -> Bytes {
    let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for chunk in chunks {
        all.extend_from_slice(chunk);
    }
    all.freeze()
}

/// gzip of a [`Body`], frame by frame.
#[derive(Debug)]
struct GzipBody {
    inner: Body,
    gzip: Gzip,
    /// Data went in since the last flush.
    unflushed: bool,
    /// The trailer is out.
    finished: bool,
}

impl GzipBody {
    /// Compresses what the inner body has ready: returns a chunk once about
    /// [`CHUNK`] bytes are out, the inner body waits (flushed first), or it
    /// ends (the gzip trailer written); `None` after the end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let mut out = Vec::new();
        loop {
            let step = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending if !self.unflushed => None,
                Poll::Pending => {
                    self.unflushed = false;
                    Some(self.gzip.compress(&[], FlushCompress::Sync, &mut out))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => {
                        self.unflushed = true;
                        if out.capacity() == 0 {
                            out.reserve(data.len() / 2 + 64);
                        }
                        if let Err(e) = self.gzip.compress(&data, FlushCompress::None, &mut out) {
                            return Poll::Ready(Some(Err(e)));
                        }
                        if out.len() < CHUNK {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                    // Empty data and trailers: nothing to compress.
                    _ => continue,
                },
                Poll::Ready(None) => {
                    self.finished = true;
                    if let Err(e) = self.gzip.compress(&[], FlushCompress::Finish, &mut out) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
            };
            return match step {
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                _ if out.is_empty() => Poll::Pending,
                _ => Poll::Ready(Some(Ok(Bytes::from(out)))),
            };
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
