//! Backends that speak broken HTTP on a raw socket: [`Garbage`] answers with bytes
//! that are not HTTP, [`DiesMidBody`] dies halfway through its response body.
//! bellhop must turn the first into a 502, abort the client's response on the
//! second, and keep serving either way.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{spawn_task, Task};

/// A backend that answers every connection with bytes that are not HTTP, then closes.
pub struct Garbage {
    /// Its address on 127.0.0.1.
    pub addr: std::net::SocketAddr,
    _task: Task,
}

impl Garbage {
    /// Starts it.
    pub async fn start() -> Garbage {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = spawn_task(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock
                        .write_all(b"SPEAK FRIEND AND ENTER\r\n\x00\x01\x02\r\n\r\n")
                        .await;
                });
            }
        });
        Garbage { addr, _task: task }
    }
}

/// How a [`DiesMidBody`] backend leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Death {
    /// Closes the connection normally (FIN), as a crashed process's kernel does.
    Close,
    /// Resets the connection (RST, `SO_LINGER` 0).
    Reset,
}

/// A backend that starts every response and dies in the middle of its body: it
/// sends headers announcing `ANNOUNCED` bytes (`Content-Length`, or chunked),
/// then `SENT` bytes of body, then waits for [`kill`](Self::kill) and closes or
/// resets every connection.
pub struct DiesMidBody {
    /// Its address on 127.0.0.1.
    pub addr: std::net::SocketAddr,
    /// Requests received so far.
    pub requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    dead: tokio::sync::watch::Sender<bool>,
    _task: Task,
}

impl DiesMidBody {
    /// Bytes the response headers announce (or, chunked, what a whole body would be).
    pub const ANNOUNCED: usize = 1_000_000;
    /// Body bytes sent before dying.
    pub const SENT: usize = 100_000;

    /// Starts it; `chunked` picks chunked framing over `Content-Length`.
    pub async fn start(chunked: bool, death: Death) -> DiesMidBody {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = std::sync::Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        let (dead, alive) = tokio::sync::watch::channel(false);
        let task = spawn_task(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = counter.clone();
                let mut alive = alive.clone();
                tokio::spawn(async move {
                    // The request head (bellhop sends no body for a GET).
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = vec![b'x'; DiesMidBody::SENT];
                    let response = if chunked {
                        let mut r =
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                        for chunk in body.chunks(10_000) {
                            r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                            r.extend_from_slice(chunk);
                            r.extend_from_slice(b"\r\n");
                        }
                        r
                    } else {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                            DiesMidBody::ANNOUNCED
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    };
                    if sock.write_all(&response).await.is_err() {
                        return;
                    }
                    let _ = alive.wait_for(|dead| *dead).await;
                    if death == Death::Reset {
                        let _ = sock.set_zero_linger();
                    }
                    drop(sock);
                });
            }
        });
        DiesMidBody {
            addr,
            requests,
            dead,
            _task: task,
        }
    }

    /// Every connection, open or future, dies right after its partial response.
    pub fn kill(&self) {
        self.dead.send_replace(true);
    }
}
