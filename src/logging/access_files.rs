//! Access-log files of their own (`log "/var/log/bellhop/app.log"`): one
//! writer thread per file, shared by every site that names it, reopened on
//! SIGUSR1 and on reload so logrotate can move the file away (no copytruncate).
//!
//! Requests only queue their line (`batch`); the file is written, and
//! reopened, on the file's own thread, so a slow disk never stalls a worker.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::batch::{self, BatchWriter, Output, WriterThread};

/// Mode of a log file bellhop creates: the service's group may read it.
const FILE_MODE: u32 = 0o640;

/// An open access-log file and the path it was opened at.
struct LogFile {
    path: PathBuf,
    file: File,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(FILE_MODE)
            .open(path)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Output for LogFile {
    /// A new file at the same path; the old one (moved by logrotate) is
    /// closed once the new one is open, and kept if it cannot be.
    fn reopen(&mut self) -> io::Result<()> {
        *self = LogFile::open(&self.path)?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// One access-log file: where request lines are queued.
pub(crate) struct AccessLogSink {
    writer: BatchWriter,
    /// Taken when the file is closed for good (`AccessLogFiles::close_all`).
    thread: Mutex<Option<WriterThread>>,
    path: PathBuf,
}

impl std::fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogSink")
            .field("path", &self.path)
            .finish()
    }
}

impl AccessLogSink {
    /// Queues one finished line (ending in a newline); never waits for I/O.
    pub(crate) fn push(&self, line: &[u8]) {
        self.writer.push(line);
    }

    fn lock(&self) -> MutexGuard<'_, Option<WriterThread>> {
        self.thread.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for AccessLogSink {
    /// The last router using this file is gone (a reload removed it): the
    /// thread writes what is queued and ends, without the dropping thread
    /// (maybe a worker) waiting for it.
    fn drop(&mut self) {
        if let Some(thread) = self.lock().take() {
            thread.detach();
        }
    }
}

/// Every access-log file the server writes, by path, so sites naming the
/// same file share one writer and a reopen reaches them all.
#[derive(Debug, Default)]
pub(crate) struct AccessLogFiles {
    /// Weak: a file no router uses any more closes by itself.
    files: Mutex<HashMap<PathBuf, Weak<AccessLogSink>>>,
}

impl AccessLogFiles {
    fn lock(&self) -> MutexGuard<'_, HashMap<PathBuf, Weak<AccessLogSink>>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sink for `path`: the one already open, else the file opened (and
    /// created) now, with its writer thread.
    pub(crate) fn open(&self, path: &Path) -> io::Result<Arc<AccessLogSink>> {
        let mut files = self.lock();
        files.retain(|_, sink| sink.strong_count() > 0);
        if let Some(sink) = files.get(path).and_then(Weak::upgrade) {
            return Ok(sink);
        }
        let (writer, thread) = batch::start(LogFile::open(path)?)?;
        let sink = Arc::new(AccessLogSink {
            writer,
            thread: Mutex::new(Some(thread)),
            path: path.to_path_buf(),
        });
        files.insert(path.to_path_buf(), Arc::downgrade(&sink));
        Ok(sink)
    }

    /// Reopens every open file (SIGUSR1, reload): lines queued before this
    /// call go to the old file, later ones to the new one; returns at once.
    pub(crate) fn reopen_all(&self) {
        for sink in self.lock().values().filter_map(Weak::upgrade) {
            sink.writer.reopen();
        }
    }

    /// Writes what is queued for every file and waits for it (shutdown, once
    /// no request can log any more).
    pub(crate) fn close_all(&self) {
        let sinks: Vec<_> = self.lock().values().filter_map(Weak::upgrade).collect();
        for sink in sinks {
            drop(sink.lock().take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_share_a_file_and_a_moved_file_is_reopened() {
        let dir = std::env::temp_dir().join(format!("bellhop-access-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.log");
        let files = AccessLogFiles::default();
        let a = files.open(&path).unwrap();
        let b = files.open(&path).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one writer per file");
        a.push(b"first\n");
        // logrotate: move the file, then ask for a reopen. Lines queued
        // before the request go to the moved file, later ones to a new one.
        let moved = dir.join("app.log.1");
        std::fs::rename(&path, &moved).unwrap();
        files.reopen_all();
        b.push(b"second\n");
        files.close_all();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "first\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, FILE_MODE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
