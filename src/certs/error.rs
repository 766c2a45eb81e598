//! The one error type of the `certs` module.

use std::io;
use std::path::PathBuf;

use crate::state_file::FileError;

/// Everything that can go wrong loading, storing or making certificates.
///
/// Every variant names the file or the operation involved, so a log line or a
/// start-up error can be acted on without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Shared storage could not be opened (bad URL, unreadable key file).
    #[error("storage: {0}")]
    Storage(String),
    /// Reading or writing a file (certificate, key, state) failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A PEM file could not be parsed.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A stored file parsed but its content is unusable (a certificate that
    /// doesn't name its host, a corrupt status file, a CA root without its key).
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file, or the name it is about.
        path: PathBuf,
        /// What is wrong and, where possible, what to do.
        reason: String,
    },
    /// A certificate and its key do not belong together, or rustls rejected them.
    #[error("{context}: {source}")]
    Rustls {
        /// What we were building.
        context: String,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// Generating a key, certificate or CSR failed.
    #[error("{context}: {source}")]
    Rcgen {
        /// What we were generating.
        context: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A certificate could not be parsed as X.509.
    #[error("parsing certificate {context}: {reason}")]
    X509 {
        /// Where the certificate came from.
        context: String,
        /// The parser's complaint.
        reason: String,
    },
}

impl CertError {
    /// Shorthand for a [`CertError::File`] with its context.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CertError::File(FileError::new(action, path, source))
    }

    /// Shorthand for an [`CertError::Rcgen`] with its context.
    pub(crate) fn rcgen(context: impl Into<String>, source: rcgen::Error) -> Self {
        CertError::Rcgen {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for an [`CertError::Rustls`] with its context.
    pub(crate) fn rustls(context: impl Into<String>, source: rustls::Error) -> Self {
        CertError::Rustls {
            context: context.into(),
            source,
        }
    }
}
