//! Malformed input, beyond what `failures` covers (garbage, a bad
//! Content-Length, CL + chunked smuggling, garbage from the upstream): heads too
//! large, bad or missing Host, absolute-form targets, transfer codings bellhop
//! can't forward, and a backend that dies halfway through a response. Each case
//! gets its status (or an aborted response) and bellhop keeps serving.

use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::echo::{header_values, Echo};
use crate::support::backends::raw::{Death, DiesMidBody};
use crate::support::client::{empty, get, h1, h2_tls, raw, req};
use crate::support::config::{https_site, proxy, site, tcp, ConfigBuilder};
use crate::support::server::{catch_all, TestServer};
use crate::support::{bounded, internal_root, secs, TempDir};

/// The status code of a raw HTTP/1.x response, if there is one.
fn status_of(response: &str) -> Option<u16> {
    response
        .strip_prefix("HTTP/1.")?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sends `input` raw and returns the status of the response, read up to the end
/// of its head (a response may keep the connection open).
async fn status_for(server: &TestServer, input: &[u8]) -> u16 {
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(input).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    bounded(secs(10), "the response head", async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let out = String::from_utf8_lossy(&out);
    status_of(&out).unwrap_or_else(|| {
        panic!(
            "no status line for {:?}: {out:?}",
            String::from_utf8_lossy(&input[..input.len().min(80)])
        )
    })
}

async fn still_serving(server: &TestServer) {
    let r = get(server.addr(), &server.addr().to_string(), "/still-up").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A request head of `lines` header lines of `len` bytes each (names x-h0, x-h1…).
fn head_with_headers(host: &str, lines: usize, len: usize) -> Vec<u8> {
    let mut head = format!("GET /big-head HTTP/1.1\r\nHost: {host}\r\n");
    for i in 0..lines {
        let name = format!("x-h{i}: ");
        let value = "v".repeat(len.saturating_sub(name.len() + 2));
        head.push_str(&name);
        head.push_str(&value);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

/// The request head limit: 64 KiB (hyper's `max_header_size`, exact to the
/// byte: see `limits::head_limit_is_exactly_64_kib`) and 100 header lines.
/// Too large gets 431 and nothing is forwarded.
/// (Under the line limit: 95 lines, as bellhop adds three `X-Forwarded-*` and the
/// echo backend, hyper too, takes at most 100.)
#[tokio::test]
async fn oversized_request_heads_get_431() {
    bounded(secs(30), "test", async {
        let (echo, server) = catch_all().await;
        let host = server.addr().to_string();
        for (lines, len) in [(1, 60 * 1024), (60, 1_000), (95, 20)] {
            let status = status_for(&server, &head_with_headers(&host, lines, len)).await;
            assert_eq!(status, 200, "{lines} lines of {len} bytes");
        }
        assert_eq!(echo.http.stats.requests(), 3);
        for (what, input) in [
            (
                "one 129 KiB header",
                head_with_headers(&host, 1, 129 * 1024),
            ),
            (
                "99 lines of 1,400 bytes",
                head_with_headers(&host, 99, 1_400),
            ),
            ("101 header lines", head_with_headers(&host, 101, 20)),
            ("a 1 MiB header", head_with_headers(&host, 1, 1024 * 1024)),
        ] {
            assert_eq!(status_for(&server, &input).await, 431, "{what}");
        }
        assert_eq!(
            echo.http.stats.requests(),
            3,
            "an oversized head was forwarded"
        );
        still_serving(&server).await;
    })
    .await
}

/// A request line over 64 KiB is refused: 414 when its target is over hyper's
/// 65,534-byte URI limit and the whole head was read, 431 when the head outgrew
/// the buffer first (which depends on how it arrived), never forwarded. A long one
/// under the limit reaches the backend unchanged.
#[tokio::test]
async fn request_line_over_64_kib_is_refused() {
    bounded(secs(30), "test", async {
        let (echo, server) = catch_all().await;
        let host = server.addr().to_string();
        let long = format!("/{}", "a".repeat(60 * 1024));
        let r = get(server.addr(), &host, &long).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["uri"].as_str().map(str::len), Some(long.len()));

        for kib in [65, 100] {
            let line = format!(
                "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
                "a".repeat(kib * 1024)
            );
            let status = status_for(&server, line.as_bytes()).await;
            assert!(
                status == 414 || status == 431,
                "{kib} KiB request line: {status}"
            );
        }
        let line = format!(
            "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            "a".repeat(129 * 1024)
        );
        assert_eq!(status_for(&server, line.as_bytes()).await, 431);
        assert_eq!(echo.http.stats.requests(), 1);
        still_serving(&server).await;
    })
    .await
}

/// RFC 9112 §3.2: an HTTP/1.1 request without Host, with more than one Host, or
/// with a Host that is not a valid host[:port] gets 400, even on a catch-all site
/// that would otherwise forward it.
#[tokio::test]
async fn invalid_missing_or_repeated_host_gets_400() {
    bounded(secs(30), "test", async {
        let (echo, server) = catch_all().await;
        for (what, head) in [
            ("no Host", "GET / HTTP/1.1\r\n\r\n".to_string()),
            (
                "two Hosts",
                "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n".to_string(),
            ),
            (
                "space in Host",
                "GET / HTTP/1.1\r\nHost: a b.test\r\n\r\n".to_string(),
            ),
            (
                "slash in Host",
                "GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n".to_string(),
            ),
            (
                "userinfo in Host",
                "GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n".to_string(),
            ),
            (
                "bad port",
                "GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n".to_string(),
            ),
            (
                "unclosed IPv6",
                "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n".to_string(),
            ),
            (
                "non-ASCII Host",
                "GET / HTTP/1.1\r\nHost: \u{e9}.test\r\n\r\n".to_string(),
            ),
        ] {
            assert_eq!(status_for(&server, head.as_bytes()).await, 400, "{what}");
        }
        assert_eq!(echo.http.stats.requests(), 0, "a bad Host was forwarded");
        // Valid forms still pass: name:port, IPv4, bracketed IPv6, a trailing dot.
        for host in ["a.test:8080", "127.0.0.1", "[::1]:80", "a.test."] {
            let r = get(server.addr(), host, "/").await;
            assert_eq!(r.status, 200, "Host {host}");
            assert_eq!(header_values(&r.json(), "host"), vec![host.to_string()]);
        }
        still_serving(&server).await;
    })
    .await
}

/// HTTP/1.0 has no Host requirement: such a request goes to the site that
/// answers without one, and the backend gets the upstream's address as Host.
#[tokio::test]
async fn http10_without_host_is_served_by_the_catch_all_site() {
    bounded(secs(30), "test", async {
        let (echo, server) = catch_all().await;
        let out = bounded(
            secs(10),
            "answer",
            raw(server.addr(), b"GET /old HTTP/1.0\r\n\r\n"),
        )
        .await;
        assert_eq!(status_of(&out), Some(200), "{out}");
        let body = &out[out.find("\r\n\r\n").expect("head end") + 4..];
        let j: serde_json::Value = serde_json::from_str(body).expect("echo JSON");
        assert_eq!(j["path"], "/old");
        assert_eq!(header_values(&j, "host"), vec![echo.addr().to_string()]);
        still_serving(&server).await;
    })
    .await
}

/// RFC 9112 §3.2.2: with an absolute-form target the target's authority is the
/// host, whatever Host says. bellhop routes by it and forwards it as Host, so a
/// client cannot reach one site while the backend believes it asked for another.
#[tokio::test]
async fn absolute_form_target_wins_over_host() {
    bounded(secs(30), "test", async {
        let good = Echo::start("good").await;
        let other = Echo::start("other").await;
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("good.test").proxy(tcp(good.addr())))
                .site(site("other.test").proxy(tcp(other.addr())))
                .build(),
        )
        .await;
        let port = server.addr().port();
        let head = format!(
            "GET http://other.test:{port}/p?q=1 HTTP/1.1\r\nHost: good.test:{port}\r\nConnection: close\r\n\r\n"
        );
        let out = bounded(secs(10), "answer", raw(server.addr(), head.as_bytes())).await;
        assert_eq!(status_of(&out), Some(200), "{out}");
        let j: serde_json::Value =
            serde_json::from_str(&out[out.find("\r\n\r\n").unwrap() + 4..]).unwrap();
        assert_eq!(j["backend"], "other");
        assert_eq!(j["uri"], "/p?q=1", "the backend gets origin-form");
        assert_eq!(header_values(&j, "host"), vec![format!("other.test:{port}")]);
        assert_eq!(good.http.stats.requests(), 0);

        // An absolute-form target for a host no site answers is a 404, even if
        // Host names a site.
        let head = format!(
            "GET http://nowhere.test:{port}/ HTTP/1.1\r\nHost: good.test:{port}\r\n\r\n"
        );
        assert_eq!(status_for(&server, head.as_bytes()).await, 404);
        assert_eq!(good.http.stats.requests(), 0);
        assert_eq!(get(server.addr(), &server.host("good.test"), "/").await.status, 200);
    })
    .await
}

/// bellhop decodes chunked and nothing else, and forwards bodies re-framed: a
/// request body in any other transfer coding (`gzip, chunked`) would reach the
/// backend still compressed and labelled as plain bytes. So anything but a single
/// `chunked` gets 501 (as nginx does), and a coding list that does not end in
/// chunked gets hyper's 400 (RFC 9112 §6.3: the length cannot be determined).
#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused() {
    bounded(secs(30), "test", async {
        let (echo, server) = catch_all().await;
        let body = "5\r\nhello\r\n0\r\n\r\n";
        for (te, want) in [
            ("gzip, chunked", 501),
            ("deflate, chunked", 501),
            ("chunked, chunked", 501),
            ("gzip", 400),
            ("chunked, gzip", 400),
        ] {
            let head = format!(
                "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: {te}\r\n\r\n{body}"
            );
            assert_eq!(status_for(&server, head.as_bytes()).await, want, "Transfer-Encoding: {te}");
        }
        assert_eq!(echo.http.stats.requests(), 0, "a refused body was forwarded");
        // Plain chunked, in any letter case, is fine.
        for te in ["chunked", "Chunked"] {
            let head = format!(
                "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n{body}"
            );
            let out = bounded(secs(10), "answer", raw(server.addr(), head.as_bytes())).await;
            assert_eq!(status_of(&out), Some(200), "{te}: {out}");
            assert!(out.contains("\"body\":\"hello\""), "{out}");
        }
        still_serving(&server).await;
    })
    .await
}

/// A backend that dies in the middle of a response body: the client sees the
/// response cut short (an error reading the body, never a clean end and never a
/// hang), whatever the framing and however the backend goes, over HTTP/1.1 and
/// h2, and bellhop keeps serving.
#[tokio::test]
async fn backend_dying_mid_body_aborts_the_response() {
    bounded(secs(60), "test", async {
        let state = TempDir::new("dies");
        let echo = Echo::start("fine").await;
        for chunked in [false, true] {
            for death in [Death::Close, Death::Reset] {
                let what = format!("chunked={chunked} {death:?}");
                let dying = DiesMidBody::start(chunked, death).await;
                let plain = TestServer::start(
                    ConfigBuilder::new()
                        .site(
                            site("127.0.0.1")
                                .route("/fine/*", proxy(tcp(echo.addr())))
                                .proxy(tcp(dying.addr)),
                        )
                        .build(),
                )
                .await;
                let tls = TestServer::start(
                    ConfigBuilder::new()
                        .state_dir(state.path())
                        .site(
                            https_site("localhost")
                                .route("/fine/*", proxy(tcp(echo.addr())))
                                .proxy(tcp(dying.addr)),
                        )
                        .build(),
                )
                .await;
                let root = internal_root(state.path()).await;
                let https_uri =
                    |path: &str| format!("https://localhost:{}{path}", tls.addr().port());

                // An HTTP/1.1 and an h2 client, both mid-body when the backend dies.
                let mut c1 = h1(plain.addr(), None).await;
                let r1 = c1
                    .send_request(
                        req("GET", &plain.addr().to_string(), "/")
                            .body(empty())
                            .unwrap(),
                    )
                    .await
                    .expect("h1 response head");
                let mut c2 = h2_tls(tls.addr(), "localhost", &root).await;
                let r2 = c2
                    .send_request(http::Request::get(https_uri("/")).body(empty()).unwrap())
                    .await
                    .expect("h2 response head");
                let mut bodies = Vec::new();
                for (proto, r) in [("h1", r1), ("h2", r2)] {
                    assert_eq!(r.status(), 200, "{what} {proto}");
                    let mut body = r.into_body();
                    // Some of the body arrives before the backend dies.
                    let first = bounded(secs(5), "the first body bytes", body.frame()).await;
                    assert!(matches!(first, Some(Ok(_))), "{what} {proto}: {first:?}");
                    bodies.push((proto, body));
                }
                assert_eq!(dying.requests.load(Ordering::SeqCst), 2);
                dying.kill();
                for (proto, mut body) in bodies {
                    let mut got = 0usize;
                    let end = bounded(secs(10), "the body to end", async {
                        loop {
                            match body.frame().await {
                                Some(Ok(frame)) => got += frame.into_data().map_or(0, |d| d.len()),
                                Some(Err(e)) => return Err(e),
                                None => return Ok(()),
                            }
                        }
                    })
                    .await;
                    assert!(
                        end.is_err(),
                        "{what} {proto}: the truncated body ended cleanly after {got} more bytes"
                    );
                    assert!(got < DiesMidBody::ANNOUNCED, "{what} {proto}");
                }

                // Still serving, on both.
                let r = get(plain.addr(), &plain.addr().to_string(), "/fine/x").await;
                assert_eq!(r.status, 200, "{what}");
                let mut c = h2_tls(tls.addr(), "localhost", &root).await;
                let r = c
                    .send_request(
                        http::Request::get(https_uri("/fine/y"))
                            .body(empty())
                            .unwrap(),
                    )
                    .await
                    .expect("h2 request");
                assert_eq!(r.status(), 200, "{what}");
            }
        }
    })
    .await
}
