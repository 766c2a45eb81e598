//! A minimal HTTP/1.1 backend that behaves like uvicorn's keep-alive handling, only
//! faster: a connection that stays idle for `idle` after a response is closed.
//!
//! Written by hand (not hyper) so the close happens exactly on that timer, the way a
//! stale pooled connection appears to a proxy in production.
//!
//! [`IdleClose::start_lazy`] is the amplified form of the same race: after `idle`, the
//! connection is closed the moment the next request arrives, unread and unanswered.
//! On the wire that is what a proxy sees when its request crosses the backend's FIN:
//! the request was written to a reused connection, and the connection ends before any
//! response byte. It makes the retry path run on every request instead of by luck.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::support::{spawn_task, Task};

/// Counters of the idle-closing backend.
#[derive(Debug, Default)]
pub struct IdleStats {
    /// Connections accepted.
    pub conns: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections this backend closed because they were idle (lazy: those on
    /// which a request arrived after `idle` and was dropped unanswered).
    pub idle_closes: AtomicU64,
}

/// A running idle-closing backend.
pub struct IdleClose {
    /// Its address on 127.0.0.1.
    pub addr: std::net::SocketAddr,
    /// Its counters.
    pub stats: Arc<IdleStats>,
    _task: Task,
}

impl IdleClose {
    /// Closes a connection `idle` after its last response (FIN on a timer).
    pub async fn start(idle: Duration) -> IdleClose {
        Self::spawn(idle, false).await
    }

    /// After `idle`, closes the connection when the next request arrives, unanswered.
    pub async fn start_lazy(idle: Duration) -> IdleClose {
        Self::spawn(idle, true).await
    }

    async fn spawn(idle: Duration, lazy: bool) -> IdleClose {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(IdleStats::default());
        let st = stats.clone();
        let task = spawn_task(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let id = st.conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(sock, id, idle, lazy, st.clone()));
            }
        });
        IdleClose {
            addr,
            stats,
            _task: task,
        }
    }

    /// Connections accepted.
    pub fn conns(&self) -> u64 {
        self.stats.conns.load(Ordering::SeqCst)
    }
    /// Requests answered.
    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }
    /// Connections closed for idleness.
    pub fn idle_closes(&self) -> u64 {
        self.stats.idle_closes.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut sock: TcpStream,
    conn_id: u64,
    idle: Duration,
    lazy: bool,
    stats: Arc<IdleStats>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut n_req = 0u64;
    let mut last_response = Instant::now();
    loop {
        // Wait for the start of the next request, or close on idleness.
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let read = if n_req == 0 || !buf.is_empty() {
                sock.read(&mut chunk).await
            } else if lazy {
                let r = sock.read(&mut chunk).await;
                // Only a request that arrives counts; the peer closing its end
                // (EOF) is not a request this backend dropped.
                if matches!(r, Ok(n) if n > 0) && last_response.elapsed() >= idle {
                    stats.idle_closes.fetch_add(1, Ordering::SeqCst);
                    return; // drop unread: the peer sees EOF/RST, no response
                }
                r
            } else {
                match tokio::time::timeout_at(last_response + idle, sock.read(&mut chunk)).await {
                    Ok(r) => r,
                    Err(_) => {
                        stats.idle_closes.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let content_length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        buf.drain(..end + 4);
        while buf.len() < content_length {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..content_length);
        n_req += 1;
        let body = format!("ok conn={conn_id} req={n_req}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        stats.requests.fetch_add(1, Ordering::SeqCst);
        last_response = Instant::now();
    }
}
