//! The SSE backend: writes one event at once, then waits for the test to say so
//! before writing the second. A client that sees the first event before calling
//! [`Sse::release_second`] proves the proxy does not hold back streamed bodies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use hyper::Response;
use tokio::sync::Notify;

use super::{handler, ChannelBody, HttpBackend};

/// The first event's bytes.
pub const FIRST: &str = "event: tick\ndata: first\n\n";
/// The second event's bytes.
pub const SECOND: &str = "event: tick\ndata: second\n\n";

/// A running SSE backend.
pub struct Sse {
    /// The server.
    pub http: HttpBackend,
    release: Arc<Notify>,
    first_sent: Arc<AtomicBool>,
    second_sent: Arc<AtomicBool>,
}

impl Sse {
    /// Starts the backend on 127.0.0.1.
    pub async fn start() -> Sse {
        let release = Arc::new(Notify::new());
        let first_sent = Arc::new(AtomicBool::new(false));
        let second_sent = Arc::new(AtomicBool::new(false));
        let (r, f, s) = (release.clone(), first_sent.clone(), second_sent.clone());
        let http = HttpBackend::tcp(handler(move |_req, _info| {
            let (r, f, s) = (r.clone(), f.clone(), s.clone());
            async move {
                let (tx, body) = ChannelBody::channel();
                tokio::spawn(async move {
                    if tx.send(Bytes::from_static(FIRST.as_bytes())).await.is_err() {
                        return;
                    }
                    f.store(true, Ordering::SeqCst);
                    r.notified().await;
                    s.store(true, Ordering::SeqCst);
                    let _ = tx.send(Bytes::from_static(SECOND.as_bytes())).await;
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .header("cache-control", "no-cache")
                    .body(body)
                    .expect("response")
            }
        }))
        .await;
        Sse {
            http,
            release,
            first_sent,
            second_sent,
        }
    }

    /// Lets the (one) pending stream write its second event and end.
    pub fn release_second(&self) {
        self.release.notify_one();
    }

    /// Whether the first event was handed to hyper.
    pub fn first_sent(&self) -> bool {
        self.first_sent.load(Ordering::SeqCst)
    }

    /// Whether the second event was handed to hyper.
    pub fn second_sent(&self) -> bool {
        self.second_sent.load(Ordering::SeqCst)
    }
}
