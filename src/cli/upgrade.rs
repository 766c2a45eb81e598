//! `bellhop upgrade` and SIGUSR2: replace the running process with the
//! binary on disk now, without dropping a connection.
//!
//! ```text
//! bellhop upgrade --pid-file P          bellhop run --pid-file P (old)
//!   remove P.upgrade, SIGUSR2  ───────►   UpgradeHandle::upgrade(the binary
//!                                         at its path now, same arguments)
//!   wait for P.upgrade         ◄───────   write P.upgrade: `ready PID` or
//!   print it, exit 0 or 1                 `failed` and the reason
//! ```
//!
//! The running process learns nothing but the signal, so the outcome goes
//! back through a file beside the pid file, written atomically.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bellhop::UpgradeHandle;

use super::pid_file;

/// How long `bellhop upgrade` waits for the outcome: longer than the
/// running process waits for the new one to serve (60 s), so its verdict,
/// timeout included, always arrives first.
const OUTCOME_WAIT: Duration = Duration::from_secs(90);

/// How often `bellhop upgrade` looks for the outcome file.
const POLL: Duration = Duration::from_millis(50);

/// The file beside the pid file where the running process writes the outcome.
fn outcome_file(pid_file: &Path) -> PathBuf {
    let mut path = pid_file.as_os_str().to_owned();
    path.push(".upgrade");
    PathBuf::from(path)
}

/// `bellhop upgrade`: signals the process in `pid_file` and reports how the
/// upgrade went: exit 0 once the new process serves, 1 with the reason if
/// it could not start (the old one then serves on).
pub fn command(pid_file: &Path) -> ExitCode {
    match request(pid_file) {
        Ok((old, new)) => {
            println!(
                "upgraded: bellhop {new} serves; {old} stopped accepting and exits when its open connections end (or at drain-timeout)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sends SIGUSR2 and waits for the outcome file: `(old pid, new pid)`.
fn request(pid_file: &Path) -> anyhow::Result<(u32, u32)> {
    let pid = pid_file::read(pid_file)?;
    let outcome = outcome_file(pid_file);
    match std::fs::remove_file(&outcome) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove the old {}", outcome.display()))
        }
        _ => {}
    }
    pid_file::signal(pid, rustix::process::Signal::USR2, pid_file)?;
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&outcome) {
            let _ = std::fs::remove_file(&outcome);
            let (verdict, reason) = text.split_once('\n').unwrap_or((text.as_str(), ""));
            return match verdict.strip_prefix("ready ").map(str::parse) {
                Some(Ok(new)) => Ok((pid, new)),
                _ => Err(anyhow::anyhow!(
                    "the upgrade failed; bellhop {pid} serves on unchanged:\n{}",
                    reason.trim_end()
                )),
            };
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            anyhow::bail!("bellhop {pid} exited during the upgrade (see its log)");
        }
        if start.elapsed() > OUTCOME_WAIT {
            anyhow::bail!(
                "no word from bellhop {pid} within {} s (see its log)",
                OUTCOME_WAIT.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// SIGUSR2 in the running process: upgrades to the binary on disk, logs the
/// outcome and, with a pid file, writes it for `bellhop upgrade`.
pub async fn on_signal(upgrade: UpgradeHandle, pid_file: Option<PathBuf>) {
    tracing::info!("SIGUSR2 received: upgrading to the binary on disk");
    let result = match new_binary() {
        Ok(command) => upgrade.upgrade(command).await,
        Err(e) => Err(e),
    };
    let text = match &result {
        Ok(pid) => {
            tracing::info!(new_pid = pid, "upgrade done: draining, then exiting");
            format!("ready {pid}\n")
        }
        Err(e) => {
            tracing::error!("upgrade failed, still serving:\n{e:#}");
            format!("failed\n{e:#}\n")
        }
    };
    if let Some(pid_file) = pid_file {
        let path = outcome_file(&pid_file);
        if let Err(e) = pid_file::write_atomically(&path, &text) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the upgrade outcome");
        }
    }
}

/// The binary at this process's path as it is on disk now (a package
/// upgrade replaced the file: /proc/self/exe then names the old, deleted
/// one), run with this process's own arguments; the new process reads its
/// config afresh.
fn new_binary() -> anyhow::Result<std::process::Command> {
    let exe = std::env::current_exe().context("cannot tell where this binary is")?;
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    };
    let mut command = std::process::Command::new(exe);
    command.args(std::env::args_os().skip(1));
    Ok(command)
}
