//! Internal-CA leaves issued during the handshake, for host-less `tls internal`
//! sites (`"https://:8443" { tls internal }`).
//!
//! Such a site answers every Host on its port, so no certificate can be made
//! ahead of time. Instead, when a ClientHello arrives on such a port for a name
//! that no other site on the port claims, a leaf for exactly that name is signed
//! by the internal CA (an ECDSA P-256 key and signature: well under a
//! millisecond). A client that sends no SNI (it connected by IP) gets a leaf for
//! the local address it connected to.
//!
//! Whatever names clients send, memory stays bounded: names must be
//! syntactically valid DNS names, only ports configured for it issue at all,
//! and the leaves live in a cache of at most [`ON_DEMAND_CAPACITY`] entries
//! that drops the oldest first. A cached leaf is re-issued on the first
//! handshake after half its lifetime, like the internal CA's other leaves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::sign::CertifiedKey;

use super::leaf_signer::LeafSigner;
use crate::config::{canonical_ip, normalize_host, wildcard_suffix, HostPattern};

/// How many on-demand leaves are kept at most; beyond that the oldest is dropped
/// (and simply issued again if its name comes back).
pub(crate) const ON_DEMAND_CAPACITY: usize = 1024;

/// What the other sites on an on-demand port claim. Those hosts get their own
/// certificates through the ordinary resolver; only the rest is issued on demand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnDemandPort {
    names: HashSet<String>,
    /// `*.example.com` is stored as `example.com` ([`wildcard_suffix`]).
    wildcards: HashSet<String>,
    ips: HashSet<IpAddr>,
}

impl OnDemandPort {
    /// A port whose other HTTPS sites answer `claimed` (a host-less pattern in
    /// there is ignored: that is the on-demand site itself).
    pub fn new<'a>(claimed: impl IntoIterator<Item = &'a HostPattern>) -> Self {
        let mut port = OnDemandPort::default();
        for pattern in claimed {
            match pattern {
                HostPattern::Name(name) => {
                    port.names.insert(name.clone());
                }
                HostPattern::Wildcard(suffix) => {
                    port.wildcards.insert(suffix.clone());
                }
                HostPattern::Ip(ip) => {
                    port.ips.insert(canonical_ip(*ip));
                }
                HostPattern::Any => {}
            }
        }
        port
    }

    /// Whether another site on the port answers `name` (already normalised), the
    /// way the router matches hosts: exact, then one label under a wildcard.
    fn claims_name(&self, name: &str) -> bool {
        self.names.contains(name)
            || wildcard_suffix(name).is_some_and(|suffix| self.wildcards.contains(suffix))
    }
}

/// Cache key: a DNS name from SNI, or the local IP of a connection without SNI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LeafKey {
    Name(String),
    Ip(IpAddr),
}

impl LeafKey {
    fn san(&self) -> String {
        match self {
            LeafKey::Name(name) => name.clone(),
            LeafKey::Ip(ip) => ip.to_string(),
        }
    }
}

struct Entry {
    cert: Arc<CertifiedKey>,
    /// From then on, the next handshake re-issues the leaf.
    renew_at: SystemTime,
    /// Insertion order, the key into `LeafCache::order`.
    seq: u64,
}

/// A map with a size cap that evicts in insertion order.
struct LeafCache {
    capacity: usize,
    entries: HashMap<LeafKey, Entry>,
    order: BTreeMap<u64, LeafKey>,
    next_seq: u64,
}

impl LeafCache {
    fn new(capacity: usize) -> Self {
        LeafCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// The cached leaf for `key` unless it is due for renewal at `now`.
    fn fresh(&self, key: &LeafKey, now: SystemTime) -> Option<Arc<CertifiedKey>> {
        self.entries
            .get(key)
            .filter(|entry| now < entry.renew_at)
            .map(|entry| entry.cert.clone())
    }

    /// Stores (or replaces) the leaf for `key` as the newest entry, evicting the
    /// oldest ones beyond the cap.
    fn insert(&mut self, key: LeafKey, cert: Arc<CertifiedKey>, renew_at: SystemTime) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.entries.insert(
            key.clone(),
            Entry {
                cert,
                renew_at,
                seq,
            },
        ) {
            self.order.remove(&old.seq);
        }
        self.order.insert(seq, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// On-demand issuance: which ports do it, the CA that signs, and the leaves.
///
/// Lives inside [`CertResolver`](super::CertResolver) so the certificate manager
/// configures it with the rest of the certificates and the terminator consults it
/// after reading the ClientHello.
pub struct OnDemand {
    ports: ArcSwap<HashMap<u16, OnDemandPort>>,
    ca: ArcSwapOption<Arc<dyn LeafSigner>>,
    cache: Mutex<LeafCache>,
}

impl OnDemand {
    /// Off: no port issues until [`configure`](Self::configure) names some.
    pub fn new() -> Self {
        Self::with_capacity(ON_DEMAND_CAPACITY)
    }

    /// Off, with a cache of at most `capacity` leaves (tests use small ones).
    pub fn with_capacity(capacity: usize) -> Self {
        OnDemand {
            ports: ArcSwap::from_pointee(HashMap::new()),
            ca: ArcSwapOption::empty(),
            cache: Mutex::new(LeafCache::new(capacity)),
        }
    }

    /// Issues on exactly these ports (the configured port of each listener),
    /// signing with `ca`. With no ports (or no CA) nothing is issued any more and
    /// the cache is emptied; otherwise cached leaves stay (they are valid for
    /// their name whatever the port).
    pub fn configure(&self, ports: HashMap<u16, OnDemandPort>, ca: Option<Arc<dyn LeafSigner>>) {
        let off = ports.is_empty() || ca.is_none();
        self.ports.store(Arc::new(ports));
        self.ca.store(ca.map(Arc::new));
        if off {
            self.lock().clear();
        }
    }

    /// Whether handshakes on `port` may get an on-demand leaf.
    pub fn is_enabled(&self, port: u16) -> bool {
        self.ports.load().contains_key(&port) && self.ca.load().is_some()
    }

    /// How many leaves are cached now.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    /// The leaf for a handshake on the listener configured as `port`, whose
    /// socket's local address is `local_ip`, with this SNI (or none). `None`
    /// when on-demand issuance does not apply, so the ordinary resolver decides:
    /// the port has no host-less `tls internal` site, another site on the port
    /// claims the name or IP, the SNI is not a valid DNS name, or signing failed
    /// (logged).
    pub fn certificate(
        &self,
        port: u16,
        local_ip: IpAddr,
        sni: Option<&str>,
        now: SystemTime,
    ) -> Option<Arc<CertifiedKey>> {
        let ports = self.ports.load();
        let rules = ports.get(&port)?;
        let key = match sni {
            Some(sni) => {
                let Some(name) = valid_dns_name(sni) else {
                    tracing::debug!(sni, "not issuing on demand for an invalid name");
                    return None;
                };
                if rules.claims_name(&name) {
                    return None;
                }
                LeafKey::Name(name)
            }
            None => {
                let ip = canonical_ip(local_ip);
                if rules.ips.contains(&ip) || ip.is_unspecified() {
                    return None;
                }
                LeafKey::Ip(ip)
            }
        };
        if let Some(cert) = self.lock().fresh(&key, now) {
            return Some(cert);
        }
        let ca = self.ca.load_full()?;
        // Signed without holding the lock: concurrent first handshakes for one
        // name may each sign a leaf (the last one stays cached), which is cheaper
        // than making every other handshake wait.
        match ca.sign_leaf(&[key.san()], now) {
            Ok(cert) => {
                let cert = Arc::new(cert);
                tracing::debug!(name = %key.san(), port, "issued an internal certificate on demand");
                self.lock()
                    .insert(key, cert.clone(), now + ca.leaf_lifetime() / 2);
                Some(cert)
            }
            Err(e) => {
                tracing::error!(name = %key.san(), error = %e, "could not issue an internal certificate on demand");
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, LeafCache> {
        // Every critical section is a single map update, so a poisoned lock
        // cannot hide a half-made change.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for OnDemand {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ports: Vec<u16> = self.ports.load().keys().copied().collect();
        ports.sort_unstable();
        f.debug_struct("OnDemand")
            .field("ports", &ports)
            .field("cached", &self.cached())
            .finish()
    }
}

/// `sni` lowercased without its trailing dot, if it is a syntactically valid
/// DNS name: at most 253 characters, labels of 1 to 63 letters, digits, `-`
/// or `_` that don't start or end with `-`, and a last label that is not all
/// digits (so nothing that looks like an IPv4 address).
fn valid_dns_name(sni: &str) -> Option<String> {
    let name = sni.strip_suffix('.').unwrap_or(sni);
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let labels_ok = name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    (labels_ok && !last_numeric).then(|| normalize_host(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertInfo, InternalCa, LEAF_LIFETIME};
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{ServerName, UnixTime};
    use std::time::Duration;

    struct Setup {
        dir: std::path::PathBuf,
        ca: Arc<InternalCa>,
    }

    impl Setup {
        fn new(label: &str) -> Setup {
            let dir = std::env::temp_dir()
                .join(format!("bellhop-ondemand-{label}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let ca = Arc::new(InternalCa::load_or_create(&dir).unwrap());
            Setup { dir, ca }
        }

        /// Port 8443 issues on demand, except for `app.test`, `*.claimed.test`
        /// and 192.0.2.1, which other sites on the port answer.
        fn on_demand(&self, capacity: usize) -> OnDemand {
            let od = OnDemand::with_capacity(capacity);
            let claimed = [
                HostPattern::Any,
                HostPattern::Name("app.test".into()),
                HostPattern::Wildcard("claimed.test".into()),
                HostPattern::Ip("192.0.2.1".parse().unwrap()),
            ];
            od.configure(
                HashMap::from([(8443, OnDemandPort::new(&claimed))]),
                Some(self.ca.clone()),
            );
            od
        }

        /// Verifies `cert` for `name` (DNS name or IP) against the root at `at`.
        fn verify(&self, cert: &CertifiedKey, name: &str, at: SystemTime) -> Result<(), String> {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.root_der().clone()).unwrap();
            let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.into(),
                crate::crypto::provider(),
            )
            .build()
            .unwrap();
            verifier
                .verify_server_cert(
                    &cert.cert[0],
                    &cert.cert[1..],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::since_unix_epoch(at.duration_since(SystemTime::UNIX_EPOCH).unwrap()),
                )
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }

    impl Drop for Setup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn issues_for_any_valid_name_and_for_the_local_ip() {
        let s = Setup::new("names");
        let od = s.on_demand(16);
        let now = SystemTime::now();
        for name in ["foo.test", "Other.Example.COM.", "single", "x_y.test"] {
            let cert = od
                .certificate(8443, LOCAL, Some(name), now)
                .unwrap_or_else(|| panic!("{name}: nothing issued"));
            let expected = name.trim_end_matches('.').to_ascii_lowercase();
            s.verify(&cert, &expected, now).unwrap();
            // Another name does not verify with it.
            assert!(s.verify(&cert, "unrelated.test", now).is_err());
        }
        // No SNI: the certificate carries the address the client connected to,
        // in plain IPv4 form even when the socket is dual-stack.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let cert = od.certificate(8443, mapped, None, now).unwrap();
        s.verify(&cert, "127.0.0.1", now).unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        let cert = od.certificate(8443, v6, None, now).unwrap();
        s.verify(&cert, "::1", now).unwrap();
        assert!(s.verify(&cert, "127.0.0.1", now).is_err());
        // Cached: the same handshake again gets the same leaf.
        let a = od.certificate(8443, LOCAL, Some("foo.test"), now).unwrap();
        let b = od.certificate(8443, LOCAL, Some("FOO.test"), now).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn never_issues_where_it_does_not_apply() {
        let s = Setup::new("refuse");
        let od = s.on_demand(16);
        let now = SystemTime::now();
        // A port without a host-less `tls internal` site.
        assert!(!od.is_enabled(443));
        assert!(od.certificate(443, LOCAL, Some("foo.test"), now).is_none());
        assert!(od.certificate(443, LOCAL, None, now).is_none());
        // Hosts other sites on the port claim keep their own certificates.
        assert!(od.certificate(8443, LOCAL, Some("app.test"), now).is_none());
        assert!(od
            .certificate(8443, LOCAL, Some("a.claimed.test"), now)
            .is_none());
        let claimed_ip = "192.0.2.1".parse().unwrap();
        assert!(od.certificate(8443, claimed_ip, None, now).is_none());
        // One label only under a wildcard, as the router matches.
        assert!(od
            .certificate(8443, LOCAL, Some("a.b.claimed.test"), now)
            .is_some());
        // Invalid names.
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            "-a.test",
            "a-.test",
            "*.test",
            "a b.test",
            "a/b",
            "ä.test",
            "1.2.3.4",
            "example.123",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                od.certificate(8443, LOCAL, Some(bad), now).is_none(),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(od.cached(), 1);
        // Switched off: nothing issued, cache emptied.
        od.configure(HashMap::new(), Some(s.ca.clone()));
        assert!(!od.is_enabled(8443));
        assert!(od.certificate(8443, LOCAL, Some("foo.test"), now).is_none());
        assert_eq!(od.cached(), 0);
    }

    #[test]
    fn cache_stays_under_its_cap_and_drops_the_oldest() {
        let s = Setup::new("cap");
        const CAP: usize = 32;
        let od = s.on_demand(CAP);
        let now = SystemTime::now();
        let first = od.certificate(8443, LOCAL, Some("n0.test"), now).unwrap();
        for i in 1..(CAP * 4) {
            od.certificate(8443, LOCAL, Some(&format!("n{i}.test")), now)
                .unwrap();
            assert!(od.cached() <= CAP);
        }
        assert_eq!(od.cached(), CAP);
        // The newest names are still cached, the first one was evicted and is
        // issued afresh when it comes back.
        let last = format!("n{}.test", CAP * 4 - 1);
        let newest = od.certificate(8443, LOCAL, Some(&last), now).unwrap();
        assert!(Arc::ptr_eq(
            &newest,
            &od.certificate(8443, LOCAL, Some(&last), now).unwrap()
        ));
        let again = od.certificate(8443, LOCAL, Some("n0.test"), now).unwrap();
        assert!(!Arc::ptr_eq(&first, &again));
        assert_eq!(od.cached(), CAP);
        assert_eq!(OnDemand::new().lock().capacity, ON_DEMAND_CAPACITY);
    }

    #[test]
    fn leaves_are_short_lived_and_reissued_at_half_life() {
        let s = Setup::new("renew");
        let od = s.on_demand(16);
        let now = SystemTime::now();
        let first = od.certificate(8443, LOCAL, Some("foo.test"), now).unwrap();
        let info = CertInfo::parse(&first.cert[0], "leaf").unwrap();
        assert!(info.not_after <= now + LEAF_LIFETIME);
        assert!(info.not_after > now + LEAF_LIFETIME - Duration::from_secs(5));
        // Before half-life: the cached leaf.
        let later = now + LEAF_LIFETIME / 2 - Duration::from_secs(60);
        let same = od
            .certificate(8443, LOCAL, Some("foo.test"), later)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        // After: a new leaf, valid well beyond the old one.
        let past_half = now + LEAF_LIFETIME / 2 + Duration::from_secs(60);
        let renewed = od
            .certificate(8443, LOCAL, Some("foo.test"), past_half)
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &renewed));
        s.verify(
            &renewed,
            "foo.test",
            now + LEAF_LIFETIME + Duration::from_secs(3600),
        )
        .unwrap();
        assert!(s
            .verify(
                &first,
                "foo.test",
                now + LEAF_LIFETIME + Duration::from_secs(3600)
            )
            .is_err());
        assert_eq!(od.cached(), 1);
    }
}
