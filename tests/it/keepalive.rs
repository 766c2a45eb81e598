//! Stale pooled upstream connections. uvicorn closes idle keep-alive connections
//! after 5 s; the test backend does it after 1 s (or less), and bellhop must never
//! turn the resulting race into a 502.

use std::time::Duration;

use crate::support::backends::idle_close::IdleClose;
use hyper::client::conn::http1::SendRequest;

use crate::support::client::{body, collect, empty, h1, req, ReqBody};
use crate::support::config::{proxy, site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, millis, secs};

/// bellhop proxying to `backend`, and one client connection to it: the
/// server (keep it alive), the Host to send, the client.
async fn front(backend: &IdleClose) -> (TestServer, String, SendRequest<ReqBody>) {
    let server = TestServer::start(
        ConfigBuilder::new()
            .site(site("127.0.0.1").proxy(tcp(backend.addr)))
            .build(),
    )
    .await;
    let host = server.addr().to_string();
    let client = h1(server.addr(), None).await;
    (server, host, client)
}

/// A long run of requests spaced around the backend's 1 s idle close. Three lanes
/// run at once, each against its own backend (so each has its own pooled
/// connection), with spacings sweeping across the close instant in 2 ms steps so
/// requests reach bellhop just before, at, and just after the backend's FIN.
#[tokio::test]
async fn spaced_requests_against_a_1s_idle_backend_never_get_502() {
    bounded(secs(60), "test", async {
        const LANES: u64 = 3;
        const PER_LANE: u64 = 15;
        let mut backends = Vec::new();
        let mut lanes_site = site("127.0.0.1");
        for lane in 0..LANES {
            let b = IdleClose::start(secs(1)).await;
            lanes_site = lanes_site.route(&format!("/lane{lane}/*"), proxy(tcp(b.addr)));
            backends.push(b);
        }
        let server = TestServer::start(ConfigBuilder::new().site(lanes_site).build()).await;
        let host = server.addr().to_string();
        let mut lanes = Vec::new();
        for lane in 0..LANES {
            let (addr, host) = (server.addr(), host.clone());
            lanes.push(tokio::spawn(async move {
                let mut client = h1(addr, None).await;
                let mut statuses = Vec::new();
                for i in 0..PER_LANE {
                    // 985 ms .. 1015 ms, a different phase per lane.
                    let step = (i * LANES + lane) % 16;
                    tokio::time::sleep(Duration::from_millis(985 + 2 * step)).await;
                    let path = format!("/lane{lane}/req{i}");
                    let resp = client
                        .send_request(req("GET", &host, &path).body(empty()).unwrap())
                        .await
                        .expect("client request");
                    let r = collect(resp).await;
                    statuses.push((path, r.status.as_u16(), r.text()));
                }
                statuses
            }));
        }
        let mut bad = Vec::new();
        for lane in lanes {
            for (path, status, text) in lane.await.expect("lane") {
                if status != 200 {
                    bad.push(format!("{path}: {status} {text}"));
                }
            }
        }
        let conns: u64 = backends.iter().map(|b| b.conns()).sum();
        let requests: u64 = backends.iter().map(|b| b.requests()).sum();
        let closes: u64 = backends.iter().map(|b| b.idle_closes()).sum();
        eprintln!("backends: {conns} connections, {requests} requests, {closes} idle closes");
        assert!(
            bad.is_empty(),
            "{} of {} requests failed: {bad:#?}",
            bad.len(),
            LANES * PER_LANE
        );
        assert_eq!(requests, LANES * PER_LANE);
        // The run only means something if the backends really closed pooled
        // connections, and bellhop really reused some.
        assert!(
            closes >= 10,
            "backends closed only {closes} idle connections"
        );
        assert!(conns < requests, "bellhop never reused a pooled connection");
    })
    .await
}

/// The same race, made certain: after 300 ms idle the backend drops a connection the
/// moment the next request arrives on it, unread and unanswered, which is what a
/// proxy sees when its request crosses the backend's FIN. Every reused connection
/// fails that way and its request is retried on a fresh connection. The fresh one
/// is not pooled, so the request after a retry opens a new pooled connection and
/// the one after that reuses it: of requests 0..8, exactly 1, 3, 5 and 7 need the
/// retry, and every request gets its own backend connection.
#[tokio::test]
async fn get_on_a_pooled_connection_the_backend_closed_is_retried() {
    bounded(secs(30), "test", async {
        let backend = IdleClose::start_lazy(millis(300)).await;
        let (_server, host, mut client) = front(&backend).await;
        for i in 0..8 {
            if i > 0 {
                // Longer than the backend's idle time, shorter than bellhop's pool idle timeout.
                tokio::time::sleep(millis(500)).await;
            }
            let resp = client
                .send_request(req("GET", &host, &format!("/r{i}")).body(empty()).unwrap())
                .await
                .expect("client request");
            let r = collect(resp).await;
            assert_eq!(r.status, 200, "request {i}: {}", r.text());
        }
        assert_eq!(backend.requests(), 8);
        assert_eq!(
            (backend.idle_closes(), backend.conns()),
            (4, 8),
            "(requests dropped on a reused connection, connections): expected the \
             four odd-numbered requests to reuse, fail and be retried"
        );
    })
    .await
}

/// An idle pooled connection is closed by bellhop once `pool-idle-timeout` has
/// passed, with no further traffic to trigger it: the backend sees EOF. (The
/// in-process server runs on the test's single-threaded runtime, where each
/// thread's pool has its own reaper.)
#[tokio::test]
async fn idle_pooled_connection_is_closed_after_the_pool_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(secs(10), "test", async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = listener.local_addr().unwrap();
        let upstream = crate::support::config::proxy_with(vec![tcp(backend)], |p| {
            p.pool_idle_timeout = millis(300);
        });
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").handle(upstream))
                .build(),
        )
        .await;
        let host = server.addr().to_string();
        let closed = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0, "bellhop closed before sending its request");
                head.extend_from_slice(&buf[..n]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            let answered = tokio::time::Instant::now();
            // Nothing more is sent; the next read ends when bellhop closes.
            let n = sock.read(&mut buf).await.unwrap_or(0);
            (n, answered.elapsed())
        });
        let mut client = h1(server.addr(), None).await;
        let resp = client
            .send_request(req("GET", &host, "/").body(empty()).unwrap())
            .await
            .expect("client request");
        assert_eq!(collect(resp).await.status, 200);
        let (n, idle) = closed.await.expect("backend task");
        assert_eq!(n, 0, "bellhop sent more bytes instead of closing");
        assert!(idle >= millis(250), "closed after only {idle:?}");
    })
    .await
}

/// The race without the idle gap: the backend's keep-alive timer started before
/// bellhop's pool clock (a long download to a slow client keeps the connection
/// out of the pool after the backend's last byte), so it fires just as bellhop
/// reuses the connection. The backend here closes a reused connection the
/// moment a request arrives on it, unanswered, however short the idle time.
/// A GET sent right after the previous exchange is replayed once on a fresh
/// connection; a PUT with a body is not (bellhop no longer has the body): 502,
/// and the backend sees no second connection for it.
#[tokio::test]
async fn reused_upstream_connection_dying_at_once_replays_a_get_but_not_a_put_with_a_body() {
    bounded(secs(30), "test", async {
        let backend = IdleClose::start_lazy(Duration::ZERO).await;
        let (_server, host, mut client) = front(&backend).await;
        let mut send = async |method: &str, path: &str, payload: &'static str| {
            let request = req(method, &host, path).body(body(payload));
            let resp = client
                .send_request(request.unwrap())
                .await
                .expect("client request");
            collect(resp).await
        };
        // A fresh connection, which goes to the pool.
        assert_eq!(send("GET", "/first", "").await.status, 200);
        // Reused at once, closed by the backend: replayed on a fresh one.
        let r = send("GET", "/second", "").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!((backend.idle_closes(), backend.conns()), (1, 2));
        // The replay's connection served that request only: a new pooled one.
        assert_eq!(send("GET", "/third", "").await.status, 200);
        assert_eq!(backend.conns(), 3);
        // Reused at once with a body: not replayed.
        let r = send("PUT", "/upload", "payload").await;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(
            (backend.idle_closes(), backend.conns(), backend.requests()),
            (2, 3, 3),
            "(dropped requests, connections, answered requests)"
        );
    })
    .await
}
