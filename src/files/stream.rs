//! A file (or a byte range of it) as a response body, read one chunk at a time.
//!
//! Memory per download is one chunk, whatever the file size: the next chunk is
//! read only when hyper asks for it, i.e. when the client has taken the last one.
//! Each chunk is one positioned read (`pread`) on tokio's blocking pool, straight
//! into the buffer that becomes the frame; the body itself is a few words, so
//! [`crate::body::Body`] stays small without boxing it.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::task::JoinHandle;

/// Bytes read from the file per chunk.
pub(super) const CHUNK: usize = 64 * 1024;

/// The body of a `files` response: `remaining` bytes of `file` from `offset`.
#[derive(Debug)]
pub(crate) struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    /// The read in progress, if any.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    /// Streams `len` bytes of `file`, starting at byte `offset`.
    pub(crate) fn new(file: File, offset: u64, len: u64) -> Self {
        FileBody {
            file: Arc::new(file),
            offset,
            remaining: len,
            reading: None,
        }
    }

    /// Bytes not yet sent.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Whether every byte has been sent.
    pub(crate) fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    /// The next chunk, or `None` at the end. A file that shrank while being sent
    /// is an error: the Content-Length already promised more.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let reading = self.reading.get_or_insert_with(|| {
            let want = usize::try_from(self.remaining).map_or(CHUNK, |r| r.min(CHUNK));
            let (file, offset) = (self.file.clone(), self.offset);
            tokio::task::spawn_blocking(move || read_chunk(&file, offset, want))
        });
        let result = ready!(Pin::new(reading).poll(cx));
        self.reading = None;
        let chunk = match result {
            Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
            Ok(Ok(_)) => {
                return self.fail(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being sent",
                ))
            }
            Ok(Err(e)) => return self.fail(e),
            Err(join) => return self.fail(io::Error::other(join)),
        };
        self.offset += chunk.len() as u64;
        self.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }

    /// Ends the body with an error.
    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Bytes>>> {
        self.remaining = 0;
        Poll::Ready(Some(Err(e)))
    }
}

/// Reads up to `want` bytes at `offset`; fewer only at the end of the file.
fn read_chunk(file: &File, offset: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}
