//! Renewal of a short-lived certificate, swapped in without touching open connections.

use std::time::{Duration, SystemTime};

use bellhop::config::TlsMode;
use bellhop::CertEvent;

use crate::support::net::{Conn, Listeners};
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::{expect_obtained, logs, next_event, pebble_config, TempDir, Tls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificate_is_renewed_and_hot_swapped() {
    logs::capture();
    let listeners = Listeners::bind().await;
    let mut options = PebbleOptions::new(listeners.http_port(), listeners.https_port());
    // Certificates shorter than 10 days renew at half their lifetime: ~8 s here.
    options.validity_secs = Some(16);
    let pebble = Pebble::start(options).await;
    let state = TempDir::new("state");
    let name = "renew.test";
    let cfg = pebble_config(&pebble, state.path(), &listeners, &[(name, TlsMode::Auto)]);
    let tls = Tls::new();
    let addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());
    let manager = tls.manager(&cfg);
    let mut events = manager.events();
    manager.start();
    expect_obtained(&mut events, name, &pebble).await;
    let first_obtained = SystemTime::now();
    let roots = pebble.issuing_roots().await;

    // A connection opened on the first certificate, kept alive across the swap.
    let mut old = Conn::open(addr, name, &roots).await.expect("connect");
    assert_eq!(old.get("/").await.expect("GET").0, 200);
    let stored_before = std::fs::read(manager.store().cert_path(name)).unwrap();

    match next_event(&mut events, name, Duration::from_secs(30)).await {
        CertEvent::Obtained { .. } => {}
        CertEvent::Failed { error, .. } => panic!("renewal failed: {error}"),
    }
    let renewed_after = first_obtained.elapsed().unwrap();
    // Renewed around half of the 16 s lifetime, not at once and not at expiry.
    assert!(
        renewed_after >= Duration::from_secs(5) && renewed_after <= Duration::from_secs(12),
        "renewed after {renewed_after:?}"
    );

    let mut new = Conn::open(addr, name, &roots)
        .await
        .expect("connect after renewal");
    assert_ne!(
        new.peer_leaf, old.peer_leaf,
        "new handshakes still get the old certificate"
    );
    assert_eq!(new.get("/").await.expect("GET").0, 200);
    // The old connection is untouched by the swap.
    assert_eq!(
        old.get("/").await.expect("GET on the old connection").0,
        200
    );
    assert_ne!(
        std::fs::read(manager.store().cert_path(name)).unwrap(),
        stored_before
    );
}
