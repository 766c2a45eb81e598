//! HTTP clients for tests: hyper HTTP/1.1 and h2 (prior knowledge) over TCP from a
//! chosen 127/8 source address, plus a raw-bytes client for malformed input.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Request body type of every test client.
pub type ReqBody = BoxBody<Bytes, Infallible>;

/// An empty request body.
pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

/// A whole request body.
pub fn body(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).boxed()
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// HTTP version of the response.
    pub version: Version,
    /// Response headers as received.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// A TCP connection to `addr`, from source address `from` (any 127/8 address)
/// when given, so tests can tell the client's address apart from bellhop's.
pub async fn connect_from(addr: SocketAddr, from: Option<IpAddr>) -> TcpStream {
    match from {
        None => TcpStream::connect(addr).await.expect("connect"),
        Some(ip) => {
            let sock = TcpSocket::new_v4().expect("socket");
            sock.bind(SocketAddr::new(ip, 0))
                .expect("bind source address");
            sock.connect(addr).await.expect("connect")
        }
    }
}

/// An HTTP/1.1 connection; its driver task runs until the connection ends.
pub async fn h1(addr: SocketAddr, from: Option<IpAddr>) -> http1::SendRequest<ReqBody> {
    let io = TokioIo::new(connect_from(addr, from).await);
    let (sender, conn) = http1::handshake(io).await.expect("h1 handshake");
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
}

/// Sends `GET path` (Host: `addr`) on `c` from a task of its own, so the
/// test can act while the request is in flight; the task's result is the
/// reply.
pub fn get_in_flight(
    mut c: http1::SendRequest<ReqBody>,
    addr: SocketAddr,
    path: &str,
) -> tokio::task::JoinHandle<Reply> {
    let request = req("GET", &addr.to_string(), path)
        .body(empty())
        .expect("request");
    tokio::spawn(async move {
        let resp = c.send_request(request).await.expect("in-flight request");
        collect(resp).await
    })
}

/// An h2 connection with prior knowledge (h2c), as gRPC clients and curl
/// `--http2-prior-knowledge` make on plain HTTP.
pub async fn h2(addr: SocketAddr) -> http2::SendRequest<ReqBody> {
    let io = TokioIo::new(connect_from(addr, None).await);
    let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// A TLS connection to `addr` with SNI `name`, offering the ALPN protocols
/// `alpn`, verifying the server against the PEM root `root_pem` (e.g. bellhop's
/// internal CA).
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    root_pem: &[u8],
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(root_pem).expect("root PEM"))
        .expect("add root");
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let server_name =
        rustls_pki_types::ServerName::try_from(name.to_string()).expect("server name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(server_name, connect_from(addr, None).await)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {name}: {e}"))
}

/// An h2 connection over TLS (ALPN `h2`) to `addr` with SNI `name`, verifying the
/// server against the PEM root `root_pem` (e.g. bellhop's internal CA).
pub async fn h2_tls(addr: SocketAddr, name: &str, root_pem: &[u8]) -> http2::SendRequest<ReqBody> {
    let tls = tls_connect(addr, name, root_pem, &[b"h2"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN did not pick h2"
    );
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// A request builder for `path` with a Host header (HTTP/1.1 origin form).
pub fn req(method: &str, host: &str, path: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
}

/// Reads a whole response.
pub async fn collect(resp: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_else(|e| panic!("reading the response body ({}) failed: {e}", parts.status));
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Sends one request on a fresh HTTP/1.1 connection and reads the whole response.
pub async fn send(addr: SocketAddr, from: Option<IpAddr>, req: Request<ReqBody>) -> Reply {
    let mut s = h1(addr, from).await;
    let resp = s.send_request(req).await.expect("send request");
    collect(resp).await
}

/// `GET path` with the given Host on a fresh connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    send(addr, None, req("GET", host, path).body(empty()).unwrap()).await
}

/// Writes `bytes` raw and returns everything read until the peer closes.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends an HTTP/1.1 Upgrade request for `protocol` on a raw connection and reads
/// the response head; returns the stream (positioned after the head) and the head.
pub async fn raw_upgrade(addr: SocketAddr, path: &str, protocol: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut resp = Vec::new();
    let mut byte = [0u8; 1];
    while !resp.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read response head");
        assert!(n == 1, "connection closed in the response head: {resp:?}");
        resp.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&resp).into_owned())
}
