//! Why a storage operation failed.

use crate::state_file::FileError;

/// A storage operation failed; names the backend's reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    /// The state directory.
    #[error(transparent)]
    File(#[from] FileError),
    /// Redis did not answer, or answered with an error.
    #[error("redis {url}: {source}")]
    Redis {
        /// The storage URL, password masked.
        url: String,
        /// What the client said.
        source: ::redis::RedisError,
    },
    /// Redis refused the credentials: a configuration error, not an outage.
    #[error("redis {url} refused the password: check the password in the storage URL or in password-file")]
    Auth {
        /// The storage URL, password masked.
        url: String,
    },
    /// Redis took too long.
    #[error("redis {url} did not answer within {after:?}")]
    Timeout {
        /// The storage URL, password masked.
        url: String,
        /// The operation's bound.
        after: std::time::Duration,
    },
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
