//! bellhop's own log lines, kept in memory for the tests.
//!
//! Some facts a test must prove leave no other trace: that TLS-ALPN-01 was tried
//! (and failed) before HTTP-01 succeeded, or that the CA rejected a nonce and
//! bellhop repeated the request. And when an issuance fails, its log lines say
//! why, so failure messages include them.
//!
//! One subscriber per test process records every `bellhop` event at DEBUG
//! (every crate's with `BELLHOP_TEST_LOG=1`).
//! nextest runs each test in its own process; under `cargo test` tests share it,
//! so a test reads only lines logged since it called [`capture`] and filters them
//! by something only it uses (its names, its Pebble's port).
//! `BELLHOP_TEST_LOG=1` also prints everything (all crates) to the test output.

use std::io::Write;
use std::sync::{Mutex, Once, PoisonError};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The captured log from the moment [`capture`] was called.
#[derive(Debug, Clone, Copy)]
pub struct Since(usize);

/// Starts capturing (once per process) and marks the current end of the log.
pub fn capture() -> Since {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let echo = std::env::var_os("BELLHOP_TEST_LOG").is_some();
        // One filter for the whole subscriber, not one per layer: a
        // per-layer filter keeps its verdict in a thread-local until the
        // next event, so an `enabled!` query that no event follows (bellhop
        // asks one for the access log on every request) makes it drop the
        // thread's next event (tokio-rs/tracing#2519).
        let filter = if echo {
            Targets::new().with_default(LevelFilter::DEBUG)
        } else {
            Targets::new().with_target("bellhop", LevelFilter::DEBUG)
        };
        let memory = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Memory);
        let echo = echo.then(|| tracing_subscriber::fmt::layer().with_test_writer());
        // Another subscriber already set (by the test binary) only means no capture.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(memory)
            .with(echo)
            .try_init();
    });
    Since(lines().len())
}

impl Since {
    /// Lines logged since the mark that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        lines()
            .iter()
            .skip(self.0)
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// [`lines_with`](Self::lines_with), one per line, for failure messages.
    pub fn show(&self, needle: &str) -> String {
        let lines = self.lines_with(needle);
        if lines.is_empty() {
            format!("(bellhop logged nothing about {needle})\n")
        } else {
            format!(
                "--- bellhop log, lines with {needle} ---\n{}\n",
                lines.join("\n")
            )
        }
    }
}

/// Every captured line with `needle`, for failure messages (under nextest the
/// process ran only the failing test, so nothing else is mixed in).
pub fn show(needle: &str) -> String {
    Since(0).show(needle)
}

fn lines() -> std::sync::MutexGuard<'static, Vec<String>> {
    LINES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fmt layer's writer: every event arrives as one complete write.
struct Memory;

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        lines().extend(text.lines().map(str::to_string));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
