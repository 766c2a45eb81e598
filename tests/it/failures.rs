//! Upstream failures and bad peers: 502 at once when refused and waiting is
//! off (`upstream-wait "0s"`; waiting itself is `upstream_restart`), 504 when headers are
//! too slow, the upstream connection dropped when the client goes away, and bad
//! input answered with an error while the server keeps serving.

use std::time::Instant;

use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::support::backends::echo::Echo;
use crate::support::backends::raw::Garbage;
use crate::support::backends::slow::Slow;
use crate::support::client::{empty, get, get_in_flight, h1, raw, req};
use crate::support::config::{proxy_with, site, tcp, unix, ConfigBuilder};
use crate::support::ports::Port;
use crate::support::server::TestServer;
use crate::support::{bounded, millis, secs, wait_for};

async fn front(
    upstream: std::net::SocketAddr,
    header_timeout: Option<std::time::Duration>,
) -> TestServer {
    let handler = proxy_with(vec![tcp(upstream)], |p| {
        p.upstream_wait = std::time::Duration::ZERO;
        if let Some(t) = header_timeout {
            p.header_timeout = t;
        }
    });
    TestServer::start(
        ConfigBuilder::new()
            .site(site("127.0.0.1").handle(handler))
            .build(),
    )
    .await
}

#[tokio::test]
async fn refused_upstream_gives_502_at_once_without_upstream_wait() {
    bounded(secs(20), "test", async {
        // Reserved for the whole test and never listened on: refused every time.
        let nobody = Port::reserve();
        let closed = std::net::SocketAddr::from(([127, 0, 0, 1], nobody.number()));
        let server = front(closed, None).await;
        let started = Instant::now();
        let r = get(server.addr(), &server.addr().to_string(), "/").await;
        let took = started.elapsed();
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(took < millis(1000), "502 took {took:?}");
        // And again: a refused upstream does not wedge anything.
        let r = get(server.addr(), &server.addr().to_string(), "/again").await;
        assert_eq!(r.status, 502);
    })
    .await
}

#[tokio::test]
async fn upstream_too_slow_for_headers_gives_504() {
    bounded(secs(20), "test", async {
        let slow = Slow::start(secs(30)).await;
        let server = front(slow.http.addr(), Some(secs(1))).await;
        let started = Instant::now();
        let r = get(server.addr(), &server.addr().to_string(), "/slow").await;
        let took = started.elapsed();
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(
            took >= millis(900) && took < secs(5),
            "504 after {took:?}, header timeout is 1 s"
        );
        assert_eq!(slow.received(), 1);
        // bellhop gave up on that upstream connection.
        wait_for("slow backend connection dropped", secs(5), || {
            slow.http.stats.open() == 0
        })
        .await;
    })
    .await
}

/// The header timeout counts from each request's own start on a reused
/// upstream connection, not from an earlier request's: the connection's timer
/// stays armed at the first request's deadline (proxy/conn.rs, `HeaderTimer`),
/// which here passes 400 ms into the second request.
#[tokio::test]
async fn the_header_timeout_counts_from_each_request_on_a_reused_connection() {
    bounded(secs(20), "test", async {
        let slow = Slow::start(secs(30)).await;
        let server = front(slow.http.addr(), Some(secs(1))).await;
        let host = server.addr().to_string();
        let mut c = h1(server.addr(), None).await;
        let first = c
            .send_request(req("GET", &host, "/after-ms/600").body(empty()).unwrap())
            .await
            .expect("first request");
        assert_eq!(first.status(), 200);
        first.into_body().collect().await.expect("first body");
        let started = Instant::now();
        let second = c
            .send_request(req("GET", &host, "/slow").body(empty()).unwrap())
            .await
            .expect("second request");
        let took = started.elapsed();
        assert_eq!(second.status(), 504);
        assert!(
            took >= millis(950) && took < secs(5),
            "504 after {took:?}, header timeout is 1 s"
        );
        // Both went over one upstream connection, so the second met the
        // timer the first had armed.
        assert_eq!(slow.http.stats.accepted(), 1);
        assert_eq!(slow.received(), 2);
    })
    .await
}

#[tokio::test]
async fn slow_upstream_within_the_header_timeout_is_fine() {
    bounded(secs(20), "test", async {
        let slow = Slow::start(millis(1500)).await;
        let server = front(slow.http.addr(), Some(secs(5))).await;
        let r = get(server.addr(), &server.addr().to_string(), "/slow").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "slow done\n");
    })
    .await
}

#[tokio::test]
async fn client_gone_mid_stream_drops_the_upstream_connection() {
    bounded(secs(20), "test", async {
        let echo = Echo::start("stream").await;
        let server = front(echo.addr(), None).await;
        let mut c = h1(server.addr(), None).await;
        let resp = c
            .send_request(
                req("GET", &server.addr().to_string(), "/stream-forever")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = 0;
        while got < 5 {
            let f = bounded(secs(5), "streamed chunk", body.frame()).await;
            assert!(matches!(f, Some(Ok(_))), "{f:?}");
            got += 1;
        }
        assert_eq!(
            echo.stats
                .streams_open
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        assert_eq!(echo.http.stats.open(), 1);
        drop(body);
        drop(c); // the client connection goes away mid-stream
        wait_for("backend stream to stop", secs(5), || {
            echo.stats
                .streams_open
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
        })
        .await;
        wait_for("upstream connection closed", secs(5), || {
            echo.http.stats.open() == 0
        })
        .await;
    })
    .await
}

#[tokio::test]
async fn client_gone_mid_upload_drops_the_upstream_connection() {
    bounded(secs(20), "test", async {
        let echo = Echo::start("upload").await;
        let server = front(echo.addr(), None).await;
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: {}\r\ncontent-length: 100000000\r\n\r\n",
            server.addr()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..4 {
            s.write_all(&chunk).await.unwrap();
        }
        wait_for("upload to start reaching the backend", secs(5), || {
            echo.stats
                .bytes_in
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0
        })
        .await;
        assert_eq!(echo.http.stats.open(), 1);
        drop(s); // the client goes away with 99.7 MB still to send
        wait_for("upstream connection closed", secs(5), || {
            echo.http.stats.open() == 0
        })
        .await;
        assert!(
            echo.stats
                .bytes_in
                .load(std::sync::atomic::Ordering::SeqCst)
                < 100_000_000
        );
    })
    .await
}

#[tokio::test]
async fn missing_unix_socket_gives_502_at_once_without_upstream_wait() {
    bounded(secs(20), "test", async {
        let dir = crate::support::TempDir::new("nosock");
        let handler = proxy_with(vec![unix(&dir.path().join("absent.sock"))], |p| {
            p.upstream_wait = std::time::Duration::ZERO;
        });
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").handle(handler))
                .build(),
        )
        .await;
        let started = Instant::now();
        let r = get(server.addr(), &server.addr().to_string(), "/").await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert!(
            started.elapsed() < millis(1000),
            "502 took {:?}",
            started.elapsed()
        );
    })
    .await
}

#[tokio::test]
async fn client_gone_while_waiting_for_headers_drops_the_upstream_connection() {
    bounded(secs(20), "test", async {
        let slow = Slow::start(secs(30)).await;
        let server = front(slow.http.addr(), None).await;
        let pending = get_in_flight(h1(server.addr(), None).await, server.addr(), "/wait");
        slow.wait_received(1).await;
        pending.abort(); // drops the client connection
        wait_for("upstream connection closed", secs(5), || {
            slow.http.stats.open() == 0
        })
        .await;
    })
    .await
}

#[tokio::test]
async fn garbage_from_the_upstream_gives_502_and_serving_goes_on() {
    bounded(secs(20), "test", async {
        let garbage = Garbage::start().await;
        let echo = Echo::start("fine").await;
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("bad.test").proxy(tcp(garbage.addr)))
                .site(site("good.test").proxy(tcp(echo.addr())))
                .build(),
        )
        .await;
        let r = get(server.addr(), &server.host("bad.test"), "/").await;
        assert_eq!(r.status, 502);
        let r = get(server.addr(), &server.host("good.test"), "/").await;
        assert_eq!(r.status, 200);
    })
    .await
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_serving_goes_on() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("fine").await;
        let server = front(echo.addr(), None).await;
        let host = server.addr().to_string();
        let bad: Vec<Vec<u8>> = vec![
            b"GARBAGE\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            format!(
                "GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
                "a".repeat(512 * 1024)
            )
            .into_bytes(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), // a TLS ClientHello on plain HTTP
            vec![0u8; 64],
        ];
        for input in &bad {
            let out = bounded(secs(10), "answer to bad input", raw(server.addr(), input)).await;
            if let Some(status) = out
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
            {
                assert!(
                    (400..500).contains(&status),
                    "bad input {:?} got {out:?}",
                    String::from_utf8_lossy(&input[..input.len().min(60)])
                );
            } // else: the connection was closed without a response, also acceptable
        }
        let r = get(server.addr(), &host, "/still-up").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            echo.http.stats.requests(),
            1,
            "no bad request reached the backend"
        );
    })
    .await
}

/// Content-Length and chunked together is the classic request-smuggling shape:
/// whatever bellhop does (reject, or let chunked win and close), a request hidden
/// after the chunked body must never reach the backend.
#[tokio::test]
async fn content_length_with_chunked_smuggles_nothing() {
    bounded(secs(20), "test", async {
        let echo = Echo::start("fine").await;
        let server = front(echo.addr(), None).await;
        let host = server.addr().to_string();
        let input = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n"
        );
        let out = bounded(secs(10), "answer", raw(server.addr(), input.as_bytes())).await;
        assert!(!out.contains("/smuggled"), "the hidden request was served: {out}");
        assert!(echo.http.stats.requests() <= 1, "the backend got {} requests", echo.http.stats.requests());
        if out.contains("\"headers\"") {
            let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
            let j: serde_json::Value = serde_json::from_str(body).unwrap();
            let names: Vec<&str> = j["headers"].as_array().unwrap().iter().map(|h| h[0].as_str().unwrap()).collect();
            assert!(
                !(names.contains(&"content-length") && names.contains(&"transfer-encoding")),
                "both framing headers forwarded: {names:?}"
            );
        }
    })
    .await
}
