//! The short-lived process between an old bellhop and its successor, so that
//! the successor is the service manager's child, not the old process's.
//!
//! systemd takes `MAINPID=` from the old process, but it marks a main PID
//! that is not its own child as "alien" and never waits for an alien main
//! process at stop: `systemctl stop` after an upgrade sent SIGTERM and, in
//! the same instant, SIGKILL (seen under systemd 252: "Main process exited,
//! code=killed, status=9/KILL", the unit then failed, and open requests were
//! cut instead of finished). A process whose parent exits is adopted by
//! PID 1 (or the nearest subreaper): systemd. So the old process starts this
//! launcher (the new binary, with [`LAUNCH_ENV`] set), which starts the real
//! successor and reports on its standard output:
//!
//! ```text
//! old process                launcher                     successor
//! spawn (stdin, stdout piped) ──► spawn ───────────────────► connects to the
//!                                                           handover socket
//! ◄── `pid N`                                               ... Ready
//! close the launcher's stdin ──► exits: N is adopted by
//! wait for it to exit             systemd
//! MAINPID=N (now systemd's own child)
//!
//! if the successor exits first: ◄── `exit <how>`, and the launcher exits
//! ```
//!
//! The successor's standard output is the launcher's standard error (both go
//! to the journal under systemd): the launcher's own standard output is the
//! report pipe, which the old process stops reading.

use std::io::{Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;

/// Set by the old process on the launcher only.
pub(super) const LAUNCH_ENV: &str = "BELLHOP_UPGRADE_LAUNCH";

/// Set by the launcher on the successor: the old process's pid, which must
/// be the peer of the handover socket (the successor's parent is the
/// launcher, then systemd).
pub(super) const FROM_ENV: &str = "BELLHOP_UPGRADE_FROM";

/// One line the launcher writes on its standard output.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The successor's pid, once it is started.
    Started(u32),
    /// How the successor ended, before it was released.
    Exited(String),
}

impl Report {
    /// The line for this report, without its newline.
    fn line(&self) -> String {
        match self {
            Report::Started(pid) => format!("pid {pid}"),
            Report::Exited(how) => format!("exit {how}"),
        }
    }

    /// Parses a line written by [`Report::line`].
    pub(super) fn parse(line: &str) -> Option<Report> {
        if let Some(pid) = line.strip_prefix("pid ") {
            return pid.trim().parse().ok().map(Report::Started);
        }
        line.strip_prefix("exit ")
            .map(|how| Report::Exited(how.trim().to_string()))
    }
}

/// In a process started as the launcher of an upgrade: starts the successor,
/// reports as the module docs say, and returns the exit code. `None` in any
/// other process, which goes on with its command.
pub fn run_upgrade_launcher() -> Option<ExitCode> {
    std::env::var_os(LAUNCH_ENV)?;
    Some(match launch() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot start the new bellhop: {e}");
            ExitCode::FAILURE
        }
    })
}

/// What the launcher waits for after starting the successor.
enum Event {
    /// The old process closed the launcher's stdin: let go.
    Released,
    /// The successor ended first.
    Exited(std::io::Result<ExitStatus>),
}

fn launch() -> std::io::Result<()> {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .ok_or_else(|| std::io::Error::other("no program name in the arguments"))?;
    let output = std::io::stderr().as_fd().try_clone_to_owned()?;
    let mut successor = std::process::Command::new(program)
        .args(args)
        .env_remove(LAUNCH_ENV)
        .env(FROM_ENV, std::os::unix::process::parent_id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(output))
        .spawn()?;
    say(&Report::Started(successor.id()))?;

    let (events, event) = mpsc::channel();
    let released = events.clone();
    std::thread::spawn(move || {
        // Any end of stdin, error included, means the old process let go
        // (or is gone): either way the successor is on its own now.
        let _ = std::io::stdin().lock().read_to_end(&mut Vec::new());
        let _ = released.send(Event::Released);
    });
    std::thread::spawn(move || {
        let _ = events.send(Event::Exited(successor.wait()));
    });
    match event.recv() {
        Ok(Event::Exited(status)) => {
            let how = match status {
                Ok(status) => describe(status),
                Err(e) => format!("could not be waited for ({e})"),
            };
            say(&Report::Exited(how))
        }
        Ok(Event::Released) | Err(_) => Ok(()),
    }
}

fn say(report: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.line())?;
    out.flush()
}

/// Reads the next report from the launcher's output; `None` at its end.
pub(super) async fn next_report(
    reports: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Option<Report> {
    loop {
        match reports.next_line().await {
            Ok(Some(line)) => match Report::parse(&line) {
                Some(report) => return Some(report),
                // Not the launcher's (an older binary that ignored
                // LAUNCH_ENV and printed something): not a report.
                None => continue,
            },
            Ok(None) | Err(_) => return None,
        }
    }
}

/// `exited with status 1`, `was killed by signal 9`.
pub(super) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_through_their_lines() {
        for report in [
            Report::Started(4242),
            Report::Exited("exited with status 3".into()),
        ] {
            assert_eq!(Report::parse(&report.line()), Some(report));
        }
        assert_eq!(Report::parse("pid x"), None);
        assert_eq!(Report::parse("2026-12-02 INFO listening"), None);
    }
}
