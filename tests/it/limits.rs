//! Limits under abuse (issue 16), each with real sockets: connection caps per
//! IP and in all (WebSockets and waiting requests count), `max-body` for both
//! body framings (the backend never sees more than the limit), the
//! client-body and client-write deadlines (the slow client is cut while a
//! normal one is served), the exact 64 KiB head limit, CONNECT, and malformed
//! chunked framing (400 on the wire, 499 nowhere).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use std::convert::Infallible;

use bellhop::config::Options;
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::echo::Echo;
use crate::support::backends::slow::Slow;
use crate::support::backends::upgrade::UpgradeBackend;
use crate::support::binary::{text_field, Bellhop};
use crate::support::client::{body, collect, connect_from, empty, get, h2_tls, raw_upgrade, req};
use crate::support::config::{
    https_site, proxy, proxy_with, respond, site, tcp, unix, ConfigBuilder,
};
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, secs, wait_for, wait_for_async, TempDir};

/// bellhop in front of an echo backend, with `options` changed by `f`.
/// `/normal` is answered by bellhop itself, so a normal client's request
/// leaves the backend's connection count alone.
async fn echo_front(max_body: Option<u64>, f: impl FnOnce(&mut Options)) -> (Echo, TestServer) {
    let echo = Echo::start("limits").await;
    let mut front = site("")
        .route("/normal", respond(200, "ok"))
        .proxy(tcp(echo.addr()));
    if let Some(bytes) = max_body {
        front = front.max_body(bytes);
    }
    let server = TestServer::start(ConfigBuilder::new().site(front).options(f).build()).await;
    (echo, server)
}

fn from(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

/// Reads the response head from `s` (up to the blank line); `None` when the
/// connection closes (or resets) before a whole head arrived.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The status code of a response head.
fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// One keep-alive GET on `s`; the status of its answer (the body is small
/// and read with the head).
async fn get_on(s: &mut TcpStream, path: &str) -> Option<u16> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: limits.test\r\n\r\n");
    s.write_all(head.as_bytes()).await.ok()?;
    read_head(s).await.map(|h| status(&h))
}

/// Whether the server closed `s` without answering: a request gets EOF or a reset.
async fn refused(s: &mut TcpStream) -> bool {
    let _ = s
        .write_all(b"GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n")
        .await;
    read_head(s).await.is_none()
}

/// `max-connections-per-ip 2`: the third connection from one address is closed
/// at once while its first two keep being served, and another address is
/// served; when one of the two closes, the address gets its place back.
#[tokio::test]
async fn per_ip_cap_closes_the_connection_over_it() {
    bounded(secs(30), "test", async {
        let (_echo, server) = echo_front(None, |o| o.max_connections_per_ip = 2).await;
        let mut a = connect_from(server.addr(), from(1)).await;
        let mut b = connect_from(server.addr(), from(1)).await;
        assert_eq!(get_on(&mut a, "/a").await, Some(200));
        assert_eq!(get_on(&mut b, "/b").await, Some(200));
        let mut c = connect_from(server.addr(), from(1)).await;
        assert!(
            refused(&mut c).await,
            "a third connection from 127.0.0.1 was served"
        );
        let mut other = connect_from(server.addr(), from(2)).await;
        assert_eq!(get_on(&mut other, "/other").await, Some(200));
        assert_eq!(get_on(&mut a, "/a-again").await, Some(200));
        assert_eq!(get_on(&mut b, "/b-again").await, Some(200));
        drop(a);
        wait_for_async("127.0.0.1 to get its place back", secs(10), || async {
            let mut s = connect_from(server.addr(), from(1)).await;
            get_on(&mut s, "/back").await == Some(200)
        })
        .await;
    })
    .await
}

/// `max-connections 2`: an open WebSocket and a request waiting for a slow
/// backend hold both places, so the next connection (from another address)
/// is closed at once; when the waiting request ends, a place comes free.
#[tokio::test]
async fn global_cap_counts_websockets_and_waiting_requests() {
    bounded(secs(30), "test", async {
        let slow = Slow::start(secs(2)).await;
        let upgrade = UpgradeBackend::start().await;
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(
                    site("")
                        .route("/echo-until-eof", proxy(tcp(upgrade.addr)))
                        .proxy(tcp(slow.http.addr())),
                )
                .options(|o| o.max_connections = Some(2))
                .build(),
        )
        .await;
        let (_ws, head) = raw_upgrade(server.addr(), "/echo-until-eof", "testproto").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut waiting = connect_from(server.addr(), from(2)).await;
        waiting
            .write_all(b"GET /slow HTTP/1.1\r\nHost: limits.test\r\n\r\n")
            .await
            .expect("write");
        slow.wait_received(1).await;
        let mut third = connect_from(server.addr(), from(3)).await;
        assert!(refused(&mut third).await, "a third connection was served");
        let head = read_head(&mut waiting)
            .await
            .expect("the waiting request's answer");
        assert_eq!(status(&head), 200);
        drop(waiting);
        wait_for_async("a place to come free", secs(10), || async {
            let mut s = connect_from(server.addr(), from(4)).await;
            s.write_all(b"GET /slow HTTP/1.1\r\nHost: limits.test\r\nConnection: close\r\n\r\n")
                .await
                .is_ok()
                && read_head(&mut s).await.is_some()
        })
        .await;
    })
    .await
}

/// A body declared larger than `max-body` gets 413 before anything is sent
/// upstream; the backend never sees the request.
#[tokio::test]
async fn content_length_over_max_body_gets_413_and_reaches_no_backend() {
    bounded(secs(30), "test", async {
        let (echo, server) = echo_front(Some(1000), |_| {}).await;
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: limits.test\r\nContent-Length: 5000\r\n\r\n")
            .await
            .expect("write");
        let head = read_head(&mut s).await.expect("an answer");
        assert_eq!(status(&head), 413, "{head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        // Exactly the limit is fine.
        let body = vec![b'x'; 1000];
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: limits.test\r\nContent-Length: 1000\r\n\r\n")
            .await
            .expect("write");
        s.write_all(&body).await.expect("write body");
        let head = read_head(&mut s).await.expect("an answer");
        assert_eq!(status(&head), 200, "{head}");
        assert_eq!(echo.http.stats.requests(), 1, "the 413 reached the backend");
        assert_eq!(echo.stats.bytes_in.load(Ordering::SeqCst), 1000);
    })
    .await
}

/// A chunked body that grows past `max-body` gets 413; the backend saw the
/// chunks that fit and not one byte more, and its request was aborted.
#[tokio::test]
async fn chunked_body_over_max_body_gets_413_and_backend_sees_at_most_the_limit() {
    bounded(secs(30), "test", async {
        let (echo, server) = echo_front(Some(1000), |_| {}).await;
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: limits.test\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .expect("write");
        let chunk = format!("190\r\n{}\r\n", "y".repeat(400));
        for _ in 0..2 {
            s.write_all(chunk.as_bytes()).await.expect("write chunk");
        }
        wait_for("the backend to get the first 800 bytes", secs(10), || {
            echo.stats.bytes_in.load(Ordering::SeqCst) == 800
        })
        .await;
        // The third chunk crosses the limit (1,200 > 1,000).
        s.write_all(chunk.as_bytes()).await.expect("write chunk");
        let head = read_head(&mut s).await.expect("an answer");
        assert_eq!(status(&head), 413, "{head}");
        wait_for("the backend's connection to be aborted", secs(10), || {
            echo.http.stats.open() == 0
        })
        .await;
        assert_eq!(echo.stats.bytes_in.load(Ordering::SeqCst), 800);
    })
    .await
}

/// `client-body-timeout 1s`: a client that stops mid-body gets 408 about a
/// second later and the upstream request is aborted, while another client is
/// served meanwhile.
#[tokio::test]
async fn stalled_body_is_cut_at_client_body_timeout() {
    bounded(secs(30), "test", async {
        let (echo, server) =
            echo_front(None, |o| o.client_body_timeout = Duration::from_secs(1)).await;
        let mut slow = TcpStream::connect(server.addr()).await.expect("connect");
        slow.write_all(
            b"POST /upload HTTP/1.1\r\nHost: limits.test\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .expect("write");
        let started = Instant::now();
        wait_for("the backend to get the first bytes", secs(10), || {
            echo.stats.bytes_in.load(Ordering::SeqCst) == 10
        })
        .await;
        let host = server.addr().to_string();
        assert_eq!(get(server.addr(), &host, "/normal").await.status, 200);
        let head = read_head(&mut slow).await.expect("an answer");
        let waited = started.elapsed();
        assert_eq!(status(&head), 408, "{head}");
        assert!(waited >= Duration::from_millis(900), "cut after {waited:?}");
        assert!(waited < secs(10), "cut only after {waited:?}");
        wait_for("the backend's connection to be aborted", secs(10), || {
            echo.http.stats.open() == 0
        })
        .await;
    })
    .await
}

/// `client-write-timeout 1s`: a client that stops reading a large download is
/// closed once bellhop's writes have been blocked for a second (the backend's
/// connection goes with it), while another client is served.
#[tokio::test]
async fn slow_reader_is_cut_at_client_write_timeout() {
    bounded(secs(60), "test", async {
        let (echo, server) =
            echo_front(None, |o| o.client_write_timeout = Duration::from_secs(1)).await;
        const LEN: u64 = 256 << 20;
        let mut reader = TcpStream::connect(server.addr()).await.expect("connect");
        reader
            .write_all(
                format!("GET /download?bytes={LEN} HTTP/1.1\r\nHost: limits.test\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("write");
        // The reader reads nothing; bellhop fills the socket, blocks, and
        // after the deadline closes the connection and drops the upstream.
        wait_for("the upstream request to start", secs(10), || {
            echo.http.stats.requests() == 1
        })
        .await;
        let host = server.addr().to_string();
        assert_eq!(get(server.addr(), &host, "/normal").await.status, 200);
        wait_for("bellhop to give up on the slow reader", secs(30), || {
            echo.http.stats.open() == 0
        })
        .await;
        let mut got = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
        assert!(got < LEN, "the whole download arrived ({got} bytes)");
    })
    .await
}

/// A request head of `len` bytes exactly (final CRLF included).
fn head_of(len: usize) -> Vec<u8> {
    let start = "GET /head HTTP/1.1\r\nHost: limits.test\r\nConnection: close\r\nx-pad: ";
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "p".repeat(pad)).into_bytes()
}

/// The head limit holds exactly: 65,536 bytes pass, one more gets 431.
#[tokio::test]
async fn head_limit_is_exactly_64_kib() {
    bounded(secs(30), "test", async {
        let (echo, server) = echo_front(None, |_| {}).await;
        for (len, expected) in [(64 * 1024, 200), (64 * 1024 + 1, 431)] {
            let mut s = TcpStream::connect(server.addr()).await.expect("connect");
            s.write_all(&head_of(len)).await.expect("write");
            let head = read_head(&mut s).await.expect("an answer");
            assert_eq!(status(&head), expected, "head of {len} bytes: {head}");
        }
        assert_eq!(echo.http.stats.requests(), 1);
    })
    .await
}

/// CONNECT gets 405 and an authority-form GET 400; neither reaches the backend.
#[tokio::test]
async fn connect_is_refused_and_reaches_no_backend() {
    bounded(secs(30), "test", async {
        let (echo, server) = echo_front(None, |_| {}).await;
        for (request, expected) in [
            (
                "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                [405, 405],
            ),
            (
                "GET example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n",
                [400, 405],
            ),
        ] {
            let mut s = TcpStream::connect(server.addr()).await.expect("connect");
            s.write_all(request.as_bytes()).await.expect("write");
            let head = read_head(&mut s).await.expect("an answer");
            assert!(expected.contains(&status(&head)), "{request:?}: {head}");
        }
        assert_eq!(
            echo.http.stats.requests(),
            0,
            "a CONNECT reached the backend"
        );
    })
    .await
}

/// Malformed chunked framing gets 400 on the wire, the upstream request is
/// aborted and the log says why; a client that leaves mid-body is logged as
/// 499. No 499 is ever written to a client, and none logged for bad framing.
#[tokio::test]
async fn malformed_chunked_gets_400_and_499_stays_in_the_log() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("limits").await;
        let dir = TempDir::new("limits-chunked");
        let file = dir.write(
            "Proxyfile",
            &format!("\"http://127.0.0.1:0\" {{ proxy \"{}\" }}\n", echo.addr()),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let mut s = TcpStream::connect(bellhop.addr()).await.expect("connect");
        s.write_all(b"POST /bad-chunks HTTP/1.1\r\nHost: limits.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n")
            .await
            .expect("write");
        let head = read_head(&mut s).await.expect("an answer");
        assert_eq!(status(&head), 400, "{head}");
        let line = bellhop
            .proc
            .wait_line("the access line", secs(10), |l| {
                text_field(l, "path").as_deref() == Some("/bad-chunks")
            })
            .await;
        assert_eq!(text_field(&line, "status").as_deref(), Some("400"), "{line}");
        bellhop
            .proc
            .wait_line("the reason", secs(10), |l| l.contains("malformed request body"))
            .await;

        let before = echo.stats.bytes_in.load(Ordering::SeqCst);
        let mut gone = TcpStream::connect(bellhop.addr()).await.expect("connect");
        gone.write_all(b"POST /gone HTTP/1.1\r\nHost: limits.test\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .expect("write");
        wait_for("the backend to get the first bytes", secs(10), || {
            echo.stats.bytes_in.load(Ordering::SeqCst) >= before + 3
        })
        .await;
        drop(gone);
        let line = bellhop
            .proc
            .wait_line("the access line", secs(10), |l| {
                text_field(l, "path").as_deref() == Some("/gone")
            })
            .await;
        assert_eq!(text_field(&line, "status").as_deref(), Some("499"), "{line}");
        let bad_framing_499 = bellhop.proc.plain_lines().iter().any(|l| {
            text_field(l, "path").as_deref() == Some("/bad-chunks")
                && text_field(l, "status").as_deref() == Some("499")
        });
        assert!(!bad_framing_499, "bad framing was logged as 499");
    })
    .await
}

/// The same limits over h2 (TLS): a declared length over `max-body` gets 413
/// with nothing sent upstream, a body of unknown length is stopped once it
/// crosses the limit (the backend sees at most the limit), and CONNECT gets
/// 405 without reaching the backend.
#[tokio::test]
async fn h2_bodies_over_max_body_and_connect_are_refused() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("limits-h2").await;
        let state = TempDir::new("limits-h2");
        let server = TestServer::start(
            ConfigBuilder::new()
                .state_dir(state.path())
                .site(
                    https_site("localhost")
                        .proxy(tcp(echo.addr()))
                        .max_body(1000),
                )
                .build(),
        )
        .await;
        let root = internal_root(state.path()).await;
        let uri = format!("https://localhost:{}/upload", server.addr().port());
        let mut c = h2_tls(server.addr(), "localhost", &root).await;

        let declared = req("POST", "localhost", &uri)
            .body(body(vec![b'x'; 5000]))
            .expect("request");
        let r = collect(c.send_request(declared).await.expect("response")).await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert_eq!(
            echo.http.stats.requests(),
            0,
            "a declared 413 reached the backend"
        );

        let chunks = (0..3).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'y'; 400]))));
        let streamed = req("POST", "localhost", &uri)
            .body(StreamBody::new(futures_util::stream::iter(chunks)).boxed())
            .expect("request");
        let r = collect(c.send_request(streamed).await.expect("response")).await;
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(echo.stats.bytes_in.load(Ordering::SeqCst) <= 1000);

        let before_connect = echo.http.stats.requests();
        let connect = req("CONNECT", "localhost", "example.com:443")
            .body(empty())
            .expect("request");
        let r = collect(c.send_request(connect).await.expect("response")).await;
        assert_eq!(r.status, 405, "{}", r.text());
        // The streamed upload may have reached it (aborted, maybe before its
        // head went out); the CONNECT never does.
        assert_eq!(
            echo.http.stats.requests(),
            before_connect,
            "the CONNECT reached the backend"
        );
    })
    .await
}

/// A request waiting in `upstream-wait` for a backend that is not there yet
/// holds its head, not its body, and keeps its place under `max-connections`:
/// of a 16 MiB upload bellhop takes no more than what the sockets buffer
/// (the client's writes stall), a second client is refused meanwhile, and
/// when the backend's socket appears the whole body goes through.
#[tokio::test]
async fn upstream_wait_holds_the_head_only_and_counts_against_the_cap() {
    bounded(secs(60), "test", async {
        const BODY: usize = 16 << 20;
        let dir = TempDir::new("wait-holds-head");
        let sock = dir.path().join("app.sock");
        let handler = proxy_with(vec![unix(&sock)], |p| p.upstream_wait = secs(30));
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("").handle(handler))
                .options(|o| o.max_connections = Some(1))
                .build(),
        )
        .await;
        let mut upload = connect_from(server.addr(), from(1)).await;
        let head =
            format!("PUT /upload HTTP/1.1\r\nHost: limits.test\r\nContent-Length: {BODY}\r\n\r\n");
        upload.write_all(head.as_bytes()).await.expect("write head");
        // Push the body until bellhop stops taking it: a write that makes no
        // progress for half a second means nobody reads the other end.
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < BODY {
            let n = chunk.len().min(BODY - sent);
            match tokio::time::timeout(Duration::from_millis(500), upload.write(&chunk[..n])).await
            {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => panic!("upload write failed after {sent} bytes: {e}"),
                Err(_) => break,
            }
        }
        assert!(
            sent < 4 << 20,
            "bellhop took {sent} of {BODY} body bytes while waiting for its upstream"
        );
        let mut second = connect_from(server.addr(), from(2)).await;
        assert!(
            refused(&mut second).await,
            "a second connection was served while the first waited (max-connections 1)"
        );
        let echo = Echo::start_unix("late", &sock).await;
        upload
            .write_all(&vec![b'x'; BODY - sent])
            .await
            .expect("write the rest of the body");
        let head = read_head(&mut upload).await.expect("the upload's answer");
        assert_eq!(status(&head), 200, "{head}");
        assert_eq!(echo.stats.bytes_in.load(Ordering::SeqCst), BODY as u64);
    })
    .await
}
