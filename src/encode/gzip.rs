//! gzip with deflate states reused across responses.
//!
//! A deflate state is a few hundred KiB of windows and hash tables. Making a
//! fresh one per response (what a new encoder does) cost more than compressing
//! a small stylesheet: allocating and clearing it dominated the profile of
//! small gzip responses (bench/RESULTS.md, "gzip of small static files").
//! So each thread keeps a few finished states and resets them for the next
//! response, which clears only the hash heads. The deflate backend is zlib-rs
//! (flate2's `zlib-rs` feature), the fastest pure-Rust one.

use std::cell::RefCell;
use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

/// zlib's default level: the ratio users expect from gzip, and what the
/// previous encoder used, so responses did not grow.
const LEVEL: u32 = 6;

/// Full 32 KiB window (the format's maximum).
const WINDOW_BITS: u8 = 15;

/// Finished states kept per thread: enough for the responses a worker
/// compresses at once in steady state; beyond that they are freed.
const POOL_MAX: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Compress>> = const { RefCell::new(Vec::new()) };
}

/// One gzip member being written: header, deflate data and trailer come out
/// of [`Gzip::compress`] as input arrives.
pub(super) struct Gzip {
    /// `None` only while being dropped.
    state: Option<Compress>,
}

impl std::fmt::Debug for Gzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzip").finish_non_exhaustive()
    }
}

impl Gzip {
    /// A gzip stream, on a pooled state when this thread has one.
    pub(super) fn new() -> Self {
        let pooled = POOL.try_with(|pool| pool.borrow_mut().pop()).ok().flatten();
        let state =
            pooled.unwrap_or_else(|| Compress::new_gzip(Compression::new(LEVEL), WINDOW_BITS));
        Gzip { state: Some(state) }
    }

    /// Compresses all of `input` into `out` (appended). `flush` is
    /// `Sync` to push out everything so far, `Finish` to end the member
    /// (trailer included); `None` lets deflate keep data for a better match.
    pub(super) fn compress(
        &mut self,
        mut input: &[u8],
        flush: FlushCompress,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let Some(state) = self.state.as_mut() else {
            return Err(io::Error::other("gzip state gone"));
        };
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(4096));
            }
            let before_in = state.total_in();
            let before_out = state.total_out();
            let status = state
                .compress_vec(input, out, flush)
                .map_err(io::Error::other)?;
            let consumed = usize::try_from(state.total_in() - before_in).unwrap_or(input.len());
            input = &input[consumed.min(input.len())..];
            let produced = state.total_out() != before_out;
            let room_left = out.capacity() > out.len();
            match (status, flush) {
                (Status::StreamEnd, _) => return Ok(()),
                // Everything taken and, for a flush, deflate had room to write
                // all it holds (it stops early only when the output is full).
                (_, FlushCompress::None) if input.is_empty() => return Ok(()),
                (_, FlushCompress::Sync) if input.is_empty() && room_left => return Ok(()),
                (Status::BufError, _) if !produced && input.is_empty() && room_left => {
                    return Ok(())
                }
                _ => {}
            }
        }
    }
}

impl Drop for Gzip {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        state.reset();
        // During thread teardown the pool may be gone; the state is then freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_MAX {
                pool.push(state);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn members_round_trip_and_states_are_reused() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!(".c{} {{ margin: {}px }}\n", i % 977, i % 13).into_bytes())
            .collect();
        for _ in 0..3 {
            let mut gz = Gzip::new();
            let mut out = Vec::new();
            for piece in text.chunks(7000) {
                gz.compress(piece, FlushCompress::None, &mut out).unwrap();
            }
            // A sync flush mid-stream makes everything so far decodable.
            gz.compress(b"tail", FlushCompress::Sync, &mut out).unwrap();
            gz.compress(&[], FlushCompress::Finish, &mut out).unwrap();
            let mut expected = text.clone();
            expected.extend_from_slice(b"tail");
            assert_eq!(gunzip(&out), expected);
            assert!(out.len() < text.len() / 4);
        }
        assert!(POOL.with(|p| p.borrow().len()) >= 1);
        // An empty body is still a valid gzip member.
        let mut out = Vec::new();
        Gzip::new()
            .compress(&[], FlushCompress::Finish, &mut out)
            .unwrap();
        assert!(gunzip(&out).is_empty());
    }
}
