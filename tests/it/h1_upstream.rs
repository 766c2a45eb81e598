//! bellhop's own HTTP/1.1 upstream client against a backend that writes its
//! responses byte for byte: informational responses skipped, chunk extensions
//! and trailers, the framing shapes that smuggle (several lengths, chunked
//! twice, chunked plus a length), oversized heads and read-to-close bodies.
//! Each case checks what the client gets and whether the upstream connection
//! was reused (the backend counts its connections).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::client::{empty, get, h1, req};
use crate::support::config::{site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, secs, spawn_task, Task};

/// A backend that answers each request head with the bytes `answer` gives for
/// its path, then reads the next head on the same connection (or closes when
/// the path starts with `/close`).
struct Scripted {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicU64>,
    _task: Task,
}

impl Scripted {
    async fn start(answer: fn(&str) -> Vec<u8>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let task = spawn_task(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => pending.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        pending.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        if sock.write_all(&answer(&path)).await.is_err() {
                            return;
                        }
                        if path.starts_with("/close") {
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            connections,
            _task: task,
        }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn front(backend: &Scripted) -> TestServer {
    TestServer::start(
        ConfigBuilder::new()
            .site(site("").proxy(tcp(backend.addr)))
            // One worker, one pool: the connection counts are exact.
            .options(|o| o.workers = std::num::NonZeroUsize::new(1))
            .build(),
    )
    .await
}

fn script(path: &str) -> Vec<u8> {
    let text = match path {
        "/hints" => concat!(
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ),
        "/chunked" => concat!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            "5;name=\"value\"\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n",
            "0\r\nx-checksum: 1\r\n\r\n",
        ),
        "/two-lengths" => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
        "/chunked-twice" => {
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n"
        }
        "/te-and-cl" => concat!(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n",
            "2\r\nok\r\n0\r\n\r\n",
        ),
        "/bad-chunk" => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n",
        "/close-read-to-close" => "HTTP/1.1 200 OK\r\n\r\nuntil the end",
        "/huge-head" | "/big-head" => {
            // About 114 KiB of head (over the 64 KiB limit), or 40 headers
            // of 900 bytes, 36 KiB (over one 16 KiB upstream read, under
            // the limit).
            let (lines, width) = if path == "/huge-head" {
                (2000, 40)
            } else {
                (40, 900)
            };
            let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..lines {
                head.extend_from_slice(
                    format!("x-filler-{i}: {}\r\n", "a".repeat(width)).as_bytes(),
                );
            }
            head.extend_from_slice(b"content-length: 0\r\n\r\n");
            return head;
        }
        _ => "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfine",
    };
    text.as_bytes().to_vec()
}

#[tokio::test]
async fn informational_responses_are_skipped_and_chunks_pass_intact() {
    let backend = Scripted::start(script).await;
    let server = front(&backend).await;
    let host = server.addr().to_string();
    let r = get(server.addr(), &host, "/hints").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    assert!(r.header("link").is_none(), "a 103's headers leaked");
    let r = get(server.addr(), &host, "/chunked").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello world"));
    let r = get(server.addr(), &host, "/").await;
    assert_eq!(r.text(), "fine");
    assert_eq!(
        backend.connections(),
        1,
        "clean responses keep the connection"
    );
}

#[tokio::test]
async fn ambiguous_framing_is_a_502_and_the_connection_is_dropped() {
    let backend = Scripted::start(script).await;
    let server = front(&backend).await;
    let host = server.addr().to_string();
    let mut expected = 0;
    for path in ["/two-lengths", "/chunked-twice", "/huge-head"] {
        let r = get(server.addr(), &host, path).await;
        assert_eq!(r.status, 502, "{path}: {}", r.text());
        let r = get(server.addr(), &host, "/").await;
        assert_eq!(r.text(), "fine", "after {path}");
        // The failed connection is gone; the next request needed a new one.
        expected += 2;
        assert_eq!(backend.connections(), expected, "after {path}");
        // Start every case on a fresh connection.
        let _ = get(server.addr(), &host, "/close-read-to-close").await;
    }
}

#[tokio::test]
async fn a_head_longer_than_one_read_arrives_whole() {
    let backend = Scripted::start(script).await;
    let server = front(&backend).await;
    let host = server.addr().to_string();
    let r = get(server.addr(), &host, "/big-head").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let filler = "a".repeat(900);
    for i in [0, 20, 39] {
        assert_eq!(
            r.header(&format!("x-filler-{i}")).as_deref(),
            Some(filler.as_str()),
            "x-filler-{i}"
        );
    }
}

#[tokio::test]
async fn chunked_wins_over_a_length_and_the_connection_is_not_reused() {
    let backend = Scripted::start(script).await;
    let server = front(&backend).await;
    let host = server.addr().to_string();
    let r = get(server.addr(), &host, "/te-and-cl").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    assert!(r.header("content-length").is_none());
    let r = get(server.addr(), &host, "/").await;
    assert_eq!(r.text(), "fine");
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn read_to_close_bodies_arrive_whole_and_end_the_connection() {
    let backend = Scripted::start(script).await;
    let server = front(&backend).await;
    let host = server.addr().to_string();
    let r = get(server.addr(), &host, "/close-read-to-close").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "until the end")
    );
    let r = get(server.addr(), &host, "/").await;
    assert_eq!(r.text(), "fine");
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn a_bad_chunk_mid_body_aborts_the_client_response() {
    let backend = Scripted::start(script).await;
    let server = front(&backend).await;
    let host = server.addr().to_string();
    let mut client = h1(server.addr(), None).await;
    let request = req("GET", &host, "/bad-chunk").body(empty()).unwrap();
    // The head may be out before the bad chunk is read, or not.
    if let Ok(response) = client.send_request(request).await {
        assert_eq!(response.status(), 200);
        let body = bounded(secs(10), "the body's end", response.into_body().collect()).await;
        assert!(body.is_err(), "a broken body was delivered as complete");
    }
    let r = get(server.addr(), &host, "/").await;
    assert_eq!(r.text(), "fine");
    assert_eq!(backend.connections(), 2);
}
