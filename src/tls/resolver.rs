//! SNI → certificate, swappable at runtime.
//!
//! rustls asks a [`ResolvesServerCert`] for a certificate synchronously in the
//! middle of every handshake, so lookups must be cheap and lock-free: the map
//! lives behind an [`ArcSwap`] and writers replace it whole (copy on write).
//! Writes are rare (issuance, renewal, reload); a new map takes effect on the
//! next handshake and never disturbs connections that are already open.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::on_demand::OnDemand;
use crate::config::{normalize_host, wildcard_suffix};

/// The certificates served to ordinary clients, chosen by SNI.
///
/// Lookup order for a client that sends SNI: the exact name, then the wildcard
/// `*.parent` one label up, then the default certificate. A client that sends no
/// SNI (it connected by IP address) gets the no-SNI certificate, then the default.
/// When nothing matches the handshake fails with an alert, which is how a name
/// whose certificate is still being obtained fails cleanly.
///
/// Ports whose catch-all site is `tls internal` are handled before this lookup:
/// the terminator asks [`on_demand`](Self::on_demand) first, which knows the port
/// and the local address that rustls' resolver interface doesn't.
pub struct CertResolver {
    by_name: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    default: ArcSwapOption<CertifiedKey>,
    no_sni: ArcSwapOption<CertifiedKey>,
    on_demand: OnDemand,
    // Serialises writers so two concurrent `set`s cannot lose each other's update
    // (ArcSwap::rcu would retry instead; a mutex is simpler and writes are rare).
    write: Mutex<()>,
}

impl CertResolver {
    /// An empty resolver: every handshake fails until certificates are added.
    pub fn new() -> Self {
        CertResolver {
            by_name: ArcSwap::from_pointee(HashMap::new()),
            default: ArcSwapOption::empty(),
            no_sni: ArcSwapOption::empty(),
            on_demand: OnDemand::new(),
            write: Mutex::new(()),
        }
    }

    /// Serves `cert` for `name` (`app.example.com` or `*.example.com`) from the
    /// next handshake on, replacing any previous certificate for it.
    pub fn set(&self, name: &str, cert: Arc<CertifiedKey>) {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.by_name.load());
        map.insert(normalize_host(name).into_owned(), cert);
        self.by_name.store(Arc::new(map));
    }

    /// Stops serving a certificate for `name`.
    pub fn remove(&self, name: &str) {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.by_name.load());
        if map.remove(&*normalize_host(name)).is_some() {
            self.by_name.store(Arc::new(map));
        }
    }

    /// Keeps only the names for which `keep` returns true (used on reload).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.by_name.load());
        let before = map.len();
        map.retain(|name, _| keep(name));
        if map.len() != before {
            self.by_name.store(Arc::new(map));
        }
    }

    /// The certificate for names that match nothing else (a catch-all site).
    pub fn set_default(&self, cert: Option<Arc<CertifiedKey>>) {
        self.default.store(cert);
    }

    /// The certificate for clients that send no SNI, i.e. that connected by IP.
    pub fn set_no_sni(&self, cert: Option<Arc<CertifiedKey>>) {
        self.no_sni.store(cert);
    }

    /// Issuance during the handshake for host-less `tls internal` sites.
    pub fn on_demand(&self) -> &OnDemand {
        &self.on_demand
    }

    /// The certificate stored for exactly `name`, without wildcard or default fallback.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.by_name.load().get(&*normalize_host(name)).cloned()
    }

    /// The certificate a handshake with this SNI (or none) would get.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = sni else {
            return self.no_sni.load_full().or_else(|| self.default.load_full());
        };
        let name = normalize_host(sni);
        let map = self.by_name.load();
        if let Some(cert) = map.get(&*name) {
            return Some(cert.clone());
        }
        if let Some(suffix) = wildcard_suffix(&name) {
            if let Some(cert) = map.get(&format!("*.{suffix}")) {
                return Some(cert.clone());
            }
        }
        self.default.load_full()
    }

    /// Names that currently have a certificate (for logs and tests).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.load().keys().cloned().collect();
        names.sort();
        names
    }
}

impl Default for CertResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("names", &self.names())
            .field("default", &self.default.load().is_some())
            .field("no_sni", &self.no_sni.load().is_some())
            .field("on_demand", &self.on_demand)
            .finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let cert = self.lookup(hello.server_name());
        if cert.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name; refusing handshake");
        }
        cert
    }
}

/// TLS-ALPN-01 challenge certificates (RFC 8737), by name.
///
/// Kept apart from [`CertResolver`] because they must only ever be shown to a
/// client that asked for `acme-tls/1`, and they must be answerable even for a name
/// that already has a real certificate. They live for a few seconds each, so a
/// plain mutex is enough.
#[derive(Default)]
pub struct ChallengeCerts {
    certs: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Where to look when a validation arrives for a challenge this instance
    /// did not start (another instance of a cluster did).
    fallback: OnceLock<Arc<dyn ChallengeFallback>>,
}

/// Challenge certificates published elsewhere (shared storage), looked up
/// during an `acme-tls/1` handshake that the local table cannot answer.
/// Defined here so the handshake path does not depend on who provides them.
pub(crate) trait ChallengeFallback: Send + Sync {
    /// A challenge certificate for `name`, if one is being validated.
    fn tls_alpn01(&self, name: &str) -> crate::storage::BoxFuture<'_, Option<Arc<CertifiedKey>>>;
}

impl ChallengeCerts {
    /// No challenges in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `acme-tls/1` handshakes for `name` with `cert` until removed.
    pub fn insert(&self, name: &str, cert: Arc<CertifiedKey>) {
        self.lock().insert(normalize_host(name).into_owned(), cert);
    }

    /// Stops answering the challenge for `name`.
    pub fn remove(&self, name: &str) {
        self.lock().remove(&*normalize_host(name));
    }

    /// The challenge certificate for `name`, if a validation is in progress.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.lock().get(&*normalize_host(name)).cloned()
    }

    /// Looks misses up in `fallback` from now on (set once, at start-up).
    pub(crate) fn set_fallback(&self, fallback: Arc<dyn ChallengeFallback>) {
        let _ = self.fallback.set(fallback);
    }

    /// The certificate for `name` from the fallback, when this instance has
    /// none: `None` without a fallback, so a single instance never waits.
    pub(crate) async fn remote(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if self.get(name).is_some() {
            return None;
        }
        let fallback = self.fallback.get()?;
        fallback.tls_alpn01(&normalize_host(name)).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<CertifiedKey>>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (single insert/remove), so a poisoned lock is still usable.
        self.certs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ChallengeCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("ChallengeCerts")
            .field("names", &names)
            .finish()
    }
}

impl ResolvesServerCert for ChallengeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // RFC 8737 §3: the validator always sends SNI; without it there is nothing
        // to answer.
        hello.server_name().and_then(|name| self.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::ring::default_provider;
    use rustls_pki_types::PrivatePkcs8KeyDer;

    fn key_for(name: &str) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        Arc::new(
            CertifiedKey::from_der(vec![cert.der().clone()], der, &default_provider()).unwrap(),
        )
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let r = CertResolver::new();
        let exact = key_for("a.example.com");
        let wild = key_for("*.example.com");
        let def = key_for("default");
        let ip = key_for("127.0.0.1");
        assert!(r.lookup(Some("a.example.com")).is_none());
        r.set("A.Example.com.", exact.clone());
        r.set("*.example.com", wild.clone());
        assert!(Arc::ptr_eq(
            &r.lookup(Some("a.example.com")).unwrap(),
            &exact
        ));
        assert!(Arc::ptr_eq(
            &r.lookup(Some("b.example.com")).unwrap(),
            &wild
        ));
        // A wildcard covers one label only.
        assert!(r.lookup(Some("x.b.example.com")).is_none());
        assert!(r.lookup(None).is_none());
        r.set_default(Some(def.clone()));
        assert!(Arc::ptr_eq(
            &r.lookup(Some("x.b.example.com")).unwrap(),
            &def
        ));
        assert!(Arc::ptr_eq(&r.lookup(None).unwrap(), &def));
        r.set_no_sni(Some(ip.clone()));
        assert!(Arc::ptr_eq(&r.lookup(None).unwrap(), &ip));
        r.remove("a.example.com");
        assert!(Arc::ptr_eq(
            &r.lookup(Some("a.example.com")).unwrap(),
            &wild
        ));
        r.retain(|n| n != "*.example.com");
        assert!(r.names().is_empty());
    }
}
