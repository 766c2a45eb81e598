//! Automatic HTTPS through the real server: `Server::bind` + `run` with a config
//! whose ACME CA is a private Pebble.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bellhop::config::{
    AcmeChallenge, Config, Handler, HostPattern, Options, PathPattern, ProxyConfig, Route, Scheme,
    Site, SiteAddress, TlsMode, Upstream,
};
use bellhop::{Server, ShutdownHandle};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::support::net::{tls_connect, Conn};
use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::ports::Port;
use crate::support::{logs, TempDir};

/// A running bellhop; shut down on drop.
struct Running {
    shutdown: ShutdownHandle,
    http: SocketAddr,
    https: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

async fn run(config: Config) -> Running {
    let http = SocketAddr::from(([127, 0, 0, 1], config.options.http_port));
    let https = SocketAddr::from(([127, 0, 0, 1], config.options.https_port));
    let server = Server::bind(config).await.expect("Server::bind");
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        if let Err(e) = server.run().await {
            panic!("server failed: {e:#}");
        }
    });
    Running {
        shutdown,
        http,
        https,
    }
}

fn site(name: &str, handler: Handler, hsts: Option<Duration>) -> Site {
    Site {
        addresses: vec![SiteAddress {
            scheme: Scheme::Https,
            host: HostPattern::Name(name.into()),
            port: None,
        }],
        tls: TlsMode::Auto,
        hsts,
        routes: vec![Route::new(PathPattern::Any, handler)],
        bind: None,
        log: None,
    }
}

fn respond(body: &str) -> Handler {
    Handler::Respond {
        status: 200,
        body: body.into(),
        content_type: None,
    }
}

fn options(pebble: &Pebble, state: &TempDir, http_port: u16, https_port: u16) -> Options {
    Options {
        acme_ca: pebble.directory_url.clone(),
        acme_ca_root: Some(pebble.api_root_path.clone()),
        state_dir: state.path().to_path_buf(),
        http_port,
        https_port,
        ..Options::default()
    }
}

/// Retries a verified GET until it answers (the certificate is obtained in the
/// background); returns status and body. Fails at once, with bellhop's reason,
/// when the attempt failed: the next one is a backoff (a minute) away.
async fn get_when_ready(
    addr: SocketAddr,
    name: &str,
    roots: &Arc<rustls::RootCertStore>,
    pebble: &Pebble,
    log: logs::Since,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failed = log.show(name);
        if failed.contains("could not obtain a certificate") {
            panic!("{name} was not issued:\n{failed}{}", pebble.logs());
        }
        match crate::support::net::https_get(addr, name, roots, "/").await {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > deadline => {
                panic!("{name} never served: {e}\n{failed}{}", pebble.logs())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_obtains_certificate_redirects_and_speaks_h2() {
    let log = logs::capture();
    let (http, https) = (Port::reserve(), Port::reserve());
    let (http_port, https_port) = (http.number(), https.number());
    let pebble = Pebble::start(PebbleOptions::new(http_port, https_port)).await;
    let roots = pebble.issuing_roots().await;
    let state = TempDir::new("state");
    let config = Config {
        options: options(&pebble, &state, http_port, https_port),
        sites: vec![
            site(
                "app.test",
                respond("hello app"),
                Some(Duration::from_secs(600)),
            ),
            // HTTP-01 through the server's own plain-HTTP listener.
            Site {
                tls: TlsMode::Acme {
                    challenge: AcmeChallenge::Http01,
                },
                ..site("h01.test", respond("hello h01"), None)
            },
        ],
    };
    let started = Instant::now();
    let bellhop = run(config).await;
    let (status, body) = get_when_ready(bellhop.https, "app.test", &roots, &pebble, log).await;
    let elapsed = started.elapsed();
    assert_eq!((status, body.as_str()), (200, "hello app"));
    eprintln!("Server::bind → first verified HTTPS 200: {elapsed:?}");

    let (status, body) = get_when_ready(bellhop.https, "h01.test", &roots, &pebble, log).await;
    assert_eq!((status, body.as_str()), (200, "hello h01"));

    // HSTS only when configured, only over HTTPS.
    let mut conn = Conn::open(bellhop.https, "app.test", &roots).await.unwrap();
    let hsts = conn.get_headers("/").await.unwrap();
    assert_eq!(
        hsts.get("strict-transport-security").unwrap(),
        "max-age=600"
    );

    // HTTP → HTTPS: 308, same host, path and query, non-443 port kept.
    let (status, headers) = plain_get(bellhop.http, "app.test", "/a/b?c=d").await;
    assert_eq!(status, 308);
    assert_eq!(
        headers.get("location").unwrap(),
        &format!("https://app.test:{https_port}/a/b?c=d")
    );
    // ACME paths are never redirected, even for unknown tokens.
    let (status, _) = plain_get(bellhop.http, "app.test", "/.well-known/acme-challenge/nope").await;
    assert_eq!(status, 404);

    // HTTP/2 when the client offers it.
    let tls = tls_connect(bellhop.https, "app.test", &roots, &[b"h2", b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://app.test:{https_port}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello app");
}

/// A plain HTTP/1.1 GET; status and headers.
async fn plain_get(addr: SocketAddr, host: &str, path: &str) -> (u16, http::HeaderMap) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    (resp.status().as_u16(), resp.headers().clone())
}

/// A WebSocket echo backend on 127.0.0.1.
async fn ws_echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_an_open_wss_connection() {
    let log = logs::capture();
    let (http, https) = (Port::reserve(), Port::reserve());
    let (http_port, https_port) = (http.number(), https.number());
    let mut pebble_options = PebbleOptions::new(http_port, https_port);
    // Renewed at half its lifetime, i.e. after about 8 s.
    pebble_options.validity_secs = Some(16);
    let pebble = Pebble::start(pebble_options).await;
    let roots = pebble.issuing_roots().await;
    let state = TempDir::new("state");
    let backend = ws_echo_backend().await;
    let upstream = Upstream::Tcp {
        host: "127.0.0.1".into(),
        port: backend,
    };
    let config = Config {
        options: options(&pebble, &state, http_port, https_port),
        sites: vec![site(
            "ws.test",
            Handler::Proxy(ProxyConfig::new(vec![upstream])),
            None,
        )],
    };
    let bellhop = run(config).await;
    get_when_ready(bellhop.https, "ws.test", &roots, &pebble, log).await;

    // wss:// through bellhop, on the first certificate.
    let tls = tls_connect(bellhop.https, "ws.test", &roots, &[b"http/1.1"])
        .await
        .unwrap();
    let first_leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://ws.test:{https_port}/echo"), tls)
            .await
            .expect("WebSocket handshake through bellhop");
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    // Wait until new handshakes get a renewed certificate.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let conn = Conn::open(bellhop.https, "ws.test", &roots).await.unwrap();
        if conn.peer_leaf != first_leaf {
            break;
        }
        assert!(Instant::now() < deadline, "certificate was not renewed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The WebSocket opened before the swap still works.
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("after"));
    ws.close(None).await.unwrap();
}
