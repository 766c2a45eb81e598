//! How the ACME flow hands challenge answers to whoever serves them.
//!
//! The protocol knows what to answer; the listeners know how to serve it. acme
//! defines [`ChallengeResponder`] so it never depends on the handshake path
//! (`tls`) or on the certificate lifecycle (`certs`), which wires it to the
//! HTTP-01 token table and the TLS-ALPN-01 certificates.

use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::storage::BoxFuture;

/// Serves challenge answers while the CA validates.
///
/// Publishing is async because in a cluster the answer must be visible to
/// every instance (the CA may ask any of them) before the CA is told to
/// validate; withdrawing is best effort (shared answers also expire).
pub(crate) trait ChallengeResponder: Send + Sync {
    /// Answers `GET /.well-known/acme-challenge/{token}` on `http-port` with
    /// `key_authorization` until withdrawn.
    fn publish_http01<'a>(
        &'a self,
        token: &'a str,
        key_authorization: &'a str,
    ) -> BoxFuture<'a, ()>;
    /// Stops answering `token`.
    fn withdraw_http01(&self, token: &str);
    /// Answers `acme-tls/1` handshakes for `name` with `cert` until withdrawn.
    /// `digest` is the key authorization's SHA-256 the certificate carries,
    /// enough for another instance to build an equivalent certificate.
    fn publish_tls_alpn01<'a>(
        &'a self,
        name: &'a str,
        cert: Arc<CertifiedKey>,
        digest: &'a [u8],
    ) -> BoxFuture<'a, ()>;
    /// Stops answering `acme-tls/1` for `name`.
    fn withdraw_tls_alpn01(&self, name: &str);
}

/// A published challenge answer, withdrawn when dropped (also on error or
/// cancellation, so nothing lingers).
pub(super) struct Published {
    responder: Arc<dyn ChallengeResponder>,
    answer: Answer,
}

enum Answer {
    Http01 { token: String },
    TlsAlpn01 { name: String },
}

impl Published {
    /// Publishes an HTTP-01 key authorization for `token`.
    pub(super) async fn http01(
        responder: &Arc<dyn ChallengeResponder>,
        token: &str,
        key_authorization: &str,
    ) -> Self {
        responder.publish_http01(token, key_authorization).await;
        Published {
            responder: responder.clone(),
            answer: Answer::Http01 {
                token: token.to_string(),
            },
        }
    }

    /// Publishes a TLS-ALPN-01 certificate for `name`.
    pub(super) async fn tls_alpn01(
        responder: &Arc<dyn ChallengeResponder>,
        name: &str,
        cert: Arc<CertifiedKey>,
        digest: &[u8],
    ) -> Self {
        responder.publish_tls_alpn01(name, cert, digest).await;
        Published {
            responder: responder.clone(),
            answer: Answer::TlsAlpn01 {
                name: name.to_string(),
            },
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        match &self.answer {
            Answer::Http01 { token } => self.responder.withdraw_http01(token),
            Answer::TlsAlpn01 { name } => self.responder.withdraw_tls_alpn01(name),
        }
    }
}
