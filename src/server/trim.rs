//! Giving freed memory back to the system once a burst of connections ends.
//!
//! glibc's malloc keeps what a thread freed in that thread's arena and only
//! returns the top of a heap, so after a flood or a slow-read attack RSS
//! stayed at its peak although nothing used it (19,000 idle TLS connections:
//! 234 MiB at the peak, still 75 MiB 30 s after they closed, idle 10.6 MiB).
//! `malloc_trim(0)` hands every whole free page of every arena back
//! (measured: 6,000 idle connections closed, RSS 84.8 MB, after the trim
//! 9.5 MB, idle 9.1 MB).
//!
//! Why this and not another allocator (bench/RESULTS.md, "Memory under
//! attack"): jemalloc with background purging returned memory too but idles
//! 2.2 MB higher and lands 21 % above its own idle; mimalloc 2.0 kept the
//! peak. What a trim cannot return are pages that hold a live allocation,
//! or a chunk freed into a thread's cache (glibc's tcache: up to 7 chunks of
//! each small size per thread, which the trim leaves alone). After 1,000
//! slow readers, 418 cached chunks held 370 pages (1.45 MiB) of the worker's
//! heap; the systemd unit therefore caps the cache at 2 per size and to
//! chunks of 256 B or less
//! (`GLIBC_TUNABLES=glibc.malloc.tcache_count=2:glibc.malloc.tcache_max=256`,
//! which glibc reads only from the environment at start), for under 1 % CPU
//! per request: with the count cap alone, the cached chunks of 224–1008 B
//! still pinned 620 KiB of the worker's heap after 1,000 slow readers of
//! 8 MiB, with both 312 KiB.
//!
//! When: every [`CHECK_EVERY`], if the most connections open since the last
//! look is at least [`MIN_CLOSED`] above those open now and at least twice
//! as many, a burst ended: trim, and trim again at the next look (a burst
//! that was still closing when the first trim ran frees the rest later). The
//! trim runs in this task, on the main thread's runtime (signals, reload,
//! certificates), which can wait the few milliseconds glibc takes to walk
//! the arenas; a blocking-pool thread would cost a thread start, its stack
//! and the code pages it touches, which is what a trim is there to give back.
//!
//! Start-up ends the same way: once, at the second look ([`CHECK_EVERY`]
//! after the server started), what start-up freed is trimmed and the code
//! it ran unmapped (`code_pages.rs`). By then the work start-up leaves for
//! later has run too (the certificate manager's first pass, the first
//! connections' one-time set-up): measured, unmapping only before the
//! listeners start left 1.9 MiB of code resident after the first requests,
//! unmapping after them too 1.3 MiB.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::limit::ConnCaps;

/// How often the connection count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Fewer closed connections than this are not worth a trim.
const MIN_CLOSED: usize = 64;

/// Gives memory back once start-up has settled and after each burst of
/// connections that ended; runs until dropped (aborted) with the server.
pub(super) async fn give_back(caps: Arc<ConnCaps>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick completes at once; the second is start-up's end.
    let mut looks = 0u32;
    let mut again = false;
    loop {
        tick.tick().await;
        looks = looks.saturating_add(1);
        let (peak, open) = caps.take_peak();
        let ended = burst_ended(peak, open);
        let settled = looks == 2;
        if ended || settled || std::mem::take(&mut again) {
            let released = release_free_memory();
            // And the code only start-up or the burst ran (an attack's
            // paths, mostly).
            let unmapped = super::code_pages::release();
            tracing::debug!(peak, open, settled, released, unmapped, "gave memory back");
        }
        again = ended;
    }
}

/// Whether going from `peak` connections to `open` ends a burst worth a trim.
fn burst_ended(peak: usize, open: usize) -> bool {
    peak >= open.saturating_add(MIN_CLOSED) && peak >= open.saturating_mul(2)
}

/// Returns the whole free pages of every malloc arena to the system; whether
/// any were. Only glibc needs (and has) this; elsewhere it does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and touches only the
    // allocator's own free lists, under the arena locks every malloc and
    // free take too; it may run at any time from any thread.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::burst_ended;

    #[test]
    fn a_burst_ends_when_most_of_it_closed() {
        assert!(burst_ended(1_000, 0));
        assert!(burst_ended(1_000, 500));
        assert!(!burst_ended(1_000, 501), "half still open");
        assert!(!burst_ended(63, 0), "too few to matter");
        assert!(!burst_ended(10, 10));
    }
}
