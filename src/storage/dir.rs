//! The state directory as a [`Storage`]: today's files, unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BoxFuture, Kind, Lease, Storage, StorageError};
use crate::state_file::{read_optional, write_atomic, FileError, PUBLIC_MODE, SECRET_MODE};

/// Values as files under the state directory (`key` is the relative path).
///
/// One process owns a state directory, so its leases are always granted and
/// nobody needs to be notified. File I/O is small and rare (accounts,
/// certificates) and done inline, as the certificate code always did.
#[derive(Debug, Clone)]
pub(crate) struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    /// The storage rooted at `state_dir`.
    pub(crate) fn new(state_dir: &Path) -> Self {
        DirStorage {
            root: state_dir.to_path_buf(),
        }
    }

    /// Where `key` lives. Keys are built by bellhop from sanitised names
    /// (`certs::file_name_for`, `acme::issuer_id`); `..` is refused anyway.
    pub(crate) fn path(&self, key: &str) -> PathBuf {
        let safe: Vec<&str> = key
            .split('/')
            .filter(|part| !part.is_empty() && *part != "." && *part != "..")
            .collect();
        self.root.join(safe.join("/"))
    }

    /// Reads `key` (sync, for callers outside a runtime).
    pub(crate) fn read(&self, key: &str) -> Result<Option<Vec<u8>>, FileError> {
        read_optional(&self.path(key))
    }

    /// Reads `key` with the kind its file mode records (0600: a secret).
    pub(crate) fn read_with_kind(&self, key: &str) -> Result<Option<(Vec<u8>, Kind)>, FileError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(key);
        let Some(value) = read_optional(&path)? else {
            return Ok(None);
        };
        let secret = std::fs::metadata(&path)
            .map(|m| m.permissions().mode() & 0o077 == 0)
            .unwrap_or(true);
        Ok(Some((
            value,
            if secret { Kind::Secret } else { Kind::Public },
        )))
    }

    /// Writes `key` (sync); ephemeral values are not kept on disk.
    pub(crate) fn write(&self, key: &str, value: &[u8], kind: Kind) -> Result<(), FileError> {
        let mode = match kind {
            Kind::Secret => SECRET_MODE,
            Kind::Public => PUBLIC_MODE,
            Kind::Ephemeral(_) => return Ok(()),
        };
        write_atomic(&self.path(key), value, mode)
    }
}

impl Storage for DirStorage {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StorageError>> {
        Box::pin(async move { Ok(self.read(key)?) })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        kind: Kind,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move { Ok(self.write(key, value, kind)?) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let path = self.path(key);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(FileError::new("removing", path, e).into())
                }
                _ => Ok(()),
            }
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Lease>, StorageError>> {
        Box::pin(async move { Ok(Some(Lease::new(key))) })
    }

    fn extend<'a>(
        &'a self,
        _lease: &'a Lease,
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StorageError>> {
        Box::pin(async { Ok(true) })
    }

    fn unlock<'a>(&'a self, _lease: &'a Lease) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }

    fn notify<'a>(&'a self, _what: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }

    fn is_shared(&self) -> bool {
        false
    }
}
