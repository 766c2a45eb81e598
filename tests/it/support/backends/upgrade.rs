//! A raw HTTP/1.1 Upgrade backend (protocol `testproto`), written on plain TCP so
//! tests control each half of the connection after the 101. Behaviour by path:
//! - `/echo-until-eof`: reads until the client half-closes, then writes
//!   `echo:` + everything it read, and closes.
//! - `/server-half-close`: writes `hello from server`, half-closes its write side,
//!   then reads until EOF and records what arrived.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ConnStats, OpenGuard};
use crate::support::{spawn_task, Task};

/// What the upgrade backend observed.
#[derive(Debug, Default)]
pub struct UpgradeStats {
    /// Connections (counted from accept to close).
    pub conns: Arc<ConnStats>,
    /// Request head of the latest upgrade request, as text.
    pub last_head: Mutex<String>,
    /// Events in order: `eof`, `received:<text>`, `closed`.
    pub events: Mutex<Vec<String>>,
}

/// A running raw upgrade backend.
pub struct UpgradeBackend {
    /// Its address on 127.0.0.1.
    pub addr: std::net::SocketAddr,
    /// What it observed.
    pub stats: Arc<UpgradeStats>,
    _task: Task,
}

impl UpgradeBackend {
    /// Starts it.
    pub async fn start() -> UpgradeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(UpgradeStats::default());
        let st = stats.clone();
        let task = spawn_task(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        UpgradeBackend {
            addr,
            stats,
            _task: task,
        }
    }

    /// Events recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.stats.events.lock().unwrap().clone()
    }

    /// The latest request head, lowercased.
    pub fn last_head(&self) -> String {
        self.stats.last_head.lock().unwrap().to_ascii_lowercase()
    }
}

async fn serve(mut sock: TcpStream, stats: Arc<UpgradeStats>) {
    let _open = OpenGuard::new(&stats.conns);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    *stats.last_head.lock().unwrap() = head.clone();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let reply =
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: testproto\r\n\r\n";
    if sock.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    let event = |e: String| stats.events.lock().unwrap().push(e);
    match path.as_str() {
        "/echo-until-eof" => {
            let mut got = Vec::new();
            if sock.read_to_end(&mut got).await.is_err() {
                return;
            }
            event("eof".into());
            let mut out = b"echo:".to_vec();
            out.extend_from_slice(&got);
            let _ = sock.write_all(&out).await;
            let _ = sock.shutdown().await;
            event("closed".into());
        }
        "/server-half-close" => {
            if sock.write_all(b"hello from server").await.is_err() {
                return;
            }
            if sock.shutdown().await.is_err() {
                return;
            }
            let mut got = Vec::new();
            let _ = sock.read_to_end(&mut got).await;
            event(format!("received:{}", String::from_utf8_lossy(&got)));
            event("eof".into());
        }
        _ => {}
    }
}
