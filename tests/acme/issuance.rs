//! Issuance against Pebble: each challenge type, fallback, failure, restart, nonces.

use std::time::{Duration, Instant};

use bellhop::config::{AcmeChallenge, TlsMode};
use bellhop::{CertEvent, NameStatus};

use crate::support::net::{https_get, Listeners};
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::ports::Port;
use crate::support::{
    config, expect_obtained, logs, next_event, next_event_among, pebble_config, TempDir, Tls,
};

fn pinned(challenge: AcmeChallenge) -> TlsMode {
    TlsMode::Acme { challenge }
}

/// What [`issue_and_fetch`] observed.
struct Issuance {
    /// Manager start to the last verified HTTPS response.
    elapsed: Duration,
    /// bellhop's log from before the manager started.
    log: logs::Since,
    /// Pebble's API origin with a trailing `/`, as it appears in request URIs.
    ca: String,
}

/// Issues one certificate per name (all in one config) with Pebble validating
/// only the given ports, then checks a verified HTTPS request for each name and
/// how the key, its directory and the account are stored.
async fn issue_and_fetch(
    names: &[&str],
    tls_mode: TlsMode,
    pebble_http_port: Option<u16>,
    pebble_tls_port: Option<u16>,
    nonce_reject: u8,
) -> Issuance {
    let log = logs::capture();
    let listeners = Listeners::bind().await;
    let mut options = PebbleOptions::new(
        pebble_http_port.unwrap_or(listeners.http_port()),
        pebble_tls_port.unwrap_or(listeners.https_port()),
    );
    options.nonce_reject = nonce_reject;
    let pebble = Pebble::start(options).await;
    let state = TempDir::new("state");
    let sites: Vec<(&str, TlsMode)> = names.iter().map(|n| (*n, tls_mode.clone())).collect();
    let cfg = pebble_config(&pebble, state.path(), &listeners, &sites);
    let tls = Tls::new();
    let addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());

    let started = Instant::now();
    let manager = tls.manager(&cfg);
    let mut events = manager.events();
    manager.start();
    let mut pending: Vec<&str> = names.to_vec();
    while !pending.is_empty() {
        // Names are issued concurrently; take the events in any order.
        let event = next_event_among(&mut events, &pending, Duration::from_secs(60)).await;
        let CertEvent::Obtained { name, .. } = event else {
            panic!("{event:?}\n{}{}", log.show(".test"), pebble.logs());
        };
        pending.retain(|n| *n != name);
    }
    let roots = pebble.issuing_roots().await;
    for name in names {
        let (status, body) = https_get(addr, name, &roots, "/")
            .await
            .expect("verified HTTPS GET");
        assert_eq!(
            (status, body.as_str()),
            (200, format!("hello {name}").as_str())
        );
    }
    let elapsed = started.elapsed();

    // Stored with the promised permissions.
    use std::os::unix::fs::PermissionsExt;
    for name in names {
        let key = manager.store().key_path(name);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        let dir_mode = std::fs::metadata(key.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
    }
    let account = bellhop::account_path(state.path(), &pebble.directory_url);
    let mode = std::fs::metadata(&account).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", account.display());
    Issuance {
        elapsed,
        log,
        ca: format!("{}/", pebble.directory_url.trim_end_matches("/dir")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_only() {
    // Pebble's TLS-ALPN-01 port points nowhere, so only HTTP-01 can succeed.
    let nowhere = Port::reserve();
    let run = issue_and_fetch(
        &["http01.test"],
        pinned(AcmeChallenge::Http01),
        None,
        Some(nowhere.number()),
        0,
    )
    .await;
    eprintln!(
        "http-01: manager start → verified HTTPS 200 in {:?}",
        run.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_only() {
    // Pebble's HTTP-01 port points nowhere, so only TLS-ALPN-01 can succeed.
    let nowhere = Port::reserve();
    let run = issue_and_fetch(
        &["alpn.test"],
        pinned(AcmeChallenge::TlsAlpn01),
        Some(nowhere.number()),
        None,
        0,
    )
    .await;
    eprintln!(
        "tls-alpn-01: manager start → verified HTTPS 200 in {:?}",
        run.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_falls_back_from_tls_alpn01_to_http01() {
    // TLS-ALPN-01 (tried first) cannot reach us; HTTP-01 can, and did: only
    // the HTTP-01 port leads to our listeners.
    let nowhere = Port::reserve();
    let name = "fallback.test";
    let run = issue_and_fetch(&[name], TlsMode::Auto, None, Some(nowhere.number()), 0).await;
    // The CA's own verdict on a TLS-ALPN-01 attempt at the dead port, relayed
    // by bellhop before it moved on, and before the certificate arrived.
    let lines = run.log.lines_with(name);
    let shown = lines.join("\n");
    let fell_back = lines
        .iter()
        .position(|l| {
            l.contains("trying the next challenge type")
                && l.contains(&format!(
                    "tls-alpn-01 validation of {name} failed: urn:ietf:params:acme:error:"
                ))
                && l.contains(&format!("127.0.0.1:{}", nowhere.number()))
        })
        .unwrap_or_else(|| panic!("no failed TLS-ALPN-01 attempt before the fallback:\n{shown}"));
    let obtained = lines
        .iter()
        .position(|l| l.contains("certificate obtained"))
        .unwrap_or_else(|| panic!("no 'certificate obtained' line:\n{shown}"));
    assert!(fell_back < obtained, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_reject_50_still_issues() {
    // About nine signed requests per name, each nonce rejected with a chance of
    // one half: three names make a run without any rejection (which would prove
    // nothing) a one-in-ten-million event.
    let names = ["nonces-1.test", "nonces-2.test", "nonces-3.test"];
    let run = issue_and_fetch(&names, TlsMode::Auto, None, None, 50).await;
    // Every rejected request was repeated: the orders could not complete otherwise.
    let rejected = run
        .log
        .lines_with(&run.ca)
        .into_iter()
        .filter(|l| l.contains("the CA rejected a nonce"))
        .count();
    assert!(rejected >= 1, "no badNonce seen\n{}", run.log.show(&run.ca));
    eprintln!(
        "NONCEREJECT=50: {} names issued in {:?}, {rejected} nonces rejected and retried",
        names.len(),
        run.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_serves_nothing_and_backs_off() {
    logs::capture();
    let listeners = Listeners::bind().await;
    // Nothing answers on the port Pebble validates HTTP-01 on.
    let nowhere = Port::reserve();
    let pebble = Pebble::start(PebbleOptions::new(nowhere.number(), listeners.https_port())).await;
    let state = TempDir::new("state");
    let name = "fails.test";
    let cfg = pebble_config(
        &pebble,
        state.path(),
        &listeners,
        &[(name, pinned(AcmeChallenge::Http01))],
    );
    let tls = Tls::new();
    let addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());
    let manager = tls.manager(&cfg);
    let mut events = manager.events();
    let before = std::time::SystemTime::now();
    manager.start();
    let CertEvent::Failed {
        error,
        next_attempt,
        ..
    } = next_event(&mut events, name, Duration::from_secs(60)).await
    else {
        panic!("validation against a dead port succeeded");
    };
    // The CA's problem, verbatim, in the error.
    assert!(
        error.contains(
            "http-01 validation of fails.test failed: urn:ietf:params:acme:error:connection"
        ),
        "{error}"
    );
    // First backoff: a minute (plus jitter).
    let wait = next_attempt.duration_since(before).unwrap();
    assert!(
        wait >= Duration::from_secs(59) && wait <= Duration::from_secs(80),
        "{wait:?}"
    );
    // Nothing served: the handshake for that name fails.
    assert!(tls.resolver.get(name).is_none());
    let roots = pebble.issuing_roots().await;
    assert!(https_get(addr, name, &roots, "/").await.is_err());
    // The failure is persisted so a restart waits too.
    let status = NameStatus::load(&manager.store().name_dir(name).join("status.json")).unwrap();
    assert_eq!(status.failures, 1);
    assert!(status
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("connection"));
    assert!(status.retry_not_before().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_account_and_certificates_with_ca_down() {
    logs::capture();
    let listeners = Listeners::bind().await;
    let (http_port, https_port) = (listeners.http_port(), listeners.https_port());
    let pebble = Pebble::start(PebbleOptions::new(http_port, https_port)).await;
    let state = TempDir::new("state");
    let cfg_one = config(
        &pebble.directory_url,
        &pebble.api_root_path,
        state.path(),
        http_port,
        https_port,
        &[("one.test", TlsMode::Auto)],
    );
    let tls = Tls::new();
    let addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());
    let manager = tls.manager(&cfg_one);
    let mut events = manager.events();
    manager.start();
    expect_obtained(&mut events, "one.test", &pebble).await;
    let account_path = bellhop::account_path(state.path(), &pebble.directory_url);
    let account_before = std::fs::read(&account_path).unwrap();
    manager.shutdown();
    drop(manager);

    // Restart with a second name: same account, the first cert is not re-ordered.
    let cfg_two = config(
        &pebble.directory_url,
        &pebble.api_root_path,
        state.path(),
        http_port,
        https_port,
        &[("one.test", TlsMode::Auto), ("two.test", TlsMode::Auto)],
    );
    let manager = tls.manager(&cfg_two);
    let mut events = manager.events();
    manager.start();
    expect_obtained(&mut events, "two.test", &pebble).await;
    assert_eq!(
        std::fs::read(&account_path).unwrap(),
        account_before,
        "account was re-created"
    );
    let roots = pebble.issuing_roots().await;
    manager.shutdown();
    drop(manager);

    // Stop the CA; a fresh process (fresh resolver) serves both at once.
    drop(pebble);
    let tls2 = Tls::new();
    let manager = tls2.manager(&cfg_two);
    assert!(
        tls2.resolver.get("one.test").is_some(),
        "stored cert not served at start"
    );
    assert!(
        tls2.resolver.get("two.test").is_some(),
        "stored cert not served at start"
    );
    let mut events = manager.events();
    manager.start();
    // Serve through the new stores on a new listener.
    let listeners = Listeners::bind().await;
    let addr2 = listeners.serve(tls2.terminator.clone(), tls2.tokens.clone());
    for name in ["one.test", "two.test"] {
        let (status, body) = https_get(addr2, name, &roots, "/")
            .await
            .expect("verified GET after restart");
        assert_eq!((status, body), (200, format!("hello {name}")));
    }
    // And nothing was attempted: the certificates are far from renewal.
    assert!(events.try_recv().is_err());
    let _ = addr;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_rejection_is_logged_verbatim_and_backoff_survives_restart() {
    logs::capture();
    let listeners = Listeners::bind().await;
    let mut options = PebbleOptions::new(listeners.http_port(), listeners.https_port());
    options.blocklist = vec!["blocked.test".into()];
    let pebble = Pebble::start(options).await;
    let state = TempDir::new("state");
    let cfg = pebble_config(
        &pebble,
        state.path(),
        &listeners,
        &[
            ("blocked.test", TlsMode::Auto),
            ("fine.test", TlsMode::Auto),
        ],
    );
    let tls = Tls::new();
    let _addr = listeners.serve(tls.terminator.clone(), tls.tokens.clone());
    let manager = tls.manager(&cfg);
    let mut events = manager.events();
    manager.start();
    let CertEvent::Failed { error, .. } =
        next_event(&mut events, "blocked.test", Duration::from_secs(30)).await
    else {
        panic!("a blocked name was issued");
    };
    // Pebble's problem document, verbatim.
    assert!(
        error.contains("urn:ietf:params:acme:error:rejectedIdentifier"),
        "{error}"
    );
    assert!(error.contains("blocked.test"), "{error}");
    // Another name is not held up by the failing one.
    let mut events_fine = manager.events();
    if tls.resolver.get("fine.test").is_none() {
        expect_obtained(&mut events_fine, "fine.test", &pebble).await;
    }
    manager.shutdown();
    drop(manager);

    // A restart waits out the persisted backoff instead of asking again at once
    // (a first attempt happens within milliseconds of start).
    let manager = tls.manager(&cfg);
    let mut events = manager.events();
    manager.start();
    let quiet = tokio::time::timeout(Duration::from_secs(2), events.recv()).await;
    assert!(
        quiet.is_err(),
        "attempted again right after restart: {quiet:?}"
    );
    let status =
        NameStatus::load(&manager.store().name_dir("blocked.test").join("status.json")).unwrap();
    assert_eq!(status.failures, 1);
}
