//! HTTP-01 challenge responses, shared between the ACME flow and the `http-port`
//! listener.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// URL path prefix under which the CA fetches HTTP-01 tokens (RFC 8555 §8.3).
pub(crate) const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending HTTP-01 tokens → key authorizations.
///
/// The plain-HTTP listener must consult this *before* redirecting to HTTPS: the
/// validator follows redirects, and an HTTPS port without a certificate yet would
/// fail the validation.
#[derive(Debug, Default)]
pub struct Http01Tokens {
    tokens: Mutex<HashMap<String, String>>,
}

impl Http01Tokens {
    /// No challenges in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `key_authorization` at `/.well-known/acme-challenge/{token}` until removed.
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.lock()
            .insert(token.to_string(), key_authorization.to_string());
    }

    /// Stops serving `token`.
    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    /// The body to answer for `token`, if it is pending.
    pub fn key_authorization(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    /// The answer for a request path, if it is a pending challenge path.
    ///
    /// `None` for paths outside [`HTTP01_PATH_PREFIX`] and for unknown tokens; the
    /// listener answers 404 for the latter rather than redirecting.
    pub fn answer_for_path(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PATH_PREFIX)?;
        self.key_authorization(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Single inserts/removes cannot leave the map inconsistent after a panic.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_pending_tokens_only() {
        let t = Http01Tokens::new();
        t.insert("tok", "tok.thumb");
        assert_eq!(t.key_authorization("tok").as_deref(), Some("tok.thumb"));
        assert_eq!(
            t.answer_for_path("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(t.answer_for_path("/tok"), None);
        t.remove("tok");
        assert_eq!(t.key_authorization("tok"), None);
    }
}
