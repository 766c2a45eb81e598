//! The echo backend: tells the client, as JSON, exactly what request it received.
//!
//! Paths:
//! - anything else: JSON `{backend, method, uri, path, version, headers: [[name, value]…],
//!   body_len, body_pattern_ok, body, peer}`; the body is read as a stream and counted
//!   (only its first 64 KiB are kept, for `body`).
//! - `/download?bytes=N`: N pattern bytes, streamed (see `support::pattern`).
//! - `/stream-forever`: a chunk every 10 ms until the reader goes away.
//! - `/status/NNN`: that status, short body.
//!
//! Every request may carry `x-echo-set: Name: value` headers; each becomes a response
//! header, so tests can make the backend send any header (e.g. hop-by-hop ones).

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

use super::{full, handler, ChannelBody, ConnInfo, HttpBackend, RespBody};
use crate::support::pattern::{PatternBody, Verifier};

/// Counters only the echo backend keeps.
#[derive(Debug, Default)]
pub struct EchoStats {
    /// Request body bytes received so far, updated as they stream in.
    pub bytes_in: AtomicU64,
    /// `/stream-forever` responses still being written.
    pub streams_open: AtomicI64,
}

/// A running echo backend.
pub struct Echo {
    /// The server (address, connection counters).
    pub http: HttpBackend,
    /// Echo-specific counters.
    pub stats: Arc<EchoStats>,
}

impl Echo {
    /// Starts an echo backend on 127.0.0.1 that reports itself as `name`.
    pub async fn start(name: &str) -> Echo {
        let stats = Arc::new(EchoStats::default());
        let http = HttpBackend::tcp(echo_handler(name, &stats)).await;
        Echo { http, stats }
    }

    /// Starts an echo backend at `addr`.
    pub async fn start_at(name: &str, addr: std::net::SocketAddr) -> Echo {
        let stats = Arc::new(EchoStats::default());
        let http = HttpBackend::tcp_at(addr, echo_handler(name, &stats)).await;
        Echo { http, stats }
    }

    /// Starts an echo backend on a unix socket at `path`.
    pub async fn start_unix(name: &str, path: &Path) -> Echo {
        let stats = Arc::new(EchoStats::default());
        let http = HttpBackend::unix(path, echo_handler(name, &stats)).await;
        Echo { http, stats }
    }

    /// The TCP address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.http.addr()
    }
}

fn echo_handler(name: &str, stats: &Arc<EchoStats>) -> super::Handler {
    let name: Arc<str> = name.into();
    let stats = stats.clone();
    handler(move |req, info| handle(req, info, name.clone(), stats.clone()))
}

async fn handle(
    req: Request<Incoming>,
    info: ConnInfo,
    name: Arc<str>,
    stats: Arc<EchoStats>,
) -> Response<RespBody> {
    let extra: Vec<(String, String)> = req
        .headers()
        .get_all("x-echo-set")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|s| s.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let path = req.uri().path().to_string();
    let mut resp = if path == "/download" {
        let n: u64 = query_param(req.uri().query(), "bytes").unwrap_or(0);
        Response::builder()
            .header("content-type", "application/octet-stream")
            .header("content-length", n)
            .body(BodyExt::boxed(PatternBody::new(n)))
            .expect("response")
    } else if path == "/stream-forever" {
        stream_forever(&stats)
    } else if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
        Response::builder()
            .status(status)
            .body(full(format!("status {}\n", status.as_u16())))
            .expect("response")
    } else {
        echo(req, info, &name, &stats).await
    };
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

async fn echo(
    req: Request<Incoming>,
    info: ConnInfo,
    name: &str,
    stats: &EchoStats,
) -> Response<RespBody> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let path = req.uri().path().to_string();
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = req.into_body();
    let mut verifier = Verifier::new();
    let mut kept = Vec::new();
    let mut body_error = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::SeqCst);
                    verifier.update(&data);
                    let room = (64 * 1024usize).saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    let j = json!({
        "backend": name,
        "method": method,
        "uri": uri,
        "path": path,
        "version": version,
        "headers": headers,
        "body_len": verifier.len,
        "body_pattern_ok": verifier.ok,
        "body": String::from_utf8_lossy(&kept),
        "body_error": body_error,
        "peer": info.peer,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(full(j.to_string()))
        .expect("response")
}

/// A response that writes a chunk every 10 ms for as long as someone reads it.
fn stream_forever(stats: &Arc<EchoStats>) -> Response<RespBody> {
    let (tx, body) = ChannelBody::channel();
    stats.streams_open.fetch_add(1, Ordering::SeqCst);
    let stats = stats.clone();
    tokio::spawn(async move {
        let mut i = 0u64;
        while tx.send(Bytes::from(format!("chunk {i}\n"))).await.is_ok() {
            i += 1;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stats.streams_open.fetch_sub(1, Ordering::SeqCst);
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(body)
        .expect("response")
}

fn query_param<T: std::str::FromStr>(query: Option<&str>, key: &str) -> Option<T> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Reads the echo JSON: every value of header `name` (lowercase), in order.
pub fn header_values(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .expect("echo JSON has headers")
        .iter()
        .filter(|kv| kv[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .map(|kv| kv[1].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Reads the echo JSON: all values of header `name` joined with ", " (how a list
/// header like X-Forwarded-For reads whether it came as one line or several).
pub fn header_joined(echo: &serde_json::Value, name: &str) -> Option<String> {
    let v = header_values(echo, name);
    (!v.is_empty()).then(|| v.join(", "))
}
