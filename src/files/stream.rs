//! A file (or a byte range of it) as a response body, read one chunk at a time.
//!
//! Memory per download is one chunk, whatever the file size: the next chunk is
//! read only when hyper asks for it, i.e. when the client has taken the last one.

use std::io;
use std::task::{Context, Poll};

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::fs::File;

/// Bytes read from the file per chunk.
pub const CHUNK: usize = 64 * 1024;

/// The body of a `files` response: `remaining` bytes from the file's current position.
#[derive(Debug)]
pub struct FileBody {
    file: File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    /// Streams `len` bytes from `file`, which is already positioned at the start.
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }

    /// Bytes not yet sent.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether every byte has been sent.
    pub fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    /// The next chunk, or `None` at the end. A file that shrank while being sent
    /// is an error: the Content-Length already promised more.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining).map_or(CHUNK, |r| r.min(CHUNK));
        if self.buf.capacity() < want {
            self.buf.reserve(want);
        }
        let mut limited = (&mut self.buf).limit(want);
        let n = match tokio_util::io::poll_read_buf(
            std::pin::Pin::new(&mut self.file),
            cx,
            &mut limited,
        ) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.remaining = 0;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Ok(n)) => n,
        };
        if n == 0 {
            self.remaining = 0;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being sent",
            ))));
        }
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(self.buf.split().freeze())))
    }
}
