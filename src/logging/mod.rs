//! Log output: human-readable text or one JSON object per line, on stderr,
//! written by a thread of its own (see `batch`) so no worker waits for I/O;
//! and the sites' own access-log files (`access_files`), one such thread each.

mod access_files;
mod batch;

pub(crate) use access_files::{AccessLogFiles, AccessLogSink};

use std::io::IsTerminal as _;
use std::str::FromStr;

use anyhow::Context as _;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-23T17:00:00Z  INFO access: request method=GET ...`
    #[default]
    Text,
    /// `{"timestamp":...,"level":"INFO","fields":{...},"target":"access"}`
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`; use `text` or `json`"
            )),
        }
    }
}

/// Keeps the log writer thread alive; dropping it flushes what is queued.
/// Hold it until the process exits.
#[must_use = "logs stop when the guard is dropped"]
pub struct LogGuard(#[allow(dead_code)] batch::WriterThread);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Installs the global subscriber. `level` is `error`, `warn`, `info`, `debug`
/// or `trace`; dependencies log one level quieter than bellhop itself, except
/// at `trace`, so `debug` shows bellhop's decisions without hyper's internals.
pub fn init(level: LevelFilter, format: LogFormat) -> anyhow::Result<LogGuard> {
    let dependencies = match level {
        LevelFilter::TRACE => LevelFilter::TRACE,
        LevelFilter::DEBUG => LevelFilter::INFO,
        other => other.min(LevelFilter::WARN),
    };
    let filter = Targets::new()
        .with_default(dependencies)
        .with_target("bellhop", level)
        .with_target("access", level);
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) =
        batch::start(std::io::stderr()).context("cannot start the log writer thread")?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colour only for a person at a terminal, never in journald or files.
                    .with_ansi(ansi)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(writer),
            )
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(LogGuard(guard))
}
