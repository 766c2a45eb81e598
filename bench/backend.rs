//! The backend for `bench/proxy-vs-direct.sh` and `bench/attack/slowloris.sh`: a
//! minimal hyper HTTP/1.1 server on 127.0.0.1, keep-alive on. It reads the whole
//! request body first, as an app handling a form or an upload would, then answers
//! with a short fixed body, or with N bytes for `GET /bytes/N` (a large response
//! for slow-read tests). Prints `listening 127.0.0.1:PORT` on stdout once bound
//! (port 0 unless given).
//!
//! `cargo run --release --example bench-backend [PORT]`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello from the bench backend\n";
/// Largest `/bytes/N` answered, so a typo cannot exhaust memory.
const MAX_BYTES: usize = 64 * 1024 * 1024;

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (sock, _) = listener.accept().await?;
        let _ = sock.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), service_fn(answer))
                .await;
        });
    }
}
