//! Log output: human-readable text or one JSON object per line, on stderr.

use std::io::IsTerminal as _;
use std::str::FromStr;

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
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Lines queued for the writer thread before new ones are dropped (never
/// blocking a worker). About 4 MiB at worst with 256-byte lines.
const QUEUED_LINES: usize = 16 * 1024;

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
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUED_LINES)
        .lossy(true)
        .thread_name("bellhop-log")
        .finish(std::io::stderr());
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
