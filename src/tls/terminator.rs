//! TLS accept: one entry point that answers ACME TLS-ALPN-01 validations and
//! terminates ordinary TLS, bounded by a handshake timeout.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::server::{Acceptor, ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// A client's TLS stream as the terminator hands it on.
pub type ClientTls = TlsStream<RecordTail<TcpStream>>;

use super::record_tail::RecordTail;
use super::resolver::{CertResolver, ChallengeCerts};
use super::TlsError;
use crate::config::defaults;
use crate::crypto::provider;

/// The ALPN protocol of RFC 8737 validation connections.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Which HTTP version the client and server agreed on through ALPN.
///
/// The server dispatches on this instead of sniffing the first bytes, so a client
/// that says nothing after the handshake is still covered by HTTP/1's header timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`: serve as HTTP/2 (`server/h2`).
    H2,
    /// `http/1.1`, or no ALPN at all: serve HTTP/1.1 (with upgrades).
    Http1,
}

/// Owns the two rustls server configs and performs every TLS accept.
///
/// Why two configs: rustls negotiates ALPN from the server's list and aborts when
/// none matches, and the challenge certificate of TLS-ALPN-01 must never reach an
/// ordinary client. So the ClientHello is read first ([`LazyConfigAcceptor`]) and
/// the config is chosen by whether `acme-tls/1` is offered.
pub struct TlsTerminator {
    main: Arc<ServerConfig>,
    acme: Arc<ServerConfig>,
    resolver: Arc<CertResolver>,
    challenges: Arc<ChallengeCerts>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("resolver", &self.resolver)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsTerminator {
    /// Builds the configs around shared certificate stores. Certificates set in
    /// `resolver` or `challenges` later take effect on the next handshake.
    ///
    /// Main config: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, stateless session
    /// tickets (ring's rotating ChaCha20-Poly1305 ticketer) on top of rustls'
    /// default in-memory session cache, no 0-RTT.
    pub fn new(
        resolver: Arc<CertResolver>,
        challenges: Arc<ChallengeCerts>,
    ) -> Result<Self, TlsError> {
        let mut main = base_config(resolver.clone())?;
        main.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        main.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::rustls("creating the session ticketer", e))?;

        let mut acme = base_config(challenges.clone())?;
        acme.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        // Validators never resume; don't let them fill a cache.
        acme.session_storage = Arc::new(NoServerSessionStorage {});
        acme.send_tls13_tickets = 0;

        Ok(TlsTerminator {
            main: Arc::new(main),
            acme: Arc::new(acme),
            resolver,
            challenges,
            handshake_timeout: defaults::TLS_HANDSHAKE_TIMEOUT,
        })
    }

    /// Replaces the handshake timeout (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a client has for its whole handshake, from accept.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The SNI resolver of the main config.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The TLS-ALPN-01 challenge certificates.
    pub fn challenge_certs(&self) -> &Arc<ChallengeCerts> {
        &self.challenges
    }

    /// Performs the TLS handshake on an accepted TCP connection, treating it as
    /// arriving on the port its socket is bound to. See [`accept_on`](Self::accept_on).
    pub async fn accept(&self, tcp: TcpStream) -> Result<Option<(ClientTls, Alpn)>, TlsError> {
        let port = tcp.local_addr().map_or(0, |a| a.port());
        self.accept_on(tcp, port).await
    }

    /// Performs the TLS handshake on a TCP connection accepted by the listener
    /// configured as `port` (the config's port, which differs from the socket's
    /// when the config asked for an ephemeral port 0).
    ///
    /// If the ClientHello offers `acme-tls/1`, the handshake is completed with the
    /// challenge certificate for the requested name, the connection is closed, and
    /// `Ok(None)` is returned: there is nothing for HTTP to serve. Otherwise the
    /// handshake is finished with the main config and the stream is returned with
    /// the negotiated protocol. On a port whose catch-all site is `tls internal`,
    /// a name no other site claims (or, without SNI, the local IP) gets a leaf
    /// issued on demand (see [`OnDemand`](super::OnDemand)). Reading the
    /// ClientHello and the whole handshake are bounded by the handshake timeout,
    /// because neither rustls nor tokio-rustls time out on a silent client.
    pub async fn accept_on(
        &self,
        tcp: TcpStream,
        port: u16,
    ) -> Result<Option<(ClientTls, Alpn)>, TlsError> {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        self.accept_until(tcp, port, deadline).await
    }

    /// [`accept_on`](Self::accept_on) with the handshake bounded by
    /// `deadline` instead: for a caller that already waited for the
    /// client's first byte, so the wait and the handshake share one timeout.
    pub async fn accept_until(
        &self,
        tcp: TcpStream,
        port: u16,
        deadline: tokio::time::Instant,
    ) -> Result<Option<(ClientTls, Alpn)>, TlsError> {
        match tokio::time::timeout_at(deadline, self.handshake(tcp, port)).await {
            Ok(result) => result,
            Err(_) => Err(TlsError::HandshakeTimeout(self.handshake_timeout)),
        }
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        port: u16,
    ) -> Result<Option<(ClientTls, Alpn)>, TlsError> {
        // The address the client connected to: a client without SNI verifies
        // the certificate against it. Only needed on on-demand ports.
        let local_ip = if self.resolver.on_demand().is_enabled(port) {
            tcp.local_addr().ok().map(|a| a.ip())
        } else {
            None
        };
        // Nothing is allocated for the handshake before the client sends its
        // first byte (rustls sizes its read buffer on the first read attempt).
        // A peek: tokio reports a new socket readable before any byte came.
        tcp.peek(&mut [0u8; 1]).await.map_err(TlsError::Handshake)?;
        let start = LazyConfigAcceptor::new(Acceptor::default(), RecordTail::new(tcp))
            .await
            .map_err(TlsError::Handshake)?;
        let hello = start.client_hello();
        let wants_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if wants_acme {
            let name = hello.server_name().map(str::to_owned);
            // A challenge another instance of a cluster started.
            let config = match &name {
                Some(n) => match self.challenges.remote(n).await {
                    Some(cert) => with_fixed(&self.acme, cert),
                    None => self.acme.clone(),
                },
                None => self.acme.clone(),
            };
            let mut stream = start
                .into_stream(config)
                .await
                .map_err(TlsError::Handshake)?;
            tracing::debug!(name = ?name, "answered a TLS-ALPN-01 validation");
            // RFC 8737 §3: the validator only checks the certificate; close politely.
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        let config = match local_ip.and_then(|ip| {
            self.resolver
                .on_demand()
                .certificate(port, ip, hello.server_name(), SystemTime::now())
        }) {
            Some(cert) => self.main_with(cert),
            None => self.main.clone(),
        };
        let stream = start
            .into_stream(config)
            .await
            .map_err(TlsError::Handshake)?;
        let alpn = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Alpn::H2,
            _ => Alpn::Http1,
        };
        Ok(Some((stream, alpn)))
    }

    /// The main config serving `cert` whatever the SNI. Everything else,
    /// including the session cache and ticket keys, is shared with the main
    /// config, so resumption works as usual.
    fn main_with(&self, cert: Arc<CertifiedKey>) -> Arc<ServerConfig> {
        with_fixed(&self.main, cert)
    }
}

/// `config` serving `cert` whatever the SNI.
fn with_fixed(config: &ServerConfig, cert: Arc<CertifiedKey>) -> Arc<ServerConfig> {
    let mut config = config.clone();
    config.cert_resolver = Arc::new(Fixed(cert));
    Arc::new(config)
}

/// Always the same certificate: an on-demand leaf chosen before the handshake.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn base_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::rustls("configuring TLS versions", e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}
