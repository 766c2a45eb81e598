//! A deterministic byte pattern for large bodies: byte `i` is `i % 251`.
//!
//! Senders produce it without allocating per chunk (slices of one shared buffer);
//! receivers check every byte with `memcmp` against the same buffer, so a 1 GiB
//! transfer is verified end to end at memory speed, even in a debug build.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Pattern period: a prime, so it never lines up with power-of-two chunk sizes.
const PERIOD: usize = 251;
/// Largest chunk a [`PatternBody`] yields.
pub const CHUNK: usize = 64 * 1024;

/// `PERIOD + CHUNK` bytes of the pattern, so any chunk at any offset is one slice.
static BUF: LazyLock<Bytes> = LazyLock::new(|| {
    (0..PERIOD + CHUNK)
        .map(|i| (i % PERIOD) as u8)
        .collect::<Vec<u8>>()
        .into()
});

/// The `len` pattern bytes starting at absolute offset `offset` (`len <= CHUNK`).
pub fn slice(offset: u64, len: usize) -> Bytes {
    assert!(len <= CHUNK);
    let start = (offset % PERIOD as u64) as usize;
    BUF.slice(start..start + len)
}

/// Checks received bytes against the pattern, chunk by chunk, in order.
#[derive(Debug, Default)]
pub struct Verifier {
    /// Bytes seen so far.
    pub len: u64,
    /// False once any byte differed from the pattern.
    pub ok: bool,
}

impl Verifier {
    /// A verifier at offset 0.
    pub fn new() -> Self {
        Verifier { len: 0, ok: true }
    }

    /// Feeds the next received bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = data.len().min(CHUNK);
            if self.ok && data[..n] != slice(self.len, n)[..] {
                self.ok = false;
            }
            self.len += n as u64;
            data = &data[n..];
        }
    }
}

/// A request or response body of `len` pattern bytes, produced lazily.
#[derive(Debug)]
pub struct PatternBody {
    sent: u64,
    len: u64,
}

impl PatternBody {
    /// A body of exactly `len` bytes.
    pub fn new(len: u64) -> Self {
        PatternBody { sent: 0, len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let left = self.len - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let n = left.min(CHUNK as u64) as usize;
        let chunk = slice(self.sent, n);
        self.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}

#[test]
fn pattern_slices_verify_and_corruption_is_caught() {
    let mut v = Verifier::new();
    let mut off = 0u64;
    for n in [1usize, 250, 251, 252, CHUNK, 7] {
        v.update(&slice(off, n));
        off += n as u64;
    }
    assert!(v.ok);
    assert_eq!(v.len, off);
    let mut bad = slice(off, 100).to_vec();
    bad[42] ^= 1;
    v.update(&bad);
    assert!(!v.ok);
}
