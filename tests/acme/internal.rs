//! The internal CA: `localhost` and IPs get certificates that verify against
//! the root `bellhop ca-root` prints.

use std::sync::Arc;

use bellhop::config::TlsMode;
use bellhop::tls::InternalCa;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::support::net::{https_get, Listeners};
use crate::support::{config, init_logging, TempDir, Tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ca_chain_verifies_for_localhost_and_ip() {
    init_logging();
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
