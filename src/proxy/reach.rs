//! Reaching an upstream: a pooled connection or a new one, trying the next
//! upstream when one cannot be reached, and waiting through a restart.
//!
//! ```text
//! round: each upstream from the round-robin start (those in their cool-down
//!        skipped, unless all are) ─► pooled connection, else connect
//!        ─► first success wins
//! all failed, at least one refused or its socket missing, and `upstream-wait`
//!        not used up ─► sleep (50 ms, doubling to 500 ms) ─► next round
//! else   ─► the last failure (502)
//! ```
//!
//! A refused connect means nothing was sent, so waiting is safe for any
//! method; the request holds only its head meanwhile (its body is not read
//! until a connection exists). Every outcome feeds the upstream's passive
//! health record (`health`), and while waiting a request skips its attempt
//! when the upstream refused anyone within the last 50 ms, so the probes a
//! restarting backend sees do not grow with the number of waiting requests.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use super::conn::{Home, OpenError, UpstreamConn};
use super::health::FAILURES_BEFORE_COOL_DOWN;
use super::pool;
use super::send::SendSettings;
use super::upstream::UpstreamTarget;

/// First pause between rounds of connect attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause: a restarted backend is found within half a second.
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// Where a connection may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// This thread's pool first, else a new connection that returns to it.
    PoolOrNew,
    /// A new connection; `reuse` says whether it returns to the pool after
    /// the exchange (a replayed request's connection serves that one only).
    New { reuse: bool },
}

/// A connection ready for a request.
#[derive(Debug)]
pub(super) enum Ready {
    /// Taken from the pool: it may turn out to be stale.
    Pooled(Box<UpstreamConn>),
    /// Just connected.
    New(Box<UpstreamConn>),
}

/// No upstream could be reached; the last one tried and why.
#[derive(Debug)]
pub(super) struct Unreached<'a> {
    pub upstream: &'a UpstreamTarget,
    pub error: OpenError,
}

/// A connection to one of `upstreams`, trying them from `start` on.
/// `upstreams` is never empty (`Proxy::new` refuses that).
pub(super) async fn reach<'a>(
    upstreams: &'a [UpstreamTarget],
    start: usize,
    settings: SendSettings,
    source: Source,
) -> Result<(&'a UpstreamTarget, Ready), Unreached<'a>> {
    let n = upstreams.len();
    let mut deadline = None;
    let mut pause = FIRST_PAUSE;
    loop {
        let mut last = None;
        let mut restarting = false;
        for k in 0..n {
            let upstream = &upstreams[(start + k) % n];
            if n > 1 && upstream.health.cooling() && !all_cooling(upstreams) {
                continue;
            }
            if source == Source::PoolOrNew {
                if let Some(conn) = pool::checkout(upstream.key) {
                    return Ok((upstream, Ready::Pooled(conn)));
                }
            }
            if deadline.is_some() && upstream.health.failed_within(FIRST_PAUSE) {
                // Waiting, and it refused someone a moment ago: no new probe.
                restarting = true;
                if last.is_none() {
                    let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
                    last = Some(Unreached {
                        upstream,
                        error: OpenError::Connect(refused),
                    });
                }
                continue;
            }
            let reuse = matches!(source, Source::PoolOrNew | Source::New { reuse: true });
            match open(upstream, settings, reuse).await {
                Ok(conn) => return Ok((upstream, Ready::New(conn))),
                Err(error) => {
                    restarting |= is_restarting(&error);
                    last = Some(Unreached { upstream, error });
                }
            }
        }
        let Some(last) = last else {
            // Unreachable: with every upstream cooling none is skipped.
            return Err(Unreached {
                upstream: &upstreams[start % n],
                error: OpenError::Connect(io::Error::other("no upstream to try")),
            });
        };
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + settings.wait);
        let now = Instant::now();
        if !restarting || now >= deadline {
            return Err(last);
        }
        tracing::debug!(upstream = %last.upstream.label, left = ?(deadline - now), "upstream refuses connections; waiting for it");
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// Whether every upstream is in its cool-down (then none is skipped).
fn all_cooling(upstreams: &[UpstreamTarget]) -> bool {
    upstreams.iter().all(|u| u.health.cooling())
}

/// Whether a failed connect looks like a backend that is restarting: nobody
/// listens on the port, the unix socket is gone or refuses, or the listener
/// closed with this connect still in its queue (a reset before the
/// connection was accepted: uvicorn shutting down, seen in CI). A timeout is
/// not: the host is there but not answering, and waiting longer will not help.
fn is_restarting(error: &OpenError) -> bool {
    matches!(error, OpenError::Connect(e)
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotFound
    ))
}

/// Connects to `upstream`, recording the outcome in its health record.
pub(super) async fn open(
    upstream: &UpstreamTarget,
    settings: SendSettings,
    reuse: bool,
) -> Result<Box<UpstreamConn>, OpenError> {
    let home = reuse.then_some(Home {
        key: upstream.key,
        idle_timeout: settings.idle_timeout,
    });
    match UpstreamConn::open(&upstream.target, settings.connect_timeout, home).await {
        Ok(conn) => {
            let streak = upstream.health.succeeded();
            if streak >= FAILURES_BEFORE_COOL_DOWN {
                tracing::info!(upstream = %upstream.label, failures = streak, "upstream accepts connections again");
            }
            Ok(conn)
        }
        Err(error) => {
            upstream.failures.inc();
            let streak = upstream.health.failed();
            if streak == FAILURES_BEFORE_COOL_DOWN {
                tracing::warn!(upstream = %upstream.label, failures = streak, cool_down = ?super::health::COOL_DOWN, "connects to upstream keep failing; other upstreams go first meanwhile");
            }
            Err(error)
        }
    }
}
