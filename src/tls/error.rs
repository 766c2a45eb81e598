//! The one error type of the `tls` module.

use std::io;

/// What can go wrong setting up TLS or accepting a TLS connection.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls rejected a configuration.
    #[error("{context}: {source}")]
    Rustls {
        /// What we were building.
        context: String,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The TLS handshake failed (bad client, unknown name, protocol error).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The client did not finish its handshake within the handshake timeout.
    #[error("TLS handshake timed out after {0:?}")]
    HandshakeTimeout(std::time::Duration),
}

impl TlsError {
    /// Shorthand for an [`TlsError::Rustls`] with its context.
    pub(crate) fn rustls(context: impl Into<String>, source: rustls::Error) -> Self {
        TlsError::Rustls {
            context: context.into(),
            source,
        }
    }
}
