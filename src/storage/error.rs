//! Why a storage operation failed.

use crate::state_file::FileError;

/// A storage operation failed; names the backend's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    /// The state directory.
    #[error(transparent)]
    File(#[from] FileError),
    /// Redis did not answer, or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// Redis took too long.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The storage configuration cannot be used (bad URL, unreadable key file).
    #[error("{0}")]
    Config(String),
    /// A value sealed with the key file did not open: another key, or tampering.
    #[error("cannot decrypt {key}: wrong key-file, or the value was altered")]
    Sealed {
        /// The value's key.
        key: String,
    },
}
