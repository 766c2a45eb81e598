//! What following WebSocket frame headers costs the splice (`src/proxy/ws_frames.rs`).
//!
//! A standalone program, not a Cargo target (an example would make a release
//! build of the whole crate for a parser that needs nothing from it):
//!
//! ```sh
//! rustc -O --edition 2021 bench/ws_frames.rs -o /tmp/ws-frames && /tmp/ws-frames
//! ```
//!
//! For frames of several payload sizes (masked, as from a browser), 1 GiB is
//! passed in 16 KiB reads, as the splice reads: each read is copied into a
//! buffer (the work the splice does anyway, minus its two system calls),
//! then, in the second pass, also handed to the tracker. Printed: both
//! times, their ratio, and the tracker's cost per frame. The per-frame cost
//! is what matters: the tracker reads headers and skips payloads by count.
#![allow(dead_code)]

#[path = "../src/proxy/ws_frames.rs"]
mod ws_frames;

use std::hint::black_box;
use std::time::{Duration, Instant};

const TOTAL: usize = 256 << 20;
const PASSES: usize = 4;
const READ: usize = 16 * 1024;

/// Masked binary frames of `payload` bytes, `TOTAL` bytes of them.
fn stream(payload: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::with_capacity(TOTAL + 20);
    let mut frames = 0;
    while bytes.len() < TOTAL {
        bytes.push(0x82);
        match payload {
            0..=125 => bytes.push(0x80 | payload as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes.resize(bytes.len() + payload, 7);
        frames += 1;
    }
    (bytes, frames)
}

/// Copies `bytes` read by read, handing each read to the tracker if `track`.
fn pass(bytes: &[u8], track: bool) -> Duration {
    let mut buf = vec![0u8; READ];
    let mut tracker = ws_frames::FrameTracker::default();
    let start = Instant::now();
    for _ in 0..PASSES {
        for read in bytes.chunks(READ) {
            let buf = &mut buf[..read.len()];
            buf.copy_from_slice(black_box(read));
            if track {
                tracker.observe(black_box(buf));
            }
            black_box(&buf);
        }
    }
    black_box(tracker.at_boundary());
    start.elapsed()
}

fn main() {
    println!("payload  copy       copy+track  ratio  ns/frame");
    for payload in [16usize, 125, 1024, 64 * 1024] {
        let (bytes, frames) = stream(payload);
        let copy = pass(&bytes, false);
        let tracked = pass(&bytes, true);
        let extra = tracked.saturating_sub(copy).as_secs_f64() * 1e9;
        println!(
            "{payload:>7}  {:>9.1?}  {:>9.1?}  {:>5.2}  {:>8.1}",
            copy,
            tracked,
            tracked.as_secs_f64() / copy.as_secs_f64(),
            extra / (frames * PASSES) as f64
        );
    }
}
