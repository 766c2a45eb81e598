//! The backend for the benchmarks (`bench/run.sh`, `bench/callgrind-check.sh`,
//! `bench/attack/slowloris.sh`): a minimal hyper HTTP/1.1 server on 127.0.0.1, keep-alive on. Prints `listening 127.0.0.1:PORT`
//! on stdout once bound (port 0 unless given).
//!
//! - Plain requests: it reads the whole request body first, as an app handling a
//!   form or an upload would, then answers with a short fixed body, or with N bytes
//!   for `GET /bytes/N` (a large response for slow-read tests).
//! - WebSocket upgrades: `/push` gets a text message every `PUSH_INTERVAL_MS`
//!   (default 500) from one shared ticker, like an app that pushes a state update to
//!   every browser; the message is `TICK TICK_UNIX_NS SEND_UNIX_NS` so a client can
//!   tell which push it is and how long it spent in transit (same machine, same
//!   clock). Any other path is an idle echo socket (nothing sent unless asked).
//!
//! `cargo run --release --example bench-backend [PORT]`

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const BODY: &[u8] = b"hello from the bench backend\n";
/// Largest `/bytes/N` answered, so a typo cannot exhaust memory.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// One push: its sequence number and when the ticker fired (Unix ns).
type Tick = (u64, u128);

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    ticks: broadcast::Sender<Tick>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) {
        let accept = derive_accept_key(key.as_bytes());
        let push = req.uri().path() == "/push";
        let rx = push.then(|| ticks.subscribe());
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(small_buffers()),
                )
                .await;
                serve_websocket(ws, rx).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(UPGRADE, "websocket".parse().expect("static header"));
        headers.insert(CONNECTION, "upgrade".parse().expect("static header"));
        if let Ok(value) = accept.parse() {
            headers.insert(SEC_WEBSOCKET_ACCEPT, value);
        }
        return Ok(resp);
    }
    let size = req
        .uri()
        .path()
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok());
    // An error here means the client (or the proxy) gave up on the body: answer anyway.
    let _ = req.into_body().collect().await;
    let body = match size {
        Some(n) => Bytes::from(vec![b'x'; n.min(MAX_BYTES)]),
        None => Bytes::from_static(BODY),
    };
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(body))
        .expect("static response"))
}

/// tungstenite's default buffers are 128 KiB each way per socket: at 10,000
/// pushed-to sockets the backend held 1.3 GB and spent its CPU on page faults,
/// and the pushes' delay measured that (1.7-2.2 s p99 with no proxy at all).
/// Its messages here are a few dozen bytes.
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Echoes what the client sends; with a ticker subscription, also pushes every tick.
async fn serve_websocket<S>(
    mut ws: WebSocketStream<S>,
    mut ticks: Option<broadcast::Receiver<Tick>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let tick = async {
            match ticks.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                    if ws.send(m).await.is_err() { return; }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            tick = tick => match tick {
                Ok((n, at)) => {
                    let text = format!("{n} {at} {}", unix_ns());
                    if ws.send(Message::text(text)).await.is_err() { return; }
                }
                // A slow socket missed pushes: the client counts them as lost.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

// One thread: bench/run.sh pins the backend to one CPU (with the load
// generators), where a second worker thread only adds hand-offs between the two.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let interval = std::env::var("PUSH_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let (ticks, _) = broadcast::channel::<Tick>(16);
    let ticker = ticks.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(interval));
        for n in 0u64.. {
            every.tick().await;
            // No subscribers yet is fine: nobody is waiting for this push.
            let _ = ticker.send((n, unix_ns()));
        }
    });
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors under a WebSocket flood: keep serving the rest.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let ticks = ticks.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, ticks.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), service)
                .with_upgrades()
                .await;
        });
    }
}
