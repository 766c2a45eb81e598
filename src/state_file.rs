//! Crash-safe writes for everything bellhop keeps in its state directory.
//!
//! A certificate, key or account file is either the old version or the new one,
//! never half of each: we write a temporary file next to the target, fsync it,
//! rename it over the target and fsync the directory so the rename itself survives
//! a power cut. Secrets get mode 0600 from the moment they exist (the temporary
//! file is created with that mode, never chmod-ed afterwards), and directories that
//! hold them are 0700.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File mode for private keys and account credentials.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// File mode for public material (certificate chains, status files).
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode for every directory under the state dir.
pub(crate) const DIR_MODE: u32 = 0o700;

/// A file or directory operation under the state dir failed.
///
/// Names the operation and the path, so the log line can be acted on; the
/// modules that own the files (`certs`, `acme`) wrap it in their own errors.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct FileError {
    /// What we were doing ("reading", "creating directory", …).
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl FileError {
    /// A failed `action` on `path`.
    pub(crate) fn new(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        FileError {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Creates `dir` and its missing parents with mode 0700, and tightens an existing
/// `dir` to 0700 (an operator may have created it with a looser umask).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| FileError::new("creating directory", dir, e))?;
    let mode = fs::metadata(dir)
        .map_err(|e| FileError::new("inspecting directory", dir, e))?
        .permissions()
        .mode();
    if mode & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| FileError::new("setting permissions on", dir, e))?;
    }
    Ok(())
}

/// Atomically replaces `path` with `contents`, creating the file with `mode`.
///
/// The parent directory is created (0700) if missing.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The pid keeps two bellhop processes sharing a state dir (a mistake, but a
    // possible one) from writing into the same temporary file.
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = write_then_rename(&tmp, path, dir, contents, mode);
    if result.is_err() {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    dir: &Path,
    contents: &[u8],
    mode: u32,
) -> Result<(), FileError> {
    // A stale temp file from a crash may exist with other permissions; start clean
    // so `mode` below really applies.
    let _ = fs::remove_file(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| FileError::new("creating", tmp, e))?;
    file.write_all(contents)
        .map_err(|e| FileError::new("writing", tmp, e))?;
    file.sync_all()
        .map_err(|e| FileError::new("syncing", tmp, e))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| FileError::new("renaming into place", path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FileError::new("syncing directory", dir, e))
}

/// Reads a file that may legitimately be absent: `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("reading", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = std::env::temp_dir().join(format!("bellhop-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub/key.pem");
        write_atomic(&path, b"one", SECRET_MODE).unwrap();
        write_atomic(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(dir.join("sub")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(read_optional(&dir.join("missing")).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
