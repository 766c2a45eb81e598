//! What became of each reload, reported by the running bellhop to `bellhop
//! reload`, which runs as another process.
//!
//! SIGHUP carries no answer, so the running process keeps a small status file
//! next to its pid file (`bellhop.pid` → `bellhop.pid.reload`):
//!
//! ```text
//! 3            reloads started since this process began (the generation)
//! failed       ready | applying | applied | failed
//! cannot …     the summary or the reason, any number of lines
//! ```
//!
//! The command reads the generation, sends SIGHUP, and waits for a later
//! generation to be `applied` or `failed`. A reload already running when the
//! signal arrives finishes first and the signal then starts another, so the
//! outcome waited for is always that of a reload that read the file after the
//! command validated it.
//!
//! Why a file next to the pid file: the command already finds the process
//! through the pid file, so both sides know the path without configuration; it
//! works without the admin listener; and the state dir could not serve, since
//! the config being reloaded may name another one (`state-dir` only changes on
//! restart). The file is replaced atomically (written aside, then renamed), so
//! a reader sees one whole report.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where a reload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// No reload yet since the process started.
    Ready,
    /// A reload is being applied.
    Applying,
    /// Applied; what changed.
    Applied(String),
    /// Not applied, the previous config still serves; why.
    Failed(String),
}

/// One reading of the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Reloads started since the process began.
    pub generation: u64,
    /// The latest one's state.
    pub outcome: ReloadOutcome,
}

/// The status file of a running bellhop (the writing side).
#[derive(Debug)]
pub struct ReloadStatus {
    path: PathBuf,
    generation: AtomicU64,
}

/// The status file that belongs to `pid_file`.
pub fn reload_status_path(pid_file: &Path) -> PathBuf {
    let mut path = pid_file.as_os_str().to_owned();
    path.push(".reload");
    PathBuf::from(path)
}

impl ReloadStatus {
    /// Starts the file for a process that just wrote `pid_file`: generation
    /// 0, `ready` (replacing what an earlier process left).
    pub fn start(pid_file: &Path) -> io::Result<ReloadStatus> {
        let status = ReloadStatus {
            path: reload_status_path(pid_file),
            generation: AtomicU64::new(0),
        };
        status.write(0, "ready", "")?;
        Ok(status)
    }

    /// A reload begins: the next generation, `applying`.
    pub fn applying(&self) -> io::Result<()> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.write(generation, "applying", "")
    }

    /// The current reload ended: `applied` with its summary, or `failed`
    /// with the reason.
    pub fn finished(&self, result: Result<&str, &str>) -> io::Result<()> {
        let generation = self.generation.load(Ordering::SeqCst);
        match result {
            Ok(summary) => self.write(generation, "applied", summary),
            Err(reason) => self.write(generation, "failed", reason),
        }
    }

    /// Removes the file (the process is exiting).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    fn write(&self, generation: u64, state: &str, text: &str) -> io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        std::fs::write(&tmp, format!("{generation}\n{state}\n{text}"))?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Reads the status file of the bellhop that wrote `pid_file`; `None` when
/// there is none (a bellhop that keeps no status, or not running).
pub fn read_reload_status(pid_file: &Path) -> io::Result<Option<ReloadReport>> {
    let text = match std::fs::read_to_string(reload_status_path(pid_file)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = text.splitn(3, '\n');
    let generation = parts.next().and_then(|g| g.trim().parse().ok());
    let state = parts.next().unwrap_or("");
    let message = parts.next().unwrap_or("").to_string();
    let outcome = match state {
        "ready" => Some(ReloadOutcome::Ready),
        "applying" => Some(ReloadOutcome::Applying),
        "applied" => Some(ReloadOutcome::Applied(message)),
        "failed" => Some(ReloadOutcome::Failed(message)),
        _ => None,
    };
    match (generation, outcome) {
        (Some(generation), Some(outcome)) => Ok(Some(ReloadReport {
            generation,
            outcome,
        })),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a reload status",
                reload_status_path(pid_file).display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reload_is_a_generation_with_its_outcome() {
        let dir = std::env::temp_dir().join(format!("bellhop-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("bellhop.pid");
        let status = ReloadStatus::start(&pid_file).unwrap();
        let read = || read_reload_status(&pid_file).unwrap().unwrap();
        assert_eq!(read().generation, 0);
        assert_eq!(read().outcome, ReloadOutcome::Ready);
        status.applying().unwrap();
        assert_eq!(read().outcome, ReloadOutcome::Applying);
        status.finished(Err("cannot listen\non port 80")).unwrap();
        assert_eq!(read().generation, 1);
        assert_eq!(
            read().outcome,
            ReloadOutcome::Failed("cannot listen\non port 80".into())
        );
        status.applying().unwrap();
        status.finished(Ok("1 site")).unwrap();
        assert_eq!(read().generation, 2);
        assert_eq!(read().outcome, ReloadOutcome::Applied("1 site".into()));
        status.remove();
        assert_eq!(read_reload_status(&pid_file).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
