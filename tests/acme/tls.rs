//! TLS without ACME: the internal CA (`localhost`, IPs and `tls internal` verify
//! against the root `bellhop ca-root` prints), session resumption, and the
//! handshake timeout.

use std::sync::Arc;

use bellhop::config::TlsMode;
use bellhop::InternalCa;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::support::net::{https_get, Listeners};
use crate::support::{config, logs, TempDir, Tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ca_chain_verifies_for_localhost_and_ip() {
    logs::capture();
    let listeners = Listeners::bind().await;
    let state = TempDir::new("state");
    let cfg = config(
        // No ACME at all: the CA URL is never contacted.
        "https://127.0.0.1:9/dir",
        std::path::Path::new("/nonexistent"),
        state.path(),
        listeners.http_port(),
        listeners.https_port(),
        &[
            ("localhost", TlsMode::Auto),
            ("127.0.0.1", TlsMode::Auto),
            ("internal.test", TlsMode::Internal),
        ],
    );
    let tls = Tls::new();
    let addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());
    let manager = tls.manager(&cfg);
    manager.start();

    // What `bellhop ca-root` prints: the path and the PEM.
    let root_path = InternalCa::root_path(state.path());
    let pem = std::fs::read(&root_path).expect("root written at start");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    let roots = Arc::new(roots);
    for name in ["localhost", "127.0.0.1", "internal.test"] {
        let (status, _) = https_get(addr, name, &roots, "/")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(status, 200, "{name}");
    }
    // A name that is not configured fails the handshake cleanly.
    assert!(https_get(addr, "other.test", &roots, "/").await.is_err());
}

/// An internal-CA setup for `localhost` served by the test listener.
async fn localhost_server(
    state: &TempDir,
) -> (
    std::net::SocketAddr,
    Arc<rustls::RootCertStore>,
    Tls,
    bellhop::CertManager,
) {
    let listeners = Listeners::bind().await;
    let cfg = config(
        "https://127.0.0.1:9/dir",
        std::path::Path::new("/nonexistent"),
        state.path(),
        listeners.http_port(),
        listeners.https_port(),
        &[("localhost", TlsMode::Auto)],
    );
    let tls = Tls::new();
    let addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());
    let manager = tls.manager(&cfg);
    let pem = std::fs::read(InternalCa::root_path(state.path())).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&pem).unwrap())
        .unwrap();
    (addr, Arc::new(roots), tls, manager)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_with_tickets() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let state = TempDir::new("state");
    let (addr, roots, _tls, _manager) = localhost_server(&state).await;
    let config = crate::support::net::client_config(&roots, &[b"http/1.1"]);
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        kinds.push(tls.get_ref().1.handshake_kind());
        // Read a response so the client processes the server's session tickets.
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        assert!(response.starts_with(b"HTTP/1.1 200"));
    }
    assert_eq!(
        kinds,
        vec![
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_cuts_silent_clients() {
    use bellhop::{CertResolver, ChallengeCerts, TlsError, TlsTerminator};
    use std::time::{Duration, Instant};
    let terminator = TlsTerminator::new(
        Arc::new(CertResolver::new()),
        Arc::new(ChallengeCerts::new()),
    )
    .unwrap()
    .with_handshake_timeout(Duration::from_millis(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A client that connects and never says a word.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let started = Instant::now();
    let result = terminator.accept(tcp).await;
    assert!(matches!(result, Err(TlsError::HandshakeTimeout(_))));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_alpn_and_acme_tls_without_challenge_are_refused() {
    let state = TempDir::new("state");
    let (addr, roots, _tls, _manager) = localhost_server(&state).await;
    // Offering only a protocol we don't speak fails the handshake.
    assert!(
        crate::support::net::tls_connect(addr, "localhost", &roots, &[b"spdy/1"])
            .await
            .is_err()
    );
    // acme-tls/1 for a name without a pending challenge gets no certificate at
    // all, never the real one.
    assert!(
        crate::support::net::tls_connect(addr, "localhost", &roots, &[b"acme-tls/1"])
            .await
            .is_err()
    );
    // Both protocols: served normally.
    let tls = crate::support::net::tls_connect(addr, "localhost", &roots, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_names_and_a_bad_config_changes_nothing() {
    let state = TempDir::new("state");
    let cfg = |names: &[(&str, TlsMode)]| {
        config(
            "https://127.0.0.1:9/dir",
            std::path::Path::new("/nonexistent"),
            state.path(),
            1,
            2,
            names,
        )
    };
    let tls = Tls::new();
    let manager = tls.manager(&cfg(&[
        ("a.test", TlsMode::Internal),
        ("b.test", TlsMode::Internal),
    ]));
    manager.start();
    assert_eq!(tls.resolver.names(), vec!["a.test", "b.test"]);
    let b_before = tls.resolver.get("b.test").unwrap();

    manager
        .update(&cfg(&[
            ("b.test", TlsMode::Internal),
            ("c.test", TlsMode::Internal),
        ]))
        .unwrap();
    assert_eq!(tls.resolver.names(), vec!["b.test", "c.test"]);
    // An unchanged name keeps its certificate.
    assert!(Arc::ptr_eq(&tls.resolver.get("b.test").unwrap(), &b_before));

    // A config whose certificate files are missing is refused as a whole.
    let missing = TlsMode::Files {
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    };
    let err = manager
        .update(&cfg(&[("d.test", missing), ("e.test", TlsMode::Internal)]))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    assert_eq!(tls.resolver.names(), vec!["b.test", "c.test"]);
}
