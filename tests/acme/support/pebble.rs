//! A private Pebble ACME server (plus pebble-challtestsrv as its DNS) per test.
//!
//! Each `Pebble` owns a temp dir, a freshly generated HTTPS certificate for its
//! API, reserved ports ([`Port`]), and two child processes that are killed on
//! drop (and, as a backstop if the test process itself dies, by `timeout` after a
//! few minutes). Its validation ports are the ones the test's own listeners use,
//! so tests with different listeners can run in parallel.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::net::https_get;
use super::ports::Port;
use super::TempDir;

/// Pebble processes die at the latest after this, even if the test process is killed.
const PROCESS_LIFETIME_SECS: u64 = 300;

/// Knobs of one Pebble instance.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Port Pebble dials for HTTP-01 (the test's plain HTTP listener).
    pub http_port: u16,
    /// Port Pebble dials for TLS-ALPN-01 (the test's HTTPS listener).
    pub tls_port: u16,
    /// `certificateValidityPeriod` in seconds (Pebble's default is 5 years).
    pub validity_secs: Option<u64>,
    /// `PEBBLE_WFE_NONCEREJECT` percentage.
    pub nonce_reject: u8,
    /// Names Pebble refuses to issue for (`rejectedIdentifier`).
    pub blocklist: Vec<String>,
}

impl PebbleOptions {
    /// Validation on these ports, no nonce rejection, default validity.
    pub fn new(http_port: u16, tls_port: u16) -> Self {
        PebbleOptions {
            http_port,
            tls_port,
            validity_secs: None,
            nonce_reject: 0,
            blocklist: Vec::new(),
        }
    }
}

/// A running Pebble; stopped on drop.
pub struct Pebble {
    children: Vec<Child>,
    /// ACME directory URL.
    pub directory_url: String,
    /// The root that signs Pebble's own HTTPS (give to `acme-ca-root`).
    pub api_root_path: PathBuf,
    api_root: CertificateDer<'static>,
    management: SocketAddr,
    dns: SocketAddr,
    dir: TempDir,
    /// Held until the processes are gone, so no other test reuses the ports.
    _ports: Vec<Port>,
}

impl Pebble {
    /// Starts challtestsrv and Pebble and waits until both answer: the ACME
    /// directory over HTTPS, and DNS (a validation that finds no resolver fails
    /// the order and costs the name a minute of backoff).
    pub async fn start(options: PebbleOptions) -> Pebble {
        let dir = TempDir::new("pebble");
        let (api_root, api_root_path, cert_path, key_path) = write_api_cert(dir.path());
        let ports: Vec<Port> = (0..4).map(|_| Port::reserve()).collect();
        let [listen, management, dns, challtest_mgmt] = [0, 1, 2, 3].map(|i| ports[i].number());
        let mut pebble_config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": options.http_port,
                "tlsPort": options.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        if !options.blocklist.is_empty() {
            pebble_config["pebble"]["domainBlocklist"] = options.blocklist.clone().into();
        }
        if let Some(validity) = options.validity_secs {
            pebble_config["pebble"]["certificateValidityPeriod"] = validity.into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, pebble_config.to_string()).expect("write pebble config");

        let mut children = Vec::new();
        // Every name resolves to 127.0.0.1 and has no AAAA record: Pebble's
        // validator dials the first address only, and tries IPv6 first.
        children.push(spawn(
            dir.path(),
            "challtestsrv",
            "pebble-challtestsrv",
            &[
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-management",
                &format!("127.0.0.1:{challtest_mgmt}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ],
            &[],
        ));
        children.push(spawn(
            dir.path(),
            "pebble",
            "pebble",
            &[
                "-config",
                &config_path.display().to_string(),
                "-dnsserver",
                &format!("127.0.0.1:{dns}"),
            ],
            &[
                ("PEBBLE_VA_NOSLEEP", "1".to_string()),
                ("PEBBLE_WFE_NONCEREJECT", options.nonce_reject.to_string()),
                ("PEBBLE_AUTHZREUSE", "0".to_string()),
            ],
        ));
        let mut pebble = Pebble {
            children,
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            api_root_path,
            api_root,
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            dns: SocketAddr::from(([127, 0, 0, 1], dns)),
            dir,
            _ports: ports,
        };
        pebble
            .wait_ready(SocketAddr::from(([127, 0, 0, 1], listen)))
            .await;
        pebble
    }

    async fn wait_ready(&mut self, api: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut api_up, mut dns_up) = (false, false);
        loop {
            if !api_up {
                api_up = matches!(
                    https_get(api, "localhost", &self.api_roots(), "/dir").await,
                    Ok((200, _))
                );
            }
            if !dns_up {
                dns_up = super::dns::answers(self.dns, "ready.test").await;
            }
            if api_up && dns_up {
                return;
            }
            let exited = self
                .children
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                panic!(
                    "Pebble did not come up (api: {api_up}, dns: {dns_up}, exited: {exited}); \
                     logs in {}:\n{}",
                    self.dir.path().display(),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A root store trusting Pebble's API certificate.
    pub fn api_roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.api_root.clone()).expect("api root");
        Arc::new(roots)
    }

    /// The root that issued certificates chain to. Pebble makes a new one at
    /// every start, so it is fetched from the management port.
    pub async fn issuing_roots(&self) -> Arc<rustls::RootCertStore> {
        let (status, body) = https_get(self.management, "localhost", &self.api_roots(), "/roots/0")
            .await
            .expect("fetch /roots/0");
        assert_eq!(status, 200, "GET /roots/0: {body}");
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(body.as_bytes()) {
            roots.add(cert.expect("root PEM")).expect("add root");
        }
        Arc::new(roots)
    }

    /// How many orders Pebble has accepted so far (its "Added order" log lines).
    pub fn order_count(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("pebble.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Added order"))
            .count()
    }

    /// Both processes' output, for assertion messages.
    pub fn logs(&self) -> String {
        ["challtestsrv", "pebble"]
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                format!("--- {n} ---\n{log}")
            })
            .collect()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGTERM reaches the program through `timeout`; SIGKILL would only
            // kill `timeout` and orphan the program until its deadline.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }
}

fn spawn(dir: &Path, label: &str, program: &str, args: &[&str], env: &[(&str, String)]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{label}.log"))).expect("log file");
    let log2 = log.try_clone().expect("log file");
    let mut command = Command::new("timeout");
    command
        .arg(PROCESS_LIFETIME_SECS.to_string())
        .arg(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // Pebble reads these; make sure no outer setting leaks in.
    command.env_remove("PEBBLE_VA_ALWAYS_VALID");
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program} (Debian package `pebble`): {e}"))
}

/// Generates a throw-away root and a `localhost`/`127.0.0.1` leaf for Pebble's API.
fn write_api_cert(dir: &Path) -> (CertificateDer<'static>, PathBuf, PathBuf, PathBuf) {
    let root_key = rcgen::KeyPair::generate().unwrap();
    let mut root_params = rcgen::CertificateParams::default();
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test Pebble API root");
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .unwrap();
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &root).unwrap();
    let root_path = dir.join("api-root.pem");
    let cert_path = dir.join("api-cert.pem");
    let key_path = dir.join("api-key.pem");
    std::fs::write(&root_path, root.pem()).unwrap();
    let mut chain = std::fs::File::create(&cert_path).unwrap();
    chain.write_all(leaf.pem().as_bytes()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    (root.der().clone(), root_path, cert_path, key_path)
}
