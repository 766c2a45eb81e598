//! A host-less `tls internal` site (`"https://:PORT" { tls internal }`) through
//! the real server: leaves are issued during the handshake for any name, and for
//! the IP a client without SNI connected to, verified against the root that
//! `bellhop ca-root` prints. Other ports never issue for unknown names.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bellhop::{Server, ShutdownHandle};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::support::net::{https_get, tls_connect, Conn};
use crate::support::ports::Port;
use crate::support::{logs, TempDir};

/// Shuts the server down on drop.
struct Running(ShutdownHandle);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// Writes `proxyfile` to `dir/Proxyfile`, then binds and runs the server.
async fn run(dir: &Path, proxyfile: &str) -> Running {
    let path = dir.join("Proxyfile");
    std::fs::write(&path, proxyfile).unwrap();
    let config = bellhop::config::load(&path).expect("Proxyfile");
    let server = Server::bind(config).await.expect("Server::bind");
    let running = Running(server.shutdown_handle());
    tokio::spawn(async move {
        if let Err(e) = server.run().await {
            panic!("server failed: {e:#}");
        }
    });
    running
}

/// The root certificate as `bellhop ca-root --config` prints it (PEM last).
fn ca_root(dir: &Path) -> Arc<rustls::RootCertStore> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bellhop"))
        .args(["ca-root", "--config"])
        .arg(dir.join("Proxyfile"))
        .output()
        .expect("bellhop ca-root");
    assert!(
        output.status.success(),
        "bellhop ca-root: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&output.stdout).expect("PEM in ca-root output"))
        .unwrap();
    Arc::new(roots)
}

/// A name no config mentions, different on every run.
fn random_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("r{nanos:x}-{}.example", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostless_internal_site_issues_for_any_name_and_for_the_ip() {
    logs::capture();
    let dir = TempDir::new("ondemand");
    let ports = [Port::reserve(), Port::reserve(), Port::reserve()];
    let [http_port, https_port, any_port] = ports.each_ref().map(Port::number);
    let state = dir.path().join("state");
    // `claimed.test` on the on-demand port belongs to an ACME site whose CA is
    // unreachable: it must keep failing rather than get an internal leaf.
    let proxyfile = format!(
        r#"options {{
    state-dir "{state}"
    http-port {http_port}
    https-port {https_port}
    acme-ca "https://127.0.0.1:9/directory"
}}
"https://:{any_port}" {{
    tls internal
    respond "any"
}}
"https://claimed.test:{any_port}" {{
    respond "app"
}}
localhost {{
    respond "local"
}}
"#,
        state = state.display()
    );
    let _server = run(dir.path(), &proxyfile).await;
    let roots = ca_root(dir.path());
    let any = SocketAddr::from(([127, 0, 0, 1], any_port));
    let https = SocketAddr::from(([127, 0, 0, 1], https_port));

    // SNI `foo.test` and a random name: each gets its own verified leaf.
    let mut foo = Conn::open(any, "foo.test", &roots)
        .await
        .expect("foo.test verifies");
    assert_eq!(foo.get("/").await.unwrap(), (200, "any".to_string()));
    let random = random_name();
    let mut other = Conn::open(any, &random, &roots)
        .await
        .unwrap_or_else(|e| panic!("{random} does not verify: {e}"));
    assert_eq!(other.get("/").await.unwrap(), (200, "any".to_string()));
    assert_ne!(foo.peer_leaf, other.peer_leaf);
    // Again: served from the cache, the same leaf.
    let again = Conn::open(any, "foo.test", &roots).await.unwrap();
    assert_eq!(again.peer_leaf, foo.peer_leaf);

    // By IP (rustls, like other clients, sends no SNI for an IP address): the
    // leaf carries the address connected to.
    tls_connect(any, "127.0.0.1", &roots, &[b"http/1.1"])
        .await
        .expect("127.0.0.1 without SNI verifies");
    assert_eq!(
        https_get(any, "127.0.0.1", &roots, "/").await.unwrap(),
        (200, "any".to_string())
    );
    // IPv6 loopback too, where the host has it.
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, any_port));
    if tokio::net::TcpStream::connect(v6).await.is_ok() {
        assert_eq!(
            https_get(v6, "::1", &roots, "/").await.unwrap(),
            (200, "any".to_string())
        );
    }

    // A name another site on the port claims gets no on-demand leaf: its ACME
    // certificate doesn't exist, so the handshake fails verification.
    assert!(https_get(any, "claimed.test", &roots, "/").await.is_err());

    // The HTTPS port has no host-less `tls internal` site: `localhost` works,
    // random names and IP connections are not issued for and fail verification.
    assert_eq!(
        https_get(https, "localhost", &roots, "/").await.unwrap(),
        (200, "local".to_string())
    );
    for name in [random_name().as_str(), "foo.test", "127.0.0.1"] {
        assert!(
            https_get(https, name, &roots, "/").await.is_err(),
            "{name} verified on a port without on-demand issuance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_on_demand_without_a_hostless_internal_site() {
    logs::capture();
    let dir = TempDir::new("ondemand-off");
    let ports = [Port::reserve(), Port::reserve(), Port::reserve()];
    let [http_port, https_port, ip_port] = ports.each_ref().map(Port::number);
    let state = dir.path().join("state");
    // Named internal sites only: nothing answers arbitrary names.
    let proxyfile = format!(
        r#"options {{
    state-dir "{state}"
    http-port {http_port}
    https-port {https_port}
    acme-ca "https://127.0.0.1:9/directory"
}}
"https://127.0.0.1:{ip_port}" {{
    respond "ip"
}}
internal.test {{
    tls internal
    respond "named"
}}
"#,
        state = state.display()
    );
    let _server = run(dir.path(), &proxyfile).await;
    let roots = ca_root(dir.path());
    let ip = SocketAddr::from(([127, 0, 0, 1], ip_port));
    let https = SocketAddr::from(([127, 0, 0, 1], https_port));
    assert_eq!(
        https_get(ip, "127.0.0.1", &roots, "/").await.unwrap(),
        (200, "ip".to_string())
    );
    assert_eq!(
        https_get(https, "internal.test", &roots, "/")
            .await
            .unwrap(),
        (200, "named".to_string())
    );
    for addr in [ip, https] {
        for name in [random_name(), "foo.test".to_string()] {
            assert!(
                https_get(addr, &name, &roots, "/").await.is_err(),
                "{name} verified on {addr}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_switches_on_demand_ports() {
    let dir = TempDir::new("ondemand-reload");
    let state = dir.path().join("state");
    let proxyfile = |catch_all_tls: &str| {
        format!(
            r#"options {{ state-dir "{}"; http-port 18080; https-port 18443 }}
"https://:18444" {{ {catch_all_tls}; respond "any" }}
localhost {{ respond "local" }}
"#,
            state.display()
        )
    };
    let parse = |text: &str| bellhop::config::parse(text, "Proxyfile").expect("Proxyfile");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let pair = rcgen::generate_simple_self_signed(vec!["files.test".to_string()]).unwrap();
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    let files = format!(r#"tls "{}" "{}""#, cert.display(), key.display());

    let tls = crate::support::Tls::new();
    let manager = tls.manager(&parse(&proxyfile("tls internal")));
    let on_demand = tls.resolver.on_demand();
    assert!(on_demand.is_enabled(18444));
    assert!(!on_demand.is_enabled(18443));
    let now = std::time::SystemTime::now();
    let local = std::net::IpAddr::from([127, 0, 0, 1]);
    assert!(on_demand
        .certificate(18444, local, Some("foo.test"), now)
        .is_some());
    assert_eq!(on_demand.cached(), 1);
    // The catch-all switches to certificate files: no more issuance, cache emptied.
    manager.update(&parse(&proxyfile(&files))).unwrap();
    assert!(!on_demand.is_enabled(18444));
    assert!(on_demand
        .certificate(18444, local, Some("foo.test"), now)
        .is_none());
    assert_eq!(on_demand.cached(), 0);
    // And back.
    manager.update(&parse(&proxyfile("tls internal"))).unwrap();
    assert!(on_demand.is_enabled(18444));
}
