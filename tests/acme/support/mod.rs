//! Shared test support: Pebble, sockets, temp dirs, configs, waiting.

pub mod cluster;
pub mod dns;
pub mod logs;
pub mod net;
pub mod pebble;
#[path = "../../common/ports.rs"]
pub mod ports;
pub mod redis;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bellhop::config::{Config, HostPattern, Options, Scheme, Site, SiteAddress, TlsMode};
use bellhop::Http01Tokens;
use bellhop::{CertEvent, CertManager};
use bellhop::{CertResolver, ChallengeCerts, TlsTerminator};
use tokio::sync::broadcast;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory under the system temp dir.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "bellhop-test-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`config`] for bellhop using `pebble` as its CA, serving on `listeners`.
pub fn pebble_config(
    pebble: &pebble::Pebble,
    state_dir: &Path,
    listeners: &net::Listeners,
    sites: &[(&str, TlsMode)],
) -> Config {
    config(
        &pebble.directory_url,
        &pebble.api_root_path,
        state_dir,
        listeners.http_port(),
        listeners.https_port(),
        sites,
    )
}

/// A config with one HTTPS site per `(name, tls)`, pointed at a CA.
pub fn config(
    directory_url: &str,
    ca_root: &Path,
    state_dir: &Path,
    http_port: u16,
    https_port: u16,
    sites: &[(&str, TlsMode)],
) -> Config {
    Config {
        options: Options {
            acme_ca: directory_url.to_string(),
            acme_ca_root: Some(ca_root.to_path_buf()),
            state_dir: state_dir.to_path_buf(),
            http_port,
            https_port,
            email: Some("test@example.com".into()),
            ..Options::default()
        },
        sites: sites
            .iter()
            .map(|(name, tls)| Site {
                addresses: vec![SiteAddress {
                    scheme: Scheme::Https,
                    host: match name.parse() {
                        Ok(ip) => HostPattern::Ip(ip),
                        Err(_) => HostPattern::Name(name.to_string()),
                    },
                    port: None,
                }],
                tls: tls.clone(),
                hsts: None,
                routes: Vec::new(),
                bind: None,
                log: None,
            })
            .collect(),
    }
}

/// The TLS side of a bellhop instance under test.
pub struct Tls {
    /// SNI resolver.
    pub resolver: Arc<CertResolver>,
    /// The terminator the listeners use.
    pub terminator: Arc<TlsTerminator>,
    /// HTTP-01 tokens.
    pub tokens: Arc<Http01Tokens>,
}

impl Tls {
    /// Fresh, empty stores.
    pub fn new() -> Tls {
        let resolver = Arc::new(CertResolver::new());
        let challenges = Arc::new(ChallengeCerts::new());
        let terminator = Arc::new(TlsTerminator::new(resolver.clone(), challenges).unwrap());
        Tls {
            resolver,
            terminator,
            tokens: Arc::new(Http01Tokens::new()),
        }
    }

    /// A manager for `config` publishing into these stores (not started).
    pub fn manager(&self, config: &Config) -> CertManager {
        CertManager::new(
            config,
            self.resolver.clone(),
            self.terminator.challenge_certs().clone(),
            self.tokens.clone(),
        )
        .expect("CertManager::new")
    }
}

/// Waits for the next event about `name`, failing the test after `limit`.
pub async fn next_event(
    events: &mut broadcast::Receiver<CertEvent>,
    name: &str,
    limit: Duration,
) -> CertEvent {
    next_event_among(events, &[name], limit).await
}

/// Waits for the next event about any of `names` (their orders run
/// concurrently, so their events come in any order), failing after `limit`.
pub async fn next_event_among(
    events: &mut broadcast::Receiver<CertEvent>,
    names: &[&str],
    limit: Duration,
) -> CertEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    let (CertEvent::Obtained { name, .. } | CertEvent::Failed { name, .. }) =
                        &event;
                    if names.contains(&name.as_str()) {
                        return event;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| {
        panic!(
            "no certificate event for {names:?} within {limit:?}\n{}",
            names.iter().map(|n| logs::show(n)).collect::<String>()
        )
    })
}

/// Expects the next event about `name` to be `Obtained`.
pub async fn expect_obtained(
    events: &mut broadcast::Receiver<CertEvent>,
    name: &str,
    pebble: &pebble::Pebble,
) {
    match next_event(events, name, Duration::from_secs(60)).await {
        CertEvent::Obtained { .. } => {}
        CertEvent::Failed { error, .. } => panic!(
            "obtaining {name} failed: {error}\n{}{}",
            logs::show(name),
            pebble.logs()
        ),
    }
}
