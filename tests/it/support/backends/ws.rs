//! The WebSocket backend (tokio-tungstenite). Behaviour by request path:
//! - `/echo`: sends every text or binary message back.
//! - `/push?ms=N`: sends `0`, `1`, `2`… as text every N ms (default 500), and echoes.
//! - `/sink`: never writes, except the number of messages received so far when it
//!   gets the text `count?` (traffic in one direction only).
//! - `/close-after-first`: answers the first message with a Close frame
//!   (code 4001, reason `server done`).
//! - `/drop-after-first`: drops the TCP connection, without a Close frame, on the
//!   first message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{ConnStats, OpenGuard};
use crate::support::{spawn_task, ws::ws_config, Task};

/// What the WebSocket backend observed.
#[derive(Debug, Default)]
pub struct WsStats {
    /// Sockets accepted and currently open (counted after the handshake).
    pub conns: Arc<ConnStats>,
    /// Close codes received from clients, in order.
    pub close_codes: Mutex<Vec<u16>>,
    /// Request headers of the latest handshake, lowercase names.
    pub last_headers: Mutex<Vec<(String, String)>>,
    /// Text and binary messages received, all sockets together.
    pub messages: AtomicU64,
}

/// A running WebSocket backend.
pub struct WsBackend {
    /// Its address on 127.0.0.1.
    pub addr: std::net::SocketAddr,
    /// What it observed.
    pub stats: Arc<WsStats>,
    _task: Task,
}

impl WsBackend {
    /// Starts it.
    pub async fn start() -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(WsStats::default());
        let st = stats.clone();
        let task = spawn_task(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        WsBackend {
            addr,
            stats,
            _task: task,
        }
    }

    /// Sockets open right now.
    pub fn open(&self) -> i64 {
        self.stats.conns.open()
    }

    /// Sockets accepted so far.
    pub fn accepted(&self) -> u64 {
        self.stats.conns.accepted()
    }

    /// Value of a header in the latest handshake.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.stats
            .last_headers
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// Close codes received so far.
    pub fn close_codes(&self) -> Vec<u16> {
        self.stats.close_codes.lock().unwrap().clone()
    }
}

// The handshake callback's error type is tungstenite's, large by its design.
#[allow(clippy::result_large_err)]
async fn serve(sock: TcpStream, stats: Arc<WsStats>) {
    let uri = Arc::new(Mutex::new(String::new()));
    let (u, st) = (uri.clone(), stats.clone());
    let callback = move |req: &Request, resp: Response| {
        *u.lock().unwrap() = req.uri().to_string();
        *st.last_headers.lock().unwrap() = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(resp)
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(sock, callback, Some(ws_config())).await
    else {
        return;
    };
    let _open = OpenGuard::new(&stats.conns);
    let uri = uri.lock().unwrap().clone();
    let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
    // `/push` sends its first message at once, then one every `ms`.
    let push_every = (path == "/push").then(|| {
        let ms = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        Duration::from_millis(ms)
    });
    let mut ticker = tokio::time::interval(push_every.unwrap_or(Duration::from_secs(3600)));
    let mut pushed = 0u64;
    let mut received = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick(), if push_every.is_some() => {
                if ws.send(Message::text(pushed.to_string())).await.is_err() {
                    return;
                }
                pushed += 1;
            }
            msg = ws.next() => {
                let Some(Ok(msg)) = msg else { return };
                match msg {
                    Message::Text(_) | Message::Binary(_) => {
                        received += 1;
                        stats.messages.fetch_add(1, Ordering::SeqCst);
                        match path {
                            "/sink" => {
                                if msg.to_text().ok() == Some("count?")
                                    && ws.send(Message::text((received - 1).to_string())).await.is_err()
                                {
                                    return;
                                }
                            }
                            "/close-after-first" => {
                                let frame = CloseFrame { code: CloseCode::from(4001), reason: "server done".into() };
                                let _ = ws.send(Message::Close(Some(frame))).await;
                                // Drain until the client's Close reply ends the stream.
                                while let Some(Ok(_)) = ws.next().await {}
                                return;
                            }
                            "/drop-after-first" => return,
                            _ => {
                                if ws.send(msg).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Message::Close(frame) => {
                        let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                        stats.close_codes.lock().unwrap().push(code);
                        // tungstenite queues the Close reply; keep polling to flush it.
                    }
                    _ => {}
                }
            }
        }
    }
}
