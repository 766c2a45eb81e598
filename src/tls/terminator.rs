//! TLS accept: one entry point that answers ACME TLS-ALPN-01 validations and
//! terminates ordinary TLS, bounded by a handshake timeout.

use std::sync::Arc;
use std::time::Duration;

use rustls::server::{Acceptor, NoServerSessionStorage, ResolvesServerCert};
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::files::provider;
use super::resolver::{CertResolver, ChallengeCerts};
use super::TlsError;
use crate::config::defaults;

/// The ALPN protocol of RFC 8737 validation connections.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Which HTTP version the client and server agreed on through ALPN.
///
/// The server dispatches on this instead of sniffing the first bytes, so a client
/// that says nothing after the handshake is still covered by HTTP/1's header timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`: serve with hyper's HTTP/2 connection.
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

    /// The SNI resolver of the main config.
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// The TLS-ALPN-01 challenge certificates.
    pub fn challenge_certs(&self) -> &Arc<ChallengeCerts> {
        &self.challenges
    }

    /// The main rustls config (for tests and diagnostics).
    pub fn main_config(&self) -> &Arc<ServerConfig> {
        &self.main
    }

    /// Performs the TLS handshake on an accepted TCP connection.
    ///
    /// If the ClientHello offers `acme-tls/1`, the handshake is completed with the
    /// challenge certificate for the requested name, the connection is closed, and
    /// `Ok(None)` is returned: there is nothing for HTTP to serve. Otherwise the
    /// handshake is finished with the main config and the stream is returned with
    /// the negotiated protocol. Reading the ClientHello and the whole handshake are
    /// bounded by the handshake timeout, because neither rustls nor tokio-rustls
    /// time out on a silent client.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<Option<(TlsStream<TcpStream>, Alpn)>, TlsError> {
        match tokio::time::timeout(self.handshake_timeout, self.handshake(tcp)).await {
            Ok(result) => result,
            Err(_) => Err(TlsError::HandshakeTimeout(self.handshake_timeout)),
        }
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<Option<(TlsStream<TcpStream>, Alpn)>, TlsError> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp)
            .await
            .map_err(TlsError::Handshake)?;
        let hello = start.client_hello();
        let wants_acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if wants_acme {
            let name = hello.server_name().map(str::to_owned);
            let mut stream = start
                .into_stream(self.acme.clone())
                .await
                .map_err(TlsError::Handshake)?;
            tracing::debug!(name = ?name, "answered a TLS-ALPN-01 validation");
            // RFC 8737 §3: the validator only checks the certificate; close politely.
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        let stream = start
            .into_stream(self.main.clone())
            .await
            .map_err(TlsError::Handshake)?;
        let alpn = match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Alpn::H2,
            _ => Alpn::Http1,
        };
        Ok(Some((stream, alpn)))
    }
}

fn base_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::rustls("configuring TLS versions", e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver))
}
