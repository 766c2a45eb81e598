//! Idle HTTP/1.1 keep-alive connections are parked (`server/h1`): their
//! read and head buffers go, the stream stays, and the next request on the
//! same connection is served as before. Seen from outside
//! through the admin metrics `bellhop_parked_connections` (parked now) and
//! `bellhop_parks_total`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::echo::Echo;
use crate::support::client::{get, tls_connect};
use crate::support::config::{https_site, respond, site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, secs, wait_for_async, TempDir};

/// bellhop answering `hello` on `site`, with an admin listener and
/// `client-header-timeout` at `keep_alive`.
async fn serve(
    site: crate::support::config::SiteBuilder,
    state: &TempDir,
    keep_alive: Duration,
) -> TestServer {
    TestServer::start(
        ConfigBuilder::new()
            .state_dir(state.path())
            .options(|o| {
                o.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
                o.client_header_timeout = keep_alive;
            })
            .site(site.handle(respond(200, "hello")))
            .build(),
    )
    .await
}

/// The value of the metric line `name` (no labels) on `admin`.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let reply = get(admin, &admin.to_string(), "/metrics").await;
    let text = reply.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Waits until `name` reads `want`.
async fn wait_metric(admin: SocketAddr, name: &str, want: f64) {
    wait_for_async(&format!("{name} to be {want}"), secs(10), || async {
        metric(admin, name).await == want
    })
    .await;
}

/// Sends `GET path` on `stream` and reads the response (a `hello` with a
/// Content-Length), leaving the connection open.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the request");
    read_response(stream).await
}

/// Reads one response with a Content-Length body.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.expect("read the response");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..end]
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .expect("a content-length");
        if got.len() >= end + 4 + len {
            return text;
        }
    }
}

/// Asserts that `stream` is closed by the server (EOF, or a reset).
async fn assert_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!(
            "read {:?} instead of the close",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

/// Plain HTTP: served, parked, served again on the same connection, parked again.
#[tokio::test]
async fn an_idle_connection_is_parked_and_served_again() {
    bounded(secs(60), "test", async {
        let state = TempDir::new("park-plain");
        let server = serve(site("localhost"), &state, secs(30)).await;
        let admin = server.admin.expect("an admin listener");
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        let first = exchange(&mut stream, "/one").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(first.ends_with("hello"), "{first}");
        wait_metric(admin, "bellhop_parked_connections", 1.0).await;
        assert_eq!(metric(admin, "bellhop_parks_total").await, 1.0);

        let second = exchange(&mut stream, "/two").await;
        assert!(second.starts_with("HTTP/1.1 200"), "{second}");
        assert!(second.ends_with("hello"), "{second}");
        wait_metric(admin, "bellhop_parks_total", 2.0).await;
        wait_metric(admin, "bellhop_parked_connections", 1.0).await;
    })
    .await
}

/// Over TLS the parked stream keeps its TLS state: the next request on the
/// same TLS connection is answered.
#[tokio::test]
async fn a_parked_tls_connection_is_served_again() {
    bounded(secs(60), "test", async {
        let state = TempDir::new("park-tls");
        let server = serve(https_site("localhost"), &state, secs(30)).await;
        let admin = server.admin.expect("an admin listener");
        let root = internal_root(state.path()).await;
        let mut tls = tls_connect(server.addr(), "localhost", &root, &[b"http/1.1"]).await;
        for (i, path) in ["/one", "/two", "/three"].into_iter().enumerate() {
            let reply = exchange(&mut tls, path).await;
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
            assert!(reply.ends_with("hello"), "{reply}");
            wait_metric(admin, "bellhop_parks_total", (i + 1) as f64).await;
            wait_metric(admin, "bellhop_parked_connections", 1.0).await;
        }
    })
    .await
}

/// A request whose body was proxied to its end leaves a connection that
/// parks like any other, and serves again.
#[tokio::test]
async fn a_connection_whose_body_was_proxied_parks() {
    bounded(secs(60), "test", async {
        let echo = Echo::start("park-body").await;
        let state = TempDir::new("park-body");
        let server = TestServer::start(
            ConfigBuilder::new()
                .state_dir(state.path())
                .options(|o| o.admin = Some(SocketAddr::from(([127, 0, 0, 1], 0))))
                .site(site("localhost").proxy(tcp(echo.addr())))
                .build(),
        )
        .await;
        let admin = server.admin.expect("an admin listener");
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        let body = "x".repeat(10_000);
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send the head");
        stream
            .write_all(body.as_bytes())
            .await
            .expect("send the body");
        let reply = read_response(&mut stream).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("\"body_len\":10000"), "{reply}");
        wait_metric(admin, "bellhop_parked_connections", 1.0).await;

        let again = exchange(&mut stream, "/after").await;
        assert!(again.starts_with("HTTP/1.1 200"), "{again}");
        wait_metric(admin, "bellhop_parks_total", 2.0).await;
    })
    .await
}

/// The start of a head that arrived before the connection parked is kept
/// (hyper hands it back unparsed) and completed by what follows.
#[tokio::test]
async fn a_head_begun_before_parking_is_answered() {
    bounded(secs(60), "test", async {
        let state = TempDir::new("park-partial");
        let server = serve(site("localhost"), &state, secs(30)).await;
        let admin = server.admin.expect("an admin listener");
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        exchange(&mut stream, "/one").await;
        stream
            .write_all(b"GET /two HTTP/1.1\r\nHo")
            .await
            .expect("send half a head");
        wait_metric(admin, "bellhop_parks_total", 1.0).await;
        stream
            .write_all(b"st: localhost\r\n\r\n")
            .await
            .expect("send the rest");
        let reply = read_response(&mut stream).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("hello"), "{reply}");
    })
    .await
}

/// A parked connection still closes at the keep-alive timeout
/// (`client-header-timeout`).
#[tokio::test]
async fn a_parked_connection_closes_at_the_keep_alive_timeout() {
    bounded(secs(60), "test", async {
        let state = TempDir::new("park-timeout");
        let server = serve(site("localhost"), &state, secs(1)).await;
        let admin = server.admin.expect("an admin listener");
        let mut idle = TcpStream::connect(server.addr()).await.expect("connect");
        exchange(&mut idle, "/").await;
        wait_metric(admin, "bellhop_parks_total", 1.0).await;
        assert_closed(&mut idle).await;
        wait_metric(admin, "bellhop_parked_connections", 0.0).await;
    })
    .await
}

/// Shutdown closes a parked connection at once (its keep-alive timeout, 30 s,
/// is longer than the test may take).
#[tokio::test]
async fn shutdown_closes_a_parked_connection() {
    bounded(secs(20), "test", async {
        let state = TempDir::new("park-shutdown");
        let server = serve(site("localhost"), &state, secs(30)).await;
        let admin = server.admin.expect("an admin listener");
        let mut parked = TcpStream::connect(server.addr()).await.expect("connect");
        exchange(&mut parked, "/").await;
        wait_metric(admin, "bellhop_parked_connections", 1.0).await;
        server.shutdown();
        assert_closed(&mut parked).await;
        // bellhop's lingering close waits for the client's side to close too.
        drop(parked);
        server.finished().await.expect("a clean shutdown");
    })
    .await
}
