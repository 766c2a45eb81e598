//! What a cluster keeps in Redis besides ACME certificates, and how bellhop
//! reaches that Redis: one internal CA for every instance, `rediss://` with a
//! private CA, a password from `{env.NAME}` or a file, and renewal while
//! Redis is down.
//!
//! The internal-CA sites (`127.0.0.1` on an instance's own port) need no
//! Pebble: the CA is created and fetched through Redis when an instance
//! starts, so an instance that serves a chain verifying against the root in
//! Redis has stored or read it there.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bellhop::config::{
    Config, HostPattern, Options, Scheme, Site, SiteAddress, Storage, StorageRedis, TlsMode,
};
use bellhop::{InternalCa, Server};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::support::cluster::{acme_site, route, served_leaf, start, storage, wait_for_log};
use crate::support::net::https_get;
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::ports::Port;
use crate::support::redis::Redis;
use crate::support::{logs, TempDir};

/// An instance serving `https://127.0.0.1:<port>` with the internal CA.
fn internal_site(state: &TempDir, port: &Port, storage: Storage) -> Config {
    Config {
        options: Options {
            // No ACME: the CA URL is never contacted.
            acme_ca: "https://127.0.0.1:9/dir".into(),
            state_dir: state.path().to_path_buf(),
            http_port: Port::reserve().number(),
            https_port: Port::reserve().number(),
            workers: std::num::NonZeroUsize::new(1),
            storage,
            ..Options::default()
        },
        sites: vec![Site {
            addresses: vec![SiteAddress {
                scheme: Scheme::Https,
                host: HostPattern::Ip([127, 0, 0, 1].into()),
                port: Some(port.number()),
            }],
            tls: TlsMode::Auto,
            hsts: None,
            routes: vec![route("ok", None)],
            bind: None,
            log: None,
        }],
    }
}

fn addr(port: &Port) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port.number()))
}

/// A root store holding exactly `pem`.
fn trusting(pem: &[u8]) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem).expect("a PEM root"))
        .unwrap();
    Arc::new(roots)
}

/// The internal root kept in Redis.
async fn shared_root(redis: &Redis) -> Vec<u8> {
    let mut conn = redis.client().await;
    let root: Option<Vec<u8>> = ::redis::cmd("GET")
        .arg("bellhop:internal/root.pem")
        .query_async(&mut conn)
        .await
        .unwrap();
    root.expect("the internal root is in Redis")
}

/// Asserts that `port` answers over TLS with a chain to `root`.
async fn serves_chain_to(port: &Port, root: &Arc<rustls::RootCertStore>) {
    let (status, body) = https_get(addr(port), "127.0.0.1", root, "/")
        .await
        .unwrap_or_else(|e| panic!("port {}: {e}", port.number()));
    assert_eq!((status, body.as_str()), (200, "ok"));
}

/// The error `Server::bind` gives for `config`, with its causes.
async fn bind_error(config: Config) -> String {
    match Server::bind(config).await {
        Ok(_) => panic!("bellhop started"),
        Err(e) => format!("{e:#}"),
    }
}

/// `bellhop ca-root` for an instance with `state` and `redis`: its stdout,
/// or its stderr when it fails.
fn ca_root_cli(state: &Path, redis: &Redis) -> Result<Vec<u8>, String> {
    let proxyfile = state.join("Proxyfile");
    let text = format!(
        "options {{\n    state-dir \"{}\"\n    storage \"{}\"\n}}\n\"127.0.0.1\" {{ proxy 8000 }}\n",
        state.display(),
        redis.url()
    );
    std::fs::write(&proxyfile, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bellhop"))
        .args(["ca-root", "--config"])
        .arg(&proxyfile)
        .output()
        .expect("bellhop ca-root");
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_ca_is_one_root_for_the_cluster() {
    let log = logs::capture();
    let mut redis = Redis::start().await;
    let secrets = TempDir::new("cluster-ca-key");
    let key_file = secrets.path().join("storage.key");
    std::fs::write(&key_file, [0x24u8; 32]).unwrap();
    let shared = storage(&redis, Some(&key_file));
    let states: Vec<TempDir> = (0..3).map(|_| TempDir::new("cluster-ca")).collect();
    let ports: Vec<Port> = (0..3).map(|_| Port::reserve()).collect();

    // Two instances starting at the same moment make one root between them.
    let (a, b) = tokio::join!(
        start(internal_site(&states[0], &ports[0], shared.clone())),
        start(internal_site(&states[1], &ports[1], shared.clone())),
    );
    let root_pem = shared_root(&redis).await;
    let root = trusting(&root_pem);
    serves_chain_to(&ports[0], &root).await;
    serves_chain_to(&ports[1], &root).await;
    // Each keeps it as the file `bellhop ca-root` prints; the key is sealed.
    for state in &states[..2] {
        assert_eq!(
            std::fs::read(InternalCa::root_path(state.path())).unwrap(),
            root_pem
        );
    }
    let mut conn = redis.client().await;
    let key: Vec<u8> = ::redis::cmd("GET")
        .arg("bellhop:internal/root.key")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(key.starts_with(b"bellhop-sealed-v1:"));
    assert!(!String::from_utf8_lossy(&key).contains("PRIVATE KEY"));
    assert_eq!(log.lines_with("created the cluster's internal CA").len(), 1);
    // `bellhop ca-root` prints that copy, and makes no root of its own where
    // there is none yet.
    let printed = ca_root_cli(states[0].path(), &redis);
    assert!(printed
        .as_ref()
        .is_ok_and(|out| out.ends_with(&root_pem[..])));
    let refused = ca_root_cli(states[2].path(), &redis).unwrap_err();
    assert!(refused.contains("start bellhop once"), "{refused}");
    assert!(!InternalCa::root_path(states[2].path()).exists());

    // Redis down: a restarted instance signs with its copy of that root; a
    // new one refuses to make a root of its own, and says why.
    redis.kill();
    a.stop().await;
    b.stop().await;
    let again = start(internal_site(&states[1], &ports[2], shared.clone())).await;
    serves_chain_to(&ports[2], &root).await;
    wait_for_log(&log, "with the local copy of the cluster's CA").await;
    again.stop().await;
    let error = bind_error(internal_site(&states[2], &Port::reserve(), shared)).await;
    assert!(error.contains("no local copy"), "{error}");
    assert!(error.contains(&redis.url()), "names the storage: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_stores_and_reads_certificates() {
    let _log = logs::capture();
    let redis = Redis::start_tls().await;
    assert!(redis.url().starts_with("rediss://"));
    let over_tls = Storage::Redis(StorageRedis {
        url: redis.url(),
        key_file: None,
        password_file: None,
        ca_root: Some(redis.ca_root()),
    });
    let states: Vec<TempDir> = (0..3).map(|_| TempDir::new("cluster-tls")).collect();
    let ports: Vec<Port> = (0..2).map(|_| Port::reserve()).collect();
    // The first stores the root through TLS, the second (empty state) reads it.
    let first = start(internal_site(&states[0], &ports[0], over_tls.clone())).await;
    let root_pem = shared_root(&redis).await;
    let second = start(internal_site(&states[1], &ports[1], over_tls)).await;
    let root = trusting(&root_pem);
    serves_chain_to(&ports[0], &root).await;
    serves_chain_to(&ports[1], &root).await;
    assert_eq!(
        std::fs::read(InternalCa::root_path(states[1].path())).unwrap(),
        root_pem
    );
    first.stop().await;
    second.stop().await;

    // Without ca-root the system roots decide, and they do not know this CA.
    let system_roots = Storage::Redis(StorageRedis {
        url: redis.url(),
        key_file: None,
        password_file: None,
        ca_root: None,
    });
    let error = bind_error(internal_site(&states[2], &Port::reserve(), system_roots)).await;
    assert!(error.contains(&redis.url()), "names the storage: {error}");
    assert!(error.to_lowercase().contains("cert"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_from_env_and_from_a_file() {
    let _log = logs::capture();
    let password = "b3llhop-test-redis-pw";
    let redis = Redis::start_with_password(password).await;
    // `127.0.0.1:PORT/0`
    let at = redis.url().trim_start_matches("redis://").to_string();
    let states: Vec<TempDir> = (0..4).map(|_| TempDir::new("cluster-pw")).collect();
    let ports: Vec<Port> = (0..2).map(|_| Port::reserve()).collect();

    // `{env.NAME}` in the Proxyfile's storage URL (nextest runs each test in
    // a process of its own, so the variable is this test's alone).
    std::env::set_var("BELLHOP_TEST_REDIS_PASSWORD", password);
    let proxyfile = format!(
        "options {{ storage \"redis://:{{env.BELLHOP_TEST_REDIS_PASSWORD}}@{at}\" }}\n\
         example.com {{ proxy 8000 }}\n"
    );
    let from_env = bellhop::config::parse(&proxyfile, "Proxyfile")
        .expect("Proxyfile")
        .options
        .storage;
    let env_instance = start(internal_site(&states[0], &ports[0], from_env)).await;

    // `password-file`: the first line of the file.
    let secrets = TempDir::new("cluster-pw-file");
    let with_file = |file: &Path| {
        Storage::Redis(StorageRedis {
            url: redis.url(),
            key_file: None,
            password_file: Some(file.to_path_buf()),
            ca_root: None,
        })
    };
    let good = secrets.path().join("redis.pass");
    std::fs::write(&good, format!("{password}\n")).unwrap();
    let file_instance = start(internal_site(&states[1], &ports[1], with_file(&good))).await;
    let root = trusting(&shared_root(&redis).await);
    serves_chain_to(&ports[0], &root).await;
    serves_chain_to(&ports[1], &root).await;
    env_instance.stop().await;
    file_instance.stop().await;

    // A wrong password: a clear error naming the storage, never the password.
    let wrong_url = Storage::Redis(StorageRedis {
        url: format!("redis://:not-the-password@{at}"),
        key_file: None,
        password_file: None,
        ca_root: None,
    });
    let error = bind_error(internal_site(&states[2], &Port::reserve(), wrong_url)).await;
    assert!(error.contains(&format!("redis://:***@{at}")), "{error}");
    assert!(error.contains("refused the password"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    let bad = secrets.path().join("wrong.pass");
    std::fs::write(&bad, "also-not-it\n").unwrap();
    let error = bind_error(internal_site(&states[3], &Port::reserve(), with_file(&bad))).await;
    assert!(error.contains(&redis.url()), "{error}");
    assert!(error.contains("refused the password"), "{error}");
    assert!(!error.contains("also-not-it"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_while_redis_is_down_waits_for_it_and_loses_nothing() {
    let log = logs::capture();
    let mut redis = Redis::start().await;
    let http = Port::reserve();
    let https: Vec<Port> = (0..2).map(|_| Port::reserve()).collect();
    // Renewal at half of a 16 s lifetime: ~8 s after issuance.
    let mut pebble_options = PebbleOptions::new(http.number(), https[0].number());
    pebble_options.validity_secs = Some(16);
    let pebble = Pebble::start(pebble_options).await;
    let roots = pebble.issuing_roots().await;
    let name = "outage.test";
    let shared = storage(&redis, None);
    let config = |state: &TempDir, port: &Port| {
        let ports = (http.number(), port.number());
        acme_site(&pebble, state.path(), ports, name, &shared, "ok")
    };
    let states: Vec<TempDir> = (0..2).map(|_| TempDir::new("cluster-outage")).collect();
    let instance = start(config(&states[0], &https[0])).await;
    let first = served_leaf(addr(&https[0]), name, &roots, &pebble).await;

    // Redis crashes before renewal time: the renewal cannot take its lease,
    // says so, and keeps trying (5 s, doubling) without asking the CA.
    redis.kill();
    wait_for_log(&log, "cannot take the lease to obtain a certificate").await;
    assert_eq!(pebble.order_count(), 1, "{}", pebble.logs());
    // Redis returns empty: the renewal goes through and lands in Redis.
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let leaf = served_leaf(addr(&https[0]), name, &roots, &pebble).await;
        if leaf != first {
            break leaf;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal after Redis returned\n{}{}",
            log.show(name),
            pebble.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(pebble.order_count(), 2, "{}", pebble.logs());
    // Nothing lost: a new instance with an empty state directory serves the
    // renewed certificate from Redis without ordering.
    let fresh = start(config(&states[1], &https[1])).await;
    assert_eq!(
        served_leaf(addr(&https[1]), name, &roots, &pebble).await,
        renewed
    );
    assert_eq!(pebble.order_count(), 2, "{}", pebble.logs());
    instance.stop().await;
    fresh.stop().await;
}
