//! bellhop's own HTTP/1.1 server side (`server/h1`) as a client on a raw
//! socket sees it: `Expect: 100-continue`, pipelined requests, HTTP/1.0
//! keep-alive and close-delimited bodies, and a request body that arrives
//! after bellhop has already sent the head upstream.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::server::catch_all;
use crate::support::{bounded, secs, wait_for};

/// Reads from `s` into `buf` until `done(buf)` holds (or the stream ends).
async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Where the head in `buf` ends, if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Reads one response with a Content-Length from `s` (bytes after it stay in
/// `buf`); returns its head and body.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, String) {
    bounded(secs(10), "a response", async {
        read_until(s, buf, |b| head_end(b).is_some()).await;
        let end = head_end(buf)
            .unwrap_or_else(|| panic!("no complete head: {:?}", String::from_utf8_lossy(buf)));
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        read_until(s, buf, |b| b.len() >= end + len).await;
        let body = String::from_utf8_lossy(&buf[end..end + len]).into_owned();
        buf.drain(..end + len);
        (head, body)
    })
    .await
}

/// A client that sends `Expect: 100-continue` gets the interim answer before
/// it sends its body, and the body then reaches the upstream whole.
#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    bounded(secs(20), "test", async {
        let (_echo, server) = catch_all().await;
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(
            b"POST /upload HTTP/1.1\r\nhost: app.test\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write the head");
        let mut buf = Vec::new();
        bounded(secs(10), "the 100", read_until(&mut s, &mut buf, |b| head_end(b).is_some())).await;
        let interim = String::from_utf8_lossy(&buf).into_owned();
        assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n", "the first answer");
        buf.clear();
        s.write_all(b"hello").await.expect("write the body");
        let (head, body) = response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let j: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
        assert_eq!(j["body"], "hello");
    })
    .await
}

/// Requests sent back to back in one write are answered in order on the one
/// connection.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    bounded(secs(20), "test", async {
        let (echo, server) = catch_all().await;
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(
            b"GET /one HTTP/1.1\r\nhost: app.test\r\n\r\nPOST /two HTTP/1.1\r\nhost: app.test\r\ncontent-length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nhost: app.test\r\n\r\n",
        )
        .await
        .expect("write");
        let mut buf = Vec::new();
        for (path, body) in [("/one", ""), ("/two", "abc"), ("/three", "")] {
            let (head, text) = response(&mut s, &mut buf).await;
            assert!(head.starts_with("HTTP/1.1 200 "), "{path}: {head}");
            let j: serde_json::Value = serde_json::from_str(&text).expect("echo JSON");
            assert_eq!(j["uri"], path);
            assert_eq!(j["body"], body, "{path}");
        }
        assert_eq!(echo.http.stats.requests(), 3);
    })
    .await
}

/// An HTTP/1.0 client that asks for keep-alive is told so and kept; one that
/// does not gets a response that ends with the connection.
#[tokio::test]
async fn http10_keep_alive_is_kept_and_said() {
    bounded(secs(20), "test", async {
        let (_echo, server) = catch_all().await;
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        let mut buf = Vec::new();
        for path in ["/a", "/b"] {
            let request = format!("GET {path} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
            s.write_all(request.as_bytes()).await.expect("write");
            let (head, body) = response(&mut s, &mut buf).await;
            assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
            let j: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
            assert_eq!(j["uri"], path);
        }
        s.write_all(b"GET /c HTTP/1.0\r\n\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        bounded(secs(10), "the close", s.read_to_end(&mut rest))
            .await
            .expect("read to the end");
        let text = String::from_utf8_lossy(&rest);
        assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
    })
    .await
}

/// A request body that comes after bellhop has sent the head upstream (the
/// backend has seen the request) is sent once, after that head: not the head
/// a second time.
#[tokio::test]
async fn a_body_that_comes_after_the_head_is_forwarded_after_it() {
    bounded(secs(20), "test", async {
        let (echo, server) = catch_all().await;
        let mut s = TcpStream::connect(server.addr()).await.expect("connect");
        s.write_all(b"PUT /late HTTP/1.1\r\nhost: app.test\r\ncontent-length: 4\r\n\r\n")
            .await
            .expect("write the head");
        wait_for("the backend to get the head", secs(10), || {
            echo.http.stats.requests() == 1
        })
        .await;
        s.write_all(b"late").await.expect("write the body");
        let mut buf = Vec::new();
        let (head, body) = response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        let j: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
        assert_eq!(j["body"], "late");
        assert_eq!(j["uri"], "/late");
    })
    .await
}
