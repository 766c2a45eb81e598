//! Several bellhop instances sharing one Redis (`options { storage "redis://…" }`):
//! one order per name, every instance serves the certificate, a challenge any
//! instance started is answered by all, a shared rate limit is counted once,
//! and serving goes on while Redis is down.
//!
//! The instances share the plain-HTTP port (each binds it with SO_REUSEPORT,
//! so the kernel spreads Pebble's HTTP-01 validations over them, like a load
//! balancer in front of a cluster) and each has its own HTTPS port, so the test
//! can ask each one for the certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bellhop::config::{
    Config, HostPattern, Options, RateLimit, Scheme, Site, SiteAddress, TlsMode,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::support::cluster::{
    acme_site, http_get, route, served_leaf, start, storage, wait_for_log,
};
use crate::support::net::https_get;
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::ports::Port;
use crate::support::redis::Redis;
use crate::support::{logs, TempDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_order_once_and_all_serve() {
    let _log = logs::capture();
    let mut redis = Redis::start().await;
    let http = Port::reserve();
    // Three instances, and a fourth HTTPS port for a restart without Redis.
    let https: Vec<Port> = (0..4).map(|_| Port::reserve()).collect();
    // Certificates shorter than 10 days renew at half their lifetime: ~8 s.
    let mut pebble_options = PebbleOptions::new(http.number(), https[0].number());
    pebble_options.validity_secs = Some(16);
    let pebble = Pebble::start(pebble_options).await;
    let roots = pebble.issuing_roots().await;
    let name = "cluster.test";
    // Private keys are sealed with a key only the instances have.
    let secrets = TempDir::new("cluster-key");
    let key_file = secrets.path().join("storage.key");
    std::fs::write(&key_file, [0x42u8; 32]).unwrap();

    let shared = storage(&redis, Some(&key_file));
    let cluster_config = |state: &TempDir, port: &Port, i: usize| {
        let ports = (http.number(), port.number());
        let body = format!("instance {i}");
        acme_site(&pebble, state.path(), ports, name, &shared, &body)
    };
    let states: Vec<TempDir> = (0..3).map(|_| TempDir::new("cluster")).collect();
    let mut instances = Vec::new();
    for (i, state) in states.iter().enumerate() {
        instances.push(start(cluster_config(state, &https[i], i)).await);
    }
    let addrs: Vec<SocketAddr> = https[..3]
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p.number())))
        .collect();

    // Every instance serves the one certificate, which was ordered once.
    let mut leaves = Vec::new();
    for addr in &addrs {
        leaves.push(served_leaf(*addr, name, &roots, &pebble).await);
    }
    assert!(
        leaves.iter().all(|l| *l == leaves[0]),
        "instances serve different certificates"
    );
    assert_eq!(pebble.order_count(), 1, "{}", pebble.logs());
    for (i, addr) in addrs.iter().enumerate() {
        let (status, body) = https_get(*addr, name, &roots, "/").await.expect("GET");
        assert_eq!(
            (status, body.as_str()),
            (200, format!("instance {i}").as_str())
        );
    }

    // Redis holds the key sealed, the chain in clear.
    let mut conn = redis.client().await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("bellhop:certs/*/{name}/key.pem"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let sealed: Vec<u8> = ::redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(sealed.starts_with(b"bellhop-sealed-v1:"));
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));

    // A challenge another instance started is answered by whichever instance
    // the validator reaches: HTTP-01 on the shared port, TLS-ALPN-01 on each.
    let token = "Zm9yZWlnbi10b2tlbi1mb3ItdGhlLWNsdXN0ZXItdGVzdA";
    let _: () = ::redis::cmd("SET")
        .arg(format!("bellhop:challenges/http-01/{token}"))
        .arg("foreign.thumbprint")
        .query_async(&mut conn)
        .await
        .unwrap();
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http.number()));
    for _ in 0..6 {
        let (status, body) = http_get(
            http_addr,
            "other.test",
            &format!("/.well-known/acme-challenge/{token}"),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "foreign.thumbprint"));
    }
    let digest = [0x5au8; 32];
    let _: () = ::redis::cmd("SET")
        .arg("bellhop:challenges/tls-alpn-01/alpn.test")
        .arg(&digest[..])
        .query_async(&mut conn)
        .await
        .unwrap();
    for addr in &addrs {
        let leaf = acme_tls_leaf(*addr, "alpn.test").await;
        assert!(
            leaf.windows(32).any(|w| w == digest),
            "{addr}: the challenge certificate does not carry the shared digest"
        );
    }

    // Renewal by one instance is picked up by the others.
    let deadline = Instant::now() + Duration::from_secs(40);
    let renewed_leaf = loop {
        let mut renewed = Vec::new();
        for addr in &addrs {
            renewed.push(served_leaf(*addr, name, &roots, &pebble).await);
        }
        if renewed.iter().all(|l| *l != leaves[0] && *l == renewed[0]) {
            break renewed.swap_remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "renewal not served by every instance\n{}{}",
            logs::show(name),
            pebble.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        pebble.order_count(),
        2,
        "one renewal order\n{}",
        pebble.logs()
    );

    // Redis crashes: every instance keeps serving; and after it returns.
    redis.kill();
    for addr in &addrs {
        let (status, _) = https_get(*addr, name, &roots, "/")
            .await
            .expect("GET without redis");
        assert_eq!(status, 200);
    }
    redis.restart().await;
    for addr in &addrs {
        let (status, _) = https_get(*addr, name, &roots, "/")
            .await
            .expect("GET after restart");
        assert_eq!(status, 200);
    }

    // Started while Redis is down: an instance serves the last certificate it
    // saw, from its state directory, and says why.
    redis.kill();
    for instance in instances {
        instance.stop().await;
    }
    let down = logs::capture();
    let restarted = start(cluster_config(&states[1], &https[3], 1)).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], https[3].number()));
    assert_eq!(served_leaf(addr, name, &roots, &pebble).await, renewed_leaf);
    wait_for_log(&down, "shared storage unreachable").await;
    // It keeps trying: once Redis is back, it answers a challenge that only
    // Redis knows.
    redis.restart().await;
    let mut conn = redis.client().await;
    let _: () = ::redis::cmd("SET")
        .arg(format!("bellhop:challenges/http-01/{token}"))
        .arg("after.the.outage")
        .query_async(&mut conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let path = format!("/.well-known/acme-challenge/{token}");
        let (status, body) = http_get(http_addr, "other.test", &path).await;
        if (status, body.as_str()) == (200, "after.the.outage") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnect to Redis: {status} {body}\n{}",
            down.show("storage")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_rate_limit_counts_a_client_once_across_instances() {
    let log = logs::capture();
    let mut redis = Redis::start().await;
    let ports: Vec<Port> = (0..3).map(|_| Port::reserve()).collect();
    let unused = (Port::reserve(), Port::reserve());
    // Five requests at once, then one a minute: the test never sees a refill.
    let limit = RateLimit {
        per_second: 1.0 / 60.0,
        burst: 5,
        shared: true,
    };
    let mut instances = Vec::new();
    let mut states = Vec::new();
    for port in &ports {
        let state = TempDir::new("cluster-rl");
        let config = Config {
            options: Options {
                state_dir: state.path().to_path_buf(),
                http_port: unused.0.number(),
                https_port: unused.1.number(),
                workers: std::num::NonZeroUsize::new(2),
                storage: storage(&redis, None),
                ..Options::default()
            },
            sites: vec![Site {
                addresses: vec![SiteAddress {
                    scheme: Scheme::Http,
                    host: HostPattern::Ip([127, 0, 0, 1].into()),
                    port: Some(port.number()),
                }],
                tls: TlsMode::Auto,
                hsts: None,
                routes: vec![route("ok", Some(limit))],
                bind: None,
                log: None,
            }],
        };
        instances.push(start(config).await);
        states.push(state);
    }
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], p.number())))
        .collect();
    let mut statuses = Vec::new();
    for round in 0..5 {
        for addr in &addrs {
            let (status, _) = http_get(*addr, "127.0.0.1", &format!("/{round}")).await;
            statuses.push(status);
        }
    }
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (admitted, limited),
        (5, 10),
        "{statuses:?}\n{}",
        logs::show("shared rate limit")
    );

    // Redis down: each instance counts on its own, never an error page.
    redis.kill();
    for addr in &addrs {
        let (status, _) = http_get(*addr, "127.0.0.1", "/down").await;
        assert!(
            status == 200 || status == 429,
            "status {status} without redis"
        );
    }
    wait_for_log(
        &log,
        "shared rate limit unavailable; counting on this instance",
    )
    .await;
    // Back: shared counting resumes on a fresh (empty) Redis once the
    // fallback interval is over.
    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = http_get(addrs[0], "127.0.0.1", "/back").await;
        assert!(status == 200 || status == 429, "status {status}");
        let mut conn = redis.client().await;
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg("bellhop:rl:*")
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "shared counting did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for instance in instances {
        instance.stop().await;
    }
}

/// The certificate an instance shows to an `acme-tls/1` client for `name`
/// (the validator checks the certificate itself, not a chain).
async fn acme_tls_leaf(addr: SocketAddr, name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("{addr}: acme-tls/1 handshake for {name}: {e}"));
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a certificate")
        .to_vec()
}

/// Accepts any certificate: the test inspects it instead.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    // webpki would refuse to parse the challenge certificate (its critical
    // acmeIdentifier extension), so the handshake signature is not checked
    // either: the test only reads the certificate.
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
