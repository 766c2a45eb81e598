//! Real sockets for the tests: a verifying HTTPS client, and a minimal HTTPS +
//! HTTP-01 listener pair built on bellhop's own TLS and ACME pieces.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bellhop::Http01Tokens;
use bellhop::{Alpn, TlsTerminator};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// A client config trusting exactly `roots`, ring provider, ALPN as given.
pub fn client_config(
    roots: &Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS to `addr` with SNI `name`, verifying the chain against `roots`.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    roots: &Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(client_config(roots, alpn))
        .connect(server_name, tcp)
        .await
}

/// An HTTP/1.1 connection over verified TLS that can send several requests.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
    /// The leaf certificate the server presented.
    pub peer_leaf: CertificateDer<'static>,
}

impl Conn {
    /// Opens the connection.
    pub async fn open(
        addr: SocketAddr,
        name: &str,
        roots: &Arc<rustls::RootCertStore>,
    ) -> Result<Conn, Box<dyn std::error::Error + Send + Sync>> {
        let tls = tls_connect(addr, name, roots, &[b"http/1.1"]).await?;
        let peer_leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("no peer certificate")?
            .clone()
            .into_owned();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        // An IPv6 literal is bracketed in Host, as in a URI (bellhop answers a
        // bare `::1` with 400).
        let host = match name.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{name}]"),
            Err(_) => name.to_string(),
        };
        Ok(Conn {
            sender,
            host,
            peer_leaf,
        })
    }

    /// GET `path`; returns the response headers.
    pub async fn get_headers(
        &mut self,
        path: &str,
    ) -> Result<http::HeaderMap, Box<dyn std::error::Error + Send + Sync>> {
        self.sender.ready().await?;
        let req = Request::get(path)
            .header("host", &self.host)
            .body(Empty::<Bytes>::new())?;
        let resp = self.sender.send_request(req).await?;
        let headers = resp.headers().clone();
        resp.into_body().collect().await?;
        Ok(headers)
    }

    /// GET `path`; returns status and body.
    pub async fn get(
        &mut self,
        path: &str,
    ) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
        self.sender.ready().await?;
        let req = Request::get(path)
            .header("host", &self.host)
            .body(Empty::<Bytes>::new())?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// One verified HTTPS GET on a fresh connection.
pub async fn https_get(
    addr: SocketAddr,
    name: &str,
    roots: &Arc<rustls::RootCertStore>,
    path: &str,
) -> Result<(u16, String), Box<dyn std::error::Error + Send + Sync>> {
    Conn::open(addr, name, roots).await?.get(path).await
}

/// Bound listeners whose ports are handed to Pebble before anything serves on them.
pub struct Listeners {
    /// The HTTPS listener.
    pub https: TcpListener,
    /// The plain HTTP (HTTP-01) listener.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both on 127.0.0.1 with ephemeral ports.
    pub async fn bind() -> Listeners {
        Listeners {
            https: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            http: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    /// Port of the HTTPS listener.
    pub fn https_port(&self) -> u16 {
        self.https.local_addr().unwrap().port()
    }

    /// Port of the HTTP listener.
    pub fn http_port(&self) -> u16 {
        self.http.local_addr().unwrap().port()
    }

    /// Serves: HTTPS through `TlsTerminator::accept`, answering every request
    /// with `200 hello <sni>`; HTTP answering HTTP-01 tokens, 404 otherwise.
    /// Returns the HTTPS address. The tasks end with the runtime.
    pub fn serve(self, tls: Arc<TlsTerminator>, tokens: Arc<Http01Tokens>) -> SocketAddr {
        let https_addr = self.https.local_addr().unwrap();
        tokio::spawn(serve_https(self.https, tls));
        tokio::spawn(serve_http01(self.http, tokens));
        https_addr
    }
}

async fn serve_https(listener: TcpListener, tls: Arc<TlsTerminator>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let Ok(Some((stream, alpn))) = tls.accept(tcp).await else {
                return;
            };
            let sni = stream.get_ref().1.server_name().unwrap_or("-").to_string();
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let body = format!("hello {sni}");
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            let io = TokioIo::new(stream);
            let _ = match alpn {
                Alpn::H2 => {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                }
                Alpn::Http1 => {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                }
            };
        });
    }
}

async fn serve_http01(listener: TcpListener, tokens: Arc<Http01Tokens>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let answer = tokens.answer_for_path(req.uri().path());
                async move {
                    Ok::<_, Infallible>(match answer {
                        Some(body) => Response::new(Full::new(Bytes::from(body))),
                        None => {
                            let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
                            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                            r
                        }
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
