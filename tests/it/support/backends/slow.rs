//! The slow backend: receives a request, then waits `delay` before sending the
//! response headers. Used for the 504 path and for in-flight requests at shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::Response;

use super::{full, handler, HttpBackend};

/// A running slow backend.
pub struct Slow {
    /// The server (its `stats.open` shows whether the proxy still holds a connection).
    pub http: HttpBackend,
    received: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
}

impl Slow {
    /// Starts a backend that answers every request `delay` after receiving
    /// it, or N ms after for a path `/after-ms/N`.
    pub async fn start(delay: Duration) -> Slow {
        let received = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let (r, a) = (received.clone(), answered.clone());
        let http = HttpBackend::tcp(handler(move |req, _info| {
            let (r, a) = (r.clone(), a.clone());
            // `/after-ms/N` answers N ms after receiving instead.
            let delay = req
                .uri()
                .path()
                .strip_prefix("/after-ms/")
                .and_then(|ms| ms.parse().ok())
                .map_or(delay, Duration::from_millis);
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                a.fetch_add(1, Ordering::SeqCst);
                Response::builder()
                    .header("content-type", "text/plain")
                    .body(full("slow done\n"))
                    .expect("response")
            }
        }))
        .await;
        Slow {
            http,
            received,
            answered,
        }
    }

    /// Requests that reached the handler.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits (5 s at most) until `n` requests have reached the handler.
    pub async fn wait_received(&self, n: u64) {
        let what = format!("{n} request(s) to reach the slow backend");
        crate::support::wait_for(&what, crate::support::secs(5), || self.received() == n).await;
    }

    /// Requests whose response headers were produced.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}
