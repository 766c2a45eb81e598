//! `--pid-file`: written by `bellhop run`, read by `bellhop reload` and
//! `bellhop upgrade` to find the running process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use bellhop::ReloadStatus;
use rustix::process::Signal;

/// Where `bellhop upgrade` looks when `--pid-file` is not given: the path the
/// packaged systemd unit passes to `bellhop run` (its `RuntimeDirectory`).
pub const DEFAULT: &str = "/run/bellhop/bellhop.pid";

/// Holds the process id while bellhop serves; removed on drop unless another
/// process (the new one after an upgrade) has written its own id there.
pub struct PidFile {
    path: PathBuf,
    pid: String,
    /// The reload status next to it (see `bellhop::ReloadStatus`).
    status: Arc<ReloadStatus>,
}

impl PidFile {
    /// Writes the file atomically (temporary file, then rename).
    pub fn write(path: PathBuf) -> anyhow::Result<PidFile> {
        let pid = std::process::id().to_string();
        write_atomically(&path, &format!("{pid}\n"))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        let status = ReloadStatus::start(&path).with_context(|| {
            format!("cannot write the reload status next to {}", path.display())
        })?;
        Ok(PidFile {
            path,
            pid,
            status: Arc::new(status),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The reload status written next to it.
    pub fn status(&self) -> Arc<ReloadStatus> {
        self.status.clone()
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == self.pid);
        if ours {
            let _ = std::fs::remove_file(&self.path);
            self.status.remove();
        }
    }
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// reader sees the old content or the new, never a part.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path))
}

/// The process id in `pid_file`.
pub fn read(pid_file: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(pid_file).with_context(|| {
        format!(
            "cannot read the pid file {} (is bellhop running with --pid-file?)",
            pid_file.display()
        )
    })?;
    text.trim()
        .parse()
        .ok()
        .filter(|&p| p > 1)
        .with_context(|| format!("{} does not hold a process id", pid_file.display()))
}

/// Sends `signal` to `pid`, the process in `pid_file`. With kill(2), not
/// kill(1): the unit runs `bellhop reload` with systemd's minimal
/// environment, and a minimal Debian has no `kill` binary (procps), which
/// made `systemctl reload` fail there.
pub fn signal(pid: u32, signal: Signal, pid_file: &Path) -> anyhow::Result<()> {
    bellhop::signal_process(pid, signal).with_context(|| {
        format!(
            "cannot signal process {pid} from {} (not running, or not ours?)",
            pid_file.display()
        )
    })
}
