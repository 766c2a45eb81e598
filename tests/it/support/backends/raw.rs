//! A backend that answers every connection with bytes that are not HTTP, then
//! closes. bellhop must turn that into a 502 and keep serving.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{spawn_task, Task};

/// A running garbage-speaking backend.
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
