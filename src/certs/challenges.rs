//! Where the ACME flow's challenge answers are served: HTTP-01 key
//! authorizations on `http-port` (answered by the server before any redirect)
//! and TLS-ALPN-01 certificates in the handshake path.
//!
//! `acme` defines the interface and `tls` the certificate table; this is the
//! one place that knows both, so neither has to know the other.

use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::acme::{ChallengeResponder, Http01Tokens};
use crate::tls::ChallengeCerts;

/// The two tables the listeners answer challenges from.
pub(super) struct Responders {
    /// HTTP-01 tokens, answered on `http-port`.
    pub tokens: Arc<Http01Tokens>,
    /// TLS-ALPN-01 certificates, answered on `https-port`.
    pub tls_alpn: Arc<ChallengeCerts>,
}

impl ChallengeResponder for Responders {
    fn publish_http01(&self, token: &str, key_authorization: &str) {
        self.tokens.insert(token, key_authorization);
    }

    fn withdraw_http01(&self, token: &str) {
        self.tokens.remove(token);
    }

    fn publish_tls_alpn01(&self, name: &str, cert: Arc<CertifiedKey>) {
        self.tls_alpn.insert(name, cert);
    }

    fn withdraw_tls_alpn01(&self, name: &str) {
        self.tls_alpn.remove(name);
    }
}
