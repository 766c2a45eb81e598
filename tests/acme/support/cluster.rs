//! Bellhop instances of a cluster under test: start, configure, ask.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bellhop::config::{
    AcmeChallenge, Config, Handler, HostPattern, Options, PathPattern, RateLimit, Route, Scheme,
    Site, SiteAddress, Storage, StorageRedis, TlsMode,
};
use bellhop::{Server, ShutdownHandle};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::logs;
use super::net::Conn;
use super::pebble::Pebble;
use super::redis::Redis;

/// A running instance; shut down on drop, or [`stop`](Instance::stop)ped
/// and waited for.
pub struct Instance {
    shutdown: ShutdownHandle,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    /// Shuts the instance down and waits until its server has returned:
    /// nothing of it writes to its state directory afterwards, so the
    /// test's temp dir can go.
    pub async fn stop(mut self) {
        self.shutdown.shutdown();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(Duration::from_secs(30), running)
                .await
                .expect("the instance did not stop within 30 s")
                .expect("the instance's server panicked");
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

pub async fn start(config: Config) -> Instance {
    let server = Server::bind(config).await.expect("Server::bind");
    let shutdown = server.shutdown_handle();
    let running = tokio::spawn(async move {
        if let Err(e) = server.run().await {
            panic!("server failed: {e:#}");
        }
    });
    Instance {
        shutdown,
        running: Some(running),
    }
}

pub fn storage(redis: &Redis, key_file: Option<&std::path::Path>) -> Storage {
    Storage::Redis(StorageRedis {
        url: redis.url(),
        key_file: key_file.map(std::path::Path::to_path_buf),
        password_file: None,
        ca_root: None,
    })
}

pub fn route(body: &str, rate_limit: Option<RateLimit>) -> Route {
    let handler = Handler::Respond {
        status: 200,
        body: body.into(),
        content_type: None,
    };
    Route {
        rate_limit,
        ..Route::new(PathPattern::Any, handler)
    }
}

/// Waits until `addr` serves `name` with a certificate from Pebble.
pub async fn served_leaf(
    addr: SocketAddr,
    name: &str,
    roots: &Arc<rustls::RootCertStore>,
    pebble: &Pebble,
) -> CertificateDer<'static> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Conn::open(addr, name, roots).await {
            Ok(conn) => return conn.peer_leaf,
            Err(e) if Instant::now() > deadline => panic!(
                "{addr} never served {name}: {e}\n{}{}",
                logs::show(name),
                pebble.logs()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One plain HTTP/1.1 GET (Connection: close); status and body.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Waits until bellhop logs a line with `needle` (after `since`).
pub async fn wait_for_log(since: &logs::Since, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while since.lines_with(needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "bellhop never logged {needle:?}\n{}",
            since.show("redis")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One instance of a cluster ordering `name` from `pebble` (HTTP-01 on the
/// shared `http_port`, HTTPS on its own `https_port`), answering `body`.
pub fn acme_site(
    pebble: &Pebble,
    state: &std::path::Path,
    (http_port, https_port): (u16, u16),
    name: &str,
    storage: &Storage,
    body: &str,
) -> Config {
    Config {
        options: Options {
            acme_ca: pebble.directory_url.clone(),
            acme_ca_root: Some(pebble.api_root_path.clone()),
            state_dir: state.to_path_buf(),
            http_port,
            https_port,
            workers: std::num::NonZeroUsize::new(1),
            storage: storage.clone(),
            ..Options::default()
        },
        sites: vec![Site {
            addresses: vec![SiteAddress {
                scheme: Scheme::Https,
                host: HostPattern::Name(name.into()),
                port: None,
            }],
            tls: TlsMode::Acme {
                challenge: AcmeChallenge::Http01,
            },
            hsts: None,
            routes: vec![route(body, None)],
            bind: None,
            log: None,
        }],
    }
}
