//! bellhop's memory with WebSockets open: starts a WebSocket echo backend, runs the
//! bellhop binary in front of it (`bellhop proxy`), and reports bellhop's RSS
//! (VmRSS from /proc/PID/status) idle, with N open WebSockets, after one message
//! on each, and after they are closed.
//!
//! `cargo run --release --example ws-memory -- [PATH_TO_BELLHOP] [N]`
//! (defaults: target/release/bellhop, 1000). `bench/ws-memory.sh` builds and runs it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Settles for a moment, then reads RSS (the allocator returns memory lazily).
async fn settled_rss(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss_kib(pid)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let bellhop = args
        .next()
        .unwrap_or_else(|| "target/release/bellhop".to_string());
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(1000);
    raise_fd_limit();

    // WebSocket echo backend.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let backend = listener.local_addr().expect("backend addr");
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    // bellhop in front of it, at info so it prints its listening address.
    let mut child = Command::new(&bellhop)
        .args([
            "proxy",
            "--from",
            "http://127.0.0.1:0",
            "--to",
            &backend.to_string(),
            "--log-format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bellhop}: {e}"));
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let addr = v["addr"]
                    .as_str()
                    .or(v["fields"]["addr"].as_str())
                    .map(str::to_string);
                if let Some(a) = addr {
                    let _ = tx.send(a);
                    sent = true;
                }
            }
            // Drain the rest (one line per request and per upgrade).
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("bellhop did not log its listening address")
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "127.0.0.1")
        .parse()
        .expect("listening address");

    let idle = settled_rss(pid).await;
    let idle_fds = fds(pid);

    let started = Instant::now();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let sock = TcpStream::connect(addr).await.expect("connect");
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), sock)
            .await
            .expect("websocket handshake through bellhop");
        sockets.push(ws);
    }
    let opened_in = started.elapsed();
    let open = settled_rss(pid).await;
    let open_fds = fds(pid);

    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
    }
    for ws in sockets.iter_mut() {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_text() => break,
                Some(Ok(_)) => continue,
                other => panic!("echo failed: {other:?}"),
            }
        }
    }
    let active = settled_rss(pid).await;

    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
    let mut closed_fds = fds(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed_fds > idle_fds + 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        closed_fds = fds(pid);
    }
    let closed = settled_rss(pid).await;

    let mib = |k: u64| k as f64 / 1024.0;
    let row = |label: String, rss: u64, fds: Option<usize>| {
        let fds = fds.map(|f| format!("   fds {f}")).unwrap_or_default();
        println!("  {label:<32} RSS {:7.1} MiB{fds}", mib(rss));
    };
    println!("bellhop {bellhop} (pid {pid}), {n} WebSockets through `bellhop proxy`");
    row("idle".into(), idle, Some(idle_fds));
    row(
        format!("{n} open (opened in {:.1} s)", opened_in.as_secs_f64()),
        open,
        Some(open_fds),
    );
    row("after one echo on each".into(), active, None);
    row("all closed".into(), closed, Some(closed_fds));
    println!(
        "  {:<32} {:.1} KiB",
        "per open WebSocket",
        active.saturating_sub(idle) as f64 / n as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}
