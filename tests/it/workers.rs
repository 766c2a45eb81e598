//! Worker threads (`options { workers N }`): N threads serve, every one of them
//! accepts on every port (also on a port a reload adds), and shutdown ends them.
//!
//! Each worker has its own `SO_REUSEPORT` socket per port and the kernel picks
//! one per new connection by its addresses' hash, so a worker that failed to
//! accept would leave some of many fresh connections unanswered: with 3 workers
//! and 40 connections, every socket is picked at least once but with odds of
//! about 1 in 10^7.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use bellhop::config::Config;

use crate::support::backends::echo::Echo;
use crate::support::client::get;
use crate::support::config::{site, tcp, ConfigBuilder};
use crate::support::ports::Port;
use crate::support::server::TestServer;
use crate::support::{bounded, secs, wait_for};

/// Workers the tests ask for: more than the CPUs of a small CI machine, so
/// the count comes from the option, not from the default.
const WORKERS: usize = 3;
/// Fresh connections per port: enough to reach every worker's socket.
const CONNECTIONS: usize = 40;

/// Threads of this process named like bellhop's workers (nextest runs each
/// test in its own process). Linux cuts thread names to 15 bytes.
fn worker_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("bellhop-worker"))
        .count()
}

fn config(echo: &Echo, extra_port: Option<u16>) -> Config {
    let mut builder = ConfigBuilder::new()
        .options(|o| o.workers = NonZeroUsize::new(WORKERS))
        .site(site("").proxy(tcp(echo.addr())));
    if extra_port.is_some() {
        builder = builder.site(site("127.0.0.1").proxy(tcp(echo.addr())));
    }
    let mut config = builder.build();
    if let (Some(port), Some(extra)) = (extra_port, config.sites.get_mut(1)) {
        extra.addresses[0].port = Some(port);
    }
    config
}

/// Sends `CONNECTIONS` requests to `addr`, each on a new connection.
async fn all_answered(addr: SocketAddr) {
    for i in 0..CONNECTIONS {
        let reply = get(addr, &addr.to_string(), "/").await;
        assert_eq!(reply.status, 200, "connection {i}: {}", reply.text());
    }
}

#[tokio::test]
async fn every_worker_accepts_on_every_port_and_shutdown_ends_them() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("app").await;
        let server = TestServer::start(config(&echo, None)).await;
        wait_for("the worker threads", secs(5), || {
            worker_threads() == WORKERS
        })
        .await;
        all_answered(server.addr()).await;

        server.shutdown();
        server.finished().await.expect("run returns Ok");
        wait_for("the worker threads to end", secs(5), || {
            worker_threads() == 0
        })
        .await;
    })
    .await
}

#[tokio::test]
async fn a_port_added_by_reload_is_accepted_on_every_worker() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("app").await;
        let server = bellhop::Server::bind(config(&echo, None))
            .await
            .expect("Server::bind");
        let reload = server.reload_handle();
        let shutdown = server.shutdown_handle();
        let task = tokio::spawn(server.run());

        let reserved = Port::reserve();
        let added = SocketAddr::from(([127, 0, 0, 1], reserved.number()));
        let summary = reload
            .reload(config(&echo, Some(added.port())))
            .await
            .expect("reload adding a port");
        assert_eq!(summary.listeners_added, vec![added], "{summary}");
        all_answered(added).await;

        shutdown.shutdown();
        task.await.expect("server task").expect("run returns Ok");
    })
    .await
}
