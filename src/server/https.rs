//! The HTTPS side of the server: TLS accept with dispatch by ALPN, the
//! certificates behind it, and ACME HTTP-01 answers on the plain HTTP port.
//!
//! Kept apart from the plain-HTTP code: the listener calls [`serve_tls`] for TLS
//! ports, the request handler calls [`Https::http01_response`] first on plain
//! ports, and everything else about certificates lives in `tls`, `certs` and `acme`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use http::{header, HeaderValue, Response};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::Accepted;
use super::h2::serve_h2;
use super::Shared;
use crate::acme::{Http01Tokens, HTTP01_PATH_PREFIX};
use crate::body::Body;
use crate::certs::schedule::{renewal_due, Validity};
use crate::certs::{CertEvent, CertInfo, CertManager, SharedChallenges};
use crate::config::{Config, Scheme};
use crate::limit::ConnPermit;
use crate::metrics::Metrics;
use crate::tls::{
    Alpn, BoundedBacklog, CertResolver, ChallengeCerts, ClientTls, TlsError, TlsTerminator,
};

/// TLS termination plus the certificate manager that feeds it.
#[derive(Debug)]
pub(super) struct Https {
    terminator: TlsTerminator,
    tokens: Arc<Http01Tokens>,
    certs: CertManager,
    /// HTTP-01 answers other instances of a cluster published.
    shared_challenges: Option<Arc<SharedChallenges>>,
    /// `bellhop_refused_connections_total{reason="tls_handshake"}`: handshakes
    /// that failed (no certificate for the name, bad client, protocol error).
    refused_handshake: Counter,
    /// `…{reason="tls_handshake_timeout"}`: clients too slow to finish one.
    refused_timeout: Counter,
    /// What the handshakes are served from (read for the status line).
    resolver: Arc<CertResolver>,
}

impl Https {
    /// Sets up TLS for `config`, serving stored and local certificates at once.
    /// `None` when no site is served over HTTPS.
    /// The certificates served are reported to `metrics`.
    pub(super) async fn new(
        config: &Config,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Option<Https>> {
        let any_https = config
            .sites
            .iter()
            .flat_map(|s| &s.addresses)
            .any(|a| a.scheme == Scheme::Https);
        if !any_https {
            return Ok(None);
        }
        let resolver = Arc::new(CertResolver::new());
        let challenges = Arc::new(ChallengeCerts::new());
        let tokens = Arc::new(Http01Tokens::new());
        let terminator = TlsTerminator::new(resolver.clone(), challenges.clone())
            .context("cannot set up TLS")?;
        let certs = CertManager::open(config, resolver.clone(), challenges, tokens.clone())
            .await
            .context("cannot prepare certificates")?;
        certs.report_to(metrics.clone());
        let shared_challenges = certs.shared_challenges().cloned();
        Ok(Some(Https {
            terminator,
            tokens,
            certs,
            shared_challenges,
            refused_handshake: metrics.refused("tls_handshake"),
            refused_timeout: metrics.refused("tls_handshake_timeout"),
            resolver,
        }))
    }

    /// Starts obtaining and renewing certificates in the background. Call once
    /// the listeners accept, so ACME validations can reach us.
    pub(super) fn start(&self) {
        self.certs.start();
    }

    /// Applies a reloaded config: new names are served and obtained, removed
    /// names stop being served, unchanged ones keep their certificate. On error
    /// (e.g. unreadable certificate files) nothing changes. Listeners are not
    /// affected here: the reload (server::reload) binds and stops listeners.
    pub(super) fn update(&self, config: &Config) -> anyhow::Result<()> {
        self.certs
            .update(config)
            .context("cannot prepare certificates for the new config")
    }

    /// What a reload must fetch before [`update`](Self::update) (which runs
    /// under the reload lock and cannot wait): the cluster's internal CA,
    /// when the new config is the first to need it.
    pub(super) async fn prepare_update(&self, config: &Config) -> anyhow::Result<()> {
        self.certs
            .prepare_update(config)
            .await
            .context("cannot prepare certificates for the new config")
    }

    /// The certificate table (admin `GET /certs`).
    pub(super) fn table(&self) -> crate::certs::CertTable {
        self.certs.table()
    }

    /// How many names have a certificate served now, and when the first of
    /// them is due for renewal (without jitter or ARI: a status line needs
    /// days, not the exact minute).
    pub(super) fn renewal_summary(&self) -> (usize, Option<SystemTime>) {
        let due: Vec<SystemTime> = CertInfo::served(&self.resolver)
            .into_iter()
            .map(|(_, info)| {
                renewal_due(Validity {
                    not_before: info.not_before,
                    not_after: info.not_after,
                })
            })
            .collect();
        (due.len(), due.into_iter().min())
    }

    /// Certificate events from now on (obtained, failed).
    pub(super) fn events(&self) -> broadcast::Receiver<CertEvent> {
        self.certs.events()
    }

    /// Stops the background certificate tasks.
    pub(super) fn shutdown(&self) {
        self.certs.shutdown();
    }

    /// Waits until the background certificate tasks have ended.
    pub(super) async fn stopped(&self) {
        self.certs.stopped().await;
    }

    /// Counts and logs a handshake that did not complete.
    fn refused(&self, accepted: &Accepted, error: &TlsError) {
        self.count_refusal(accepted.peer, error);
    }

    fn count_refusal(&self, peer: SocketAddr, error: &TlsError) {
        match error {
            TlsError::HandshakeTimeout(_) => self.refused_timeout.inc(),
            _ => self.refused_handshake.inc(),
        };
        tracing::debug!(%peer, error = %error, "TLS handshake failed");
    }

    /// How long a client has for its whole handshake, from accept.
    pub(super) fn handshake_timeout(&self) -> Duration {
        self.terminator.handshake_timeout()
    }

    /// Counts and logs a client that did not even start its handshake
    /// within `timeout` (it waited in the accept loop's waiting room).
    pub(super) fn handshake_timed_out(&self, peer: SocketAddr, timeout: Duration) {
        self.count_refusal(peer, &TlsError::HandshakeTimeout(timeout));
    }

    /// The answer to an ACME HTTP-01 request on the plain HTTP port: the key
    /// authorization if `path` is a pending token, else `None` (tokens are
    /// unguessable, so answering them for any host is harmless, and other
    /// `/.well-known/acme-challenge/` paths stay with the site, see
    /// [`is_http01_path`]).
    pub(super) fn http01_response(&self, path: &str) -> Option<Response<Body>> {
        self.tokens.answer_for_path(path).map(http01_answer)
    }

    /// The answer to an HTTP-01 request this instance has no token for, from
    /// the answers other instances of a cluster published: one storage
    /// lookup, only for challenge paths the local table misses, only in a
    /// cluster.
    pub(super) async fn shared_http01_response(&self, path: &str) -> Option<Response<Body>> {
        let shared = self.shared_challenges.as_ref()?;
        let token = path.strip_prefix(HTTP01_PATH_PREFIX)?;
        if self.tokens.key_authorization(token).is_some() {
            return None;
        }
        shared.http01(token).await.map(http01_answer)
    }
}

/// An HTTP-01 answer: the key authorization as the body.
fn http01_answer(key_authorization: String) -> Response<Body> {
    let mut response = Response::new(Body::full(key_authorization));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Whether a plain-HTTP request path belongs to ACME HTTP-01. Such requests are
/// never redirected to HTTPS: the validator would follow the redirect to a port
/// that may not have a certificate yet.
pub(super) fn is_http01_path(path: &str) -> bool {
    path.starts_with(HTTP01_PATH_PREFIX)
}

/// Serves one connection accepted on a TLS port once its first bytes arrived
/// (see [`waiting_room`](super::waiting_room)): the handshake, which must be
/// done by `deadline` (accept + the handshake timeout), then HTTP/2 or
/// HTTP/1.1 as negotiated through ALPN. ACME TLS-ALPN-01 validations end
/// right after their handshake.
///
/// Each stage is boxed on its own: the handshake's state is freed once it is
/// done, and an HTTP/1.1 connection does not carry room for HTTP/2's state or
/// the handshake's while it serves (what a slow reader holds, next to its
/// buffers). A function returning an `async move` block rather than an
/// `async fn`: an `async fn` keeps its arguments twice in its future
/// (rust-lang/rust#62958).
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would hold its arguments twice (see above)"
)]
pub(super) fn serve_tls(
    stream: TcpStream,
    accepted: Accepted,
    permit: ConnPermit,
    shared: Arc<Shared>,
    stop: CancellationToken,
    deadline: Instant,
) -> impl Future<Output = ()> + Send {
    async move {
        let Some(https) = &shared.https else {
            // Not reachable: TLS listeners only exist when a site needs HTTPS.
            return;
        };
        // The handshake's result only lives inside this block: kept out of
        // the task's future, which then holds one pointer while it serves.
        let serve = {
            let handshake = Box::pin(https.terminator.accept_until(
                stream,
                accepted.port,
                deadline,
            ));
            let handshake = tokio::select! {
                handshake = handshake => handshake,
                () = stop.cancelled() => return,
            };
            match handshake {
                Ok(Some((tls, alpn))) => {
                    serve_negotiated(tls, alpn, accepted, permit, shared.clone(), stop)
                }
                Ok(None) => return,
                Err(e) => return https.refused(&accepted, &e),
            }
        };
        serve.await;
    }
}

/// The boxed future that serves a TLS connection with the protocol ALPN
/// chose: each sized for its own protocol only.
fn serve_negotiated(
    tls: ClientTls,
    alpn: Alpn,
    accepted: Accepted,
    permit: ConnPermit,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let accepted = Accepted {
        tls: tls.get_ref().1.protocol_version().map(tls_version_name),
        ..accepted
    };
    let tls = BoundedBacklog::new(tls, alpn);
    match alpn {
        Alpn::H2 => Box::pin(serve_h2(tls, accepted, permit, shared, stop)),
        Alpn::Http1 => Box::pin(super::h1::serve_http1(
            tls, accepted, permit, shared, stop, None,
        )),
    }
}

/// A TLS version as access logs name it.
fn tls_version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "TLS",
    }
}
