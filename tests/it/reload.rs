//! Config reload: a new config is swapped in while open connections, in-flight
//! requests and WebSockets keep flowing; a bad config changes nothing; ports
//! added start accepting, ports removed stop accepting but finish what they hold.
//!
//! In-process tests drive `Server::reload_handle()`; the SIGHUP path goes
//! through the spawned binary.

use std::net::SocketAddr;

use bellhop::config::Config;
use bellhop::{ReloadHandle, Server, ShutdownHandle};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::support::backends::echo::Echo;
use crate::support::backends::slow::Slow;
use crate::support::backends::ws::WsBackend;
use crate::support::binary::{run_cli, Bellhop};
use crate::support::client::{collect, empty, get, get_in_flight, h1, req, Reply};
use crate::support::config::{proxy, respond, site, tcp, ConfigBuilder};
use crate::support::ports::Port;
use crate::support::ws::{connect, next_data, try_connect, Ws};
use crate::support::{bounded, millis, secs, wait_for, wait_for_async, TempDir};

/// A running in-process server with both handles; shut down and aborted on drop.
struct Running {
    addrs: Vec<SocketAddr>,
    reload: ReloadHandle,
    shutdown: ShutdownHandle,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(config: Config) -> Running {
        let server = Server::bind(config).await.expect("Server::bind");
        let addrs = server.local_addrs().into_iter().map(loopback).collect();
        let reload = server.reload_handle();
        let shutdown = server.shutdown_handle();
        let task = tokio::spawn(server.run());
        Running {
            addrs,
            reload,
            shutdown,
            task,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        self.task.abort();
    }
}

/// A listener on all interfaces reports `[::]:PORT`; tests talk to 127.0.0.1.
fn loopback(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], a.port()))
    } else {
        a
    }
}

/// Which echo backend answered a request.
fn backend(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["backend"].as_str().unwrap_or_default().to_string()
}

/// Which echo backend answers `GET /` through `addr`.
async fn served_by(addr: SocketAddr) -> String {
    backend(&get(addr, &addr.to_string(), "/").await)
}

/// A Proxyfile keeping state in `state`, proxying to `upstream`, with `extra`
/// lines (each ending in a newline) added to the site block.
fn state_proxyfile(state: &std::path::Path, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "options {{\n    state-dir \"{}\"\n}}\n\"http://127.0.0.1:0\" {{\n    proxy \"{upstream}\"\n{extra}}}\n",
        state.display()
    )
}

/// `config` with the address of site `index` moved from port 0 to `port`.
fn on_port(mut config: Config, index: usize, port: u16) -> Config {
    config.sites[index].addresses[0].port = Some(port);
    config
}

async fn refuses(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

/// Reads the next pushed number; the push backend counts 0, 1, 2… as text.
async fn next_number(ws: &mut Ws) -> u64 {
    match bounded(secs(5), "next pushed message", next_data(ws)).await {
        Some(Ok(Message::Text(t))) => t.parse().expect("a number"),
        other => panic!("websocket ended or sent something else: {other:?}"),
    }
}

/// Reads `n` more pushed numbers and checks they follow `last` without a gap.
async fn expect_in_order(ws: &mut Ws, last: &mut u64, n: usize) {
    for _ in 0..n {
        let got = next_number(ws).await;
        assert_eq!(got, *last + 1, "pushed messages out of order or lost");
        *last = got;
    }
}

/// One `/push` route to the WebSocket backend (when `with_ws`) and a catch-all
/// `handler`, on any host, port 0.
fn ws_config(ws: &WsBackend, with_ws: bool, handler: bellhop::config::Handler) -> Config {
    let mut s = site("");
    if with_ws {
        s = s.route("/push", proxy(tcp(ws.addr)));
    }
    ConfigBuilder::new().site(s.handle(handler)).build()
}

#[tokio::test]
async fn websocket_keeps_delivering_in_order_across_three_reloads() {
    bounded(secs(60), "test", async {
        let ws_backend = WsBackend::start().await;
        let a = Echo::start("a").await;
        let b = Echo::start("b").await;
        let c = Echo::start("c").await;
        let server = Running::start(ws_config(&ws_backend, true, proxy(tcp(a.addr())))).await;
        let addr = server.addr();
        let host = addr.to_string();
        assert_eq!(backend(&get(addr, &host, "/").await), "a");

        let mut ws = connect(addr, "/push?ms=100").await;
        let mut last = next_number(&mut ws).await;
        assert_eq!(last, 0);
        expect_in_order(&mut ws, &mut last, 2).await;

        // 1: the site's upstream changes.
        let summary = server
            .reload
            .reload(ws_config(&ws_backend, true, proxy(tcp(b.addr()))))
            .await
            .expect("reload 1");
        assert_eq!(summary.listeners_kept, 1, "{summary}");
        assert!(summary.listeners_added.is_empty() && summary.listeners_removed.is_empty());
        expect_in_order(&mut ws, &mut last, 3).await;
        assert_eq!(backend(&get(addr, &host, "/").await), "b");

        // 2: the WebSocket's own route is removed; the open tunnel keeps its snapshot.
        server
            .reload
            .reload(ws_config(&ws_backend, false, respond(200, "maintenance")))
            .await
            .expect("reload 2");
        expect_in_order(&mut ws, &mut last, 3).await;
        let r = get(addr, &host, "/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "maintenance");
        assert!(
            try_connect(addr, "/push?ms=100").await.is_err(),
            "a new WebSocket must follow the new config (no /push route)"
        );

        // 3: everything back, on a third upstream.
        server
            .reload
            .reload(ws_config(&ws_backend, true, proxy(tcp(c.addr()))))
            .await
            .expect("reload 3");
        expect_in_order(&mut ws, &mut last, 3).await;
        assert_eq!(backend(&get(addr, &host, "/").await), "c");

        // Still two-way after all three.
        use futures_util::SinkExt;
        ws.send(Message::text("still here")).await.expect("send");
        wait_for("the backend to get the message", secs(5), || {
            ws_backend
                .stats
                .messages
                .load(std::sync::atomic::Ordering::SeqCst)
                >= 1
        })
        .await;
        assert_eq!(ws_backend.close_codes(), Vec::<u16>::new());
    })
    .await
}

#[tokio::test]
async fn slow_request_in_flight_across_a_reload_completes_with_200() {
    bounded(secs(30), "test", async {
        let slow = Slow::start(millis(1500)).await;
        let echo = Echo::start("new").await;
        let config = |upstream| ConfigBuilder::new().site(site("").proxy(upstream)).build();
        let server = Running::start(config(tcp(slow.http.addr()))).await;
        let addr = server.addr();

        let in_flight = get_in_flight(h1(addr, None).await, addr, "/slow");
        slow.wait_received(1).await;
        server
            .reload
            .reload(config(tcp(echo.addr())))
            .await
            .expect("reload");
        assert_eq!(slow.answered(), 0, "reloaded before the slow answer");
        assert_eq!(served_by(addr).await, "new");

        let r = bounded(secs(10), "in-flight response", in_flight)
            .await
            .expect("task");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "slow done\n");
    })
    .await
}

#[tokio::test]
async fn added_port_starts_serving_and_removed_port_stops_accepting_but_finishes() {
    bounded(secs(40), "test", async {
        let main = Echo::start("main").await;
        let extra = Echo::start("extra").await;
        let slow = Slow::start(millis(1500)).await;
        let base = || ConfigBuilder::new().site(site("").proxy(tcp(main.addr())));
        let server = Running::start(base().build()).await;
        let main_addr = server.addr();

        // Add `"http://127.0.0.1:PORT" { proxy EXTRA }`. A port 0 site would join
        // the existing port 0 listener, so the new one needs a number; reserved for
        // the whole test, so nobody else listens there once it is removed.
        let reserved = Port::reserve();
        let port = reserved.number();
        let new_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let with_extra = |upstream| {
            on_port(
                base().site(site("127.0.0.1").proxy(upstream)).build(),
                1,
                port,
            )
        };
        let summary = server
            .reload
            .reload(with_extra(tcp(extra.addr())))
            .await
            .expect("reload adding a port");
        assert_eq!(summary.listeners_added, vec![new_addr], "{summary}");
        assert_eq!(summary.listeners_kept, 1, "{summary}");
        assert_eq!(
            backend(&get(new_addr, &new_addr.to_string(), "/").await),
            "extra"
        );
        assert_eq!(
            backend(&get(main_addr, &main_addr.to_string(), "/").await),
            "main"
        );
        // A keep-alive connection on the new port, idle when the port goes away.
        let mut kept = h1(new_addr, None).await;
        let r = collect(
            kept.send_request(
                req("GET", &new_addr.to_string(), "/")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .expect("request on the kept-alive connection"),
        )
        .await;
        assert_eq!(backend(&r), "extra");
        assert!(!kept.is_closed());

        // Point the new port at the slow backend, start a request, remove the port.
        server
            .reload
            .reload(with_extra(tcp(slow.http.addr())))
            .await
            .expect("reload changing the new port's upstream");
        let in_flight = get_in_flight(h1(new_addr, None).await, new_addr, "/slow");
        slow.wait_received(1).await;
        let summary = server
            .reload
            .reload(base().build())
            .await
            .expect("reload removing the port");
        assert_eq!(summary.listeners_removed, vec![new_addr], "{summary}");
        wait_for_async("the removed port to stop accepting", secs(5), || {
            refuses(new_addr)
        })
        .await;
        assert_eq!(slow.answered(), 0, "stopped accepting before the answer");
        wait_for(
            "the idle kept-alive connection on the removed port to close",
            secs(5),
            || kept.is_closed(),
        )
        .await;
        let r = bounded(secs(10), "in-flight response", in_flight)
            .await
            .expect("task");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "slow done\n");
        // The kept port never noticed.
        assert_eq!(
            backend(&get(main_addr, &main_addr.to_string(), "/").await),
            "main"
        );
    })
    .await
}

#[tokio::test]
async fn reload_that_cannot_bind_a_new_port_changes_nothing() {
    bounded(secs(30), "test", async {
        let a = Echo::start("a").await;
        let b = Echo::start("b").await;
        let server = Running::start(
            ConfigBuilder::new()
                .site(site("").proxy(tcp(a.addr())))
                .build(),
        )
        .await;
        let addr = server.addr();
        // A port someone else holds.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let config = on_port(
            ConfigBuilder::new()
                .site(site("").proxy(tcp(b.addr())))
                .site(site("127.0.0.1").proxy(tcp(b.addr())))
                .build(),
            1,
            port,
        );
        let err = server
            .reload
            .reload(config)
            .await
            .expect_err("binding a taken port must fail the reload");
        assert!(
            format!("{err:#}").contains(&format!("{port}")),
            "error names the port: {err:#}"
        );
        assert_eq!(
            served_by(addr).await,
            "a",
            "the old routes must keep serving"
        );
    })
    .await
}

#[tokio::test]
async fn sighup_with_a_bad_proxyfile_keeps_serving_and_logs_file_and_line() {
    bounded(secs(40), "test", async {
        let a = Echo::start("a").await;
        let b = Echo::start("b").await;
        let dir = TempDir::new("reload");
        let state = dir.path().join("state");
        let proxyfile =
            |upstream: SocketAddr, extra: &str| state_proxyfile(&state, upstream, extra);
        let file = dir.write("Proxyfile", &proxyfile(a.addr(), ""));
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let addr = bellhop.addr();
        assert_eq!(served_by(addr).await, "a");

        // Line 6 gets an unknown directive.
        dir.write("Proxyfile", &proxyfile(b.addr(), "    bogus-directive 1\n"));
        bellhop.proc.signal(libc::SIGHUP);
        bellhop
            .proc
            .wait_line("the reload failure", secs(10), |l| {
                l.contains("ERROR") && l.contains("reload failed")
            })
            .await;
        let located = bellhop
            .proc
            .wait_line("the bad line's location", secs(5), |l| {
                l.contains("Proxyfile:6:")
            })
            .await;
        eprintln!("error points at: {located}");
        assert_eq!(
            served_by(addr).await,
            "a",
            "the old config must keep serving"
        );

        // Fixed: the next SIGHUP applies it.
        dir.write("Proxyfile", &proxyfile(b.addr(), ""));
        bellhop.proc.signal(libc::SIGHUP);
        bellhop
            .proc
            .wait_line("the reload success", secs(10), |l| {
                l.contains("INFO") && l.contains("reloaded: 1 site")
            })
            .await;
        assert_eq!(served_by(addr).await, "b");
    })
    .await
}

#[tokio::test]
async fn reload_command_validates_then_signals_the_pid_file_process() {
    bounded(secs(40), "test", async {
        let a = Echo::start("a").await;
        let b = Echo::start("b").await;
        let dir = TempDir::new("reload-cmd");
        let state = dir.path().join("state");
        let pid_file = dir.path().join("bellhop.pid");
        let proxyfile =
            |upstream: SocketAddr, extra: &str| state_proxyfile(&state, upstream, extra);
        let file = dir.write("Proxyfile", &proxyfile(a.addr(), ""));
        let pid_arg = pid_file.to_str().expect("utf-8 path");
        let mut bellhop = Bellhop::run_config(&file, &["--pid-file", pid_arg], 1).await;
        let addr = bellhop.addr();
        wait_for("the pid file", secs(5), || pid_file.exists()).await;
        assert_eq!(
            std::fs::read_to_string(&pid_file).expect("pid file").trim(),
            bellhop.proc.pid().to_string()
        );
        let file_arg = file.to_str().expect("utf-8 path");
        let reload_args = ["reload", "--config", file_arg, "--pid-file", pid_arg];

        // A bad file is reported by the command and never reaches the server.
        dir.write("Proxyfile", &proxyfile(b.addr(), "    bogus-directive 1\n"));
        let (code, _, stderr) = run_cli(&reload_args, None);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("Proxyfile:6:"), "{stderr}");
        assert!(
            !bellhop
                .proc
                .plain_lines()
                .iter()
                .any(|l| l.contains("SIGHUP received")),
            "a bad config must not be signalled"
        );
        assert_eq!(served_by(addr).await, "a");

        // A good one is applied.
        dir.write("Proxyfile", &proxyfile(b.addr(), ""));
        let (code, stdout, stderr) = run_cli(&reload_args, None);
        assert_eq!(code, 0, "{stderr}");
        // The command waits for the outcome: applied, with the summary.
        assert!(stdout.contains("applied by bellhop"), "{stdout}");
        assert!(stdout.contains("1 site"), "{stdout}");
        bellhop
            .proc
            .wait_line("the reload success", secs(10), |l| {
                l.contains("reloaded: 1 site")
            })
            .await;
        assert_eq!(served_by(addr).await, "b");

        bellhop.proc.signal(libc::SIGTERM);
        let status = bellhop.proc.wait_exit(secs(15)).await;
        assert_eq!(status.code(), Some(0));
        assert!(!pid_file.exists(), "the pid file is removed on exit");
    })
    .await
}
