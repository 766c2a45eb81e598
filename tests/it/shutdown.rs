//! Graceful shutdown: SIGTERM/SIGINT stop accepting, let in-flight requests finish
//! within the grace period, then exit 0. The library's shutdown handle does the same.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Request;

use crate::support::backends::slow::Slow;
use crate::support::binary::Bellhop;
use crate::support::client::{empty, get, get_in_flight, h1, req, ReqBody};
use crate::support::config::{site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, millis, secs, wait_for_async};

async fn refuses(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

/// A `Slow` backend answering after `delay`, behind a server with `grace` to drain.
async fn slow_front(delay: Duration, grace: Duration) -> (Slow, TestServer) {
    let slow = Slow::start(delay).await;
    let server = TestServer::start(
        ConfigBuilder::new()
            .grace_period(grace)
            .site(site("127.0.0.1").proxy(tcp(slow.http.addr())))
            .build(),
    )
    .await;
    (slow, server)
}

fn get_request(addr: SocketAddr, path: &str) -> Request<ReqBody> {
    req("GET", &addr.to_string(), path).body(empty()).unwrap()
}

async fn sigterm_or_sigint(sig: i32) {
    let slow = Slow::start(millis(1500)).await;
    let bellhop = Bellhop::proxy(&slow.http.addr().to_string(), &[]).await;
    let mut bellhop = bellhop;
    let addr = bellhop.addr();
    let in_flight = get_in_flight(h1(addr, None).await, addr, "/in-flight");
    slow.wait_received(1).await;
    let signalled = Instant::now();
    bellhop.proc.signal(sig);
    wait_for_async("bellhop to stop accepting", secs(5), || refuses(addr)).await;
    assert_eq!(
        slow.answered(),
        0,
        "stopped accepting before the in-flight request ended"
    );
    let r = bounded(secs(10), "in-flight response", in_flight)
        .await
        .expect("task");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "slow done\n");
    let status = bellhop.proc.wait_exit(secs(12)).await;
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    eprintln!("exited {:?} after the signal", signalled.elapsed());
}

#[tokio::test]
async fn sigterm_finishes_the_in_flight_request_then_exits_0() {
    bounded(secs(40), "test", sigterm_or_sigint(libc::SIGTERM)).await
}

#[tokio::test]
async fn sigint_finishes_the_in_flight_request_then_exits_0() {
    bounded(secs(40), "test", sigterm_or_sigint(libc::SIGINT)).await
}

#[tokio::test]
async fn idle_server_exits_0_promptly_on_sigterm() {
    bounded(secs(30), "test", async {
        let slow = Slow::start(millis(10)).await;
        let mut bellhop = Bellhop::proxy(&slow.http.addr().to_string(), &[]).await;
        // An idle keep-alive client connection must not hold shutdown for the grace period.
        let _idle = h1(bellhop.addr(), None).await;
        assert_eq!(
            get(bellhop.addr(), &bellhop.addr().to_string(), "/")
                .await
                .status,
            200
        );
        let t = Instant::now();
        bellhop.proc.signal(libc::SIGTERM);
        let status = bellhop.proc.wait_exit(secs(12)).await;
        assert_eq!(status.code(), Some(0));
        assert!(
            t.elapsed() < secs(5),
            "idle shutdown took {:?}",
            t.elapsed()
        );
    })
    .await
}

#[tokio::test]
async fn shutdown_handle_lets_in_flight_requests_finish() {
    bounded(secs(30), "test", async {
        let (slow, server) = slow_front(millis(1000), secs(10)).await;
        let addr = server.addr();
        let in_flight = get_in_flight(h1(addr, None).await, addr, "/");
        slow.wait_received(1).await;
        server.shutdown();
        wait_for_async("server to stop accepting", secs(5), || refuses(addr)).await;
        let r = bounded(secs(10), "in-flight response", in_flight)
            .await
            .expect("task");
        assert_eq!(r.status, 200);
        let result = bounded(secs(12), "run() to return", server.finished()).await;
        assert_eq!(result, Ok(()));
    })
    .await
}

#[tokio::test]
async fn grace_period_bounds_shutdown() {
    bounded(secs(30), "test", async {
        let (slow, server) = slow_front(secs(60), secs(1)).await;
        let addr = server.addr();
        let mut c = h1(addr, None).await;
        let _stuck = tokio::spawn(async move {
            let _ = c.send_request(get_request(addr, "/")).await;
        });
        slow.wait_received(1).await;
        let t = Instant::now();
        server.shutdown();
        let result = bounded(
            secs(10),
            "run() to return after the grace period",
            server.finished(),
        )
        .await;
        assert_eq!(result, Ok(()));
        assert!(
            t.elapsed() < secs(5),
            "shutdown took {:?} with a 1 s grace period",
            t.elapsed()
        );
    })
    .await
}
