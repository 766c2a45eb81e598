//! Where the ACME flow's challenge answers are served: HTTP-01 key
//! authorizations on `http-port` (answered by the server before any redirect)
//! and TLS-ALPN-01 certificates in the handshake path.
//!
//! `acme` defines the interface and `tls` the certificate table; this is the
//! one place that knows both, so neither has to know the other.
//!
//! In a cluster the CA may send its validation to any instance, so the
//! ordering instance also writes each answer to shared storage before telling
//! the CA to validate, and [`SharedChallenges`] looks an answer up there when
//! the local table misses. A TLS-ALPN-01 answer is shared as the 32-byte
//! digest it certifies, not as a private key: the instance that answers builds
//! its own throw-away certificate from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::sign::CertifiedKey;

use super::store::file_name_for;
use crate::acme::{challenge_cert, ChallengeResponder, Http01Tokens};
use crate::storage::{BoxFuture, Kind, Storage};
use crate::tls::{ChallengeCerts, ChallengeFallback};

/// How long a shared challenge answer lives in storage: a validation takes
/// seconds; this only bounds what a crashed instance leaves behind.
const SHARED_TTL: Duration = Duration::from_secs(10 * 60);
/// How long an answer found in shared storage is kept in memory: the CA sends
/// several validation requests per challenge, from several places.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Answers kept in memory at most (each is small).
const CACHE_MAX: usize = 256;

/// The two tables the listeners answer challenges from.
pub(super) struct Responders {
    /// HTTP-01 tokens, answered on `http-port`.
    pub tokens: Arc<Http01Tokens>,
    /// TLS-ALPN-01 certificates, answered on `https-port`.
    pub tls_alpn: Arc<ChallengeCerts>,
    /// Shared storage, written only when other instances read it.
    pub storage: Arc<dyn Storage>,
}

fn http01_key(token: &str) -> String {
    format!("challenges/http-01/{token}")
}

fn tls_alpn01_key(name: &str) -> String {
    format!("challenges/tls-alpn-01/{}", file_name_for(name))
}

impl Responders {
    /// Writes a shared answer; a failure is logged and the CA then fails the
    /// validation if it asks another instance, which the backoff handles.
    async fn share(&self, key: String, value: &[u8]) {
        if !self.storage.is_shared() {
            return;
        }
        if let Err(e) = self
            .storage
            .put(&key, value, Kind::Ephemeral(SHARED_TTL))
            .await
        {
            tracing::warn!(key, error = %e, "could not share a challenge answer; only this instance answers it");
        }
    }

    /// Removes a shared answer in the background (it expires anyway).
    fn unshare(&self, key: String) {
        if !self.storage.is_shared() {
            return;
        }
        let storage = self.storage.clone();
        tokio::spawn(async move {
            let _ = storage.delete(&key).await;
        });
    }
}

impl ChallengeResponder for Responders {
    fn publish_http01<'a>(
        &'a self,
        token: &'a str,
        key_authorization: &'a str,
    ) -> BoxFuture<'a, ()> {
        self.tokens.insert(token, key_authorization);
        Box::pin(self.share(http01_key(token), key_authorization.as_bytes()))
    }

    fn withdraw_http01(&self, token: &str) {
        self.tokens.remove(token);
        self.unshare(http01_key(token));
    }

    fn publish_tls_alpn01<'a>(
        &'a self,
        name: &'a str,
        cert: Arc<CertifiedKey>,
        digest: &'a [u8],
    ) -> BoxFuture<'a, ()> {
        self.tls_alpn.insert(name, cert);
        Box::pin(self.share(tls_alpn01_key(name), digest))
    }

    fn withdraw_tls_alpn01(&self, name: &str) {
        self.tls_alpn.remove(name);
        self.unshare(tls_alpn01_key(name));
    }
}

/// Challenge answers published by other instances, looked up on a local miss.
pub(crate) struct SharedChallenges {
    storage: Arc<dyn Storage>,
    http01: Mutex<HashMap<String, (String, Instant)>>,
    tls_alpn01: Mutex<HashMap<String, (Arc<CertifiedKey>, Instant)>>,
}

impl std::fmt::Debug for SharedChallenges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedChallenges").finish_non_exhaustive()
    }
}

impl SharedChallenges {
    pub(super) fn new(storage: Arc<dyn Storage>) -> Self {
        SharedChallenges {
            storage,
            http01: Mutex::new(HashMap::new()),
            tls_alpn01: Mutex::new(HashMap::new()),
        }
    }

    /// The key authorization another instance published for `token`.
    /// Only well-formed tokens (base64url, RFC 8555 §8.1) reach Redis.
    pub(crate) async fn http01(&self, token: &str) -> Option<String> {
        let well_formed = (16..=128).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return None;
        }
        if let Some(hit) = cached(&self.http01, token) {
            return Some(hit);
        }
        let bytes = self.lookup(&http01_key(token)).await?;
        let answer = String::from_utf8(bytes).ok()?;
        remember(&self.http01, token, answer.clone());
        Some(answer)
    }

    async fn tls_alpn01(&self, name: String) -> Option<Arc<CertifiedKey>> {
        if let Some(hit) = cached(&self.tls_alpn01, &name) {
            return Some(hit);
        }
        let digest = self.lookup(&tls_alpn01_key(&name)).await?;
        let cert = match challenge_cert(&name, &digest) {
            Ok(cert) => Arc::new(cert),
            Err(e) => {
                tracing::warn!(name, error = %e, "cannot answer a shared TLS-ALPN-01 challenge");
                return None;
            }
        };
        remember(&self.tls_alpn01, &name, cert.clone());
        tracing::debug!(
            name,
            "answering a TLS-ALPN-01 challenge another instance started"
        );
        Some(cert)
    }

    async fn lookup(&self, key: &str) -> Option<Vec<u8>> {
        match self.storage.get(key).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot look up a shared challenge answer");
                None
            }
        }
    }
}

impl ChallengeFallback for SharedChallenges {
    fn tls_alpn01(&self, name: &str) -> BoxFuture<'_, Option<Arc<CertifiedKey>>> {
        Box::pin(SharedChallenges::tls_alpn01(self, name.to_string()))
    }
}

fn cached<T: Clone>(map: &Mutex<HashMap<String, (T, Instant)>>, key: &str) -> Option<T> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.get(key)
        .filter(|(_, at)| at.elapsed() < CACHE_TTL)
        .map(|(v, _)| v.clone())
}

/// Caches a shared answer, dropping expired ones first (and everything, if
/// the cache is still full: answers are cheap to fetch again).
fn remember<T>(map: &Mutex<HashMap<String, (T, Instant)>>, key: &str, value: T) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= CACHE_MAX {
        map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
        if map.len() >= CACHE_MAX {
            map.clear();
        }
    }
    map.insert(key.to_string(), (value, Instant::now()));
}
