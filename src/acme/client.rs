//! The HTTPS client instant-acme talks to the CA with.
//!
//! instant-acme's own clients trust either the system roots or exactly one given
//! root. bellhop wants both: the system roots (for Let's Encrypt and friends) plus
//! `acme-ca-root` for a private or test CA. So we hand instant-acme a hyper-rustls
//! client built on the platform verifier with extra roots, ring only. Every request
//! is bounded in time, including reading the body, because a CA that stops
//! answering must not stall the renewal task forever.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::AcmeError;
use crate::crypto::provider;

/// Connect timeout towards the CA.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for one request including its response body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A cloneable HTTPS client for one CA (cheap to clone: the pool is shared).
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl AcmeHttp {
    /// Trusts the system roots plus every certificate in `extra_root` (PEM).
    pub(crate) fn new(extra_root: Option<&Path>) -> Result<Self, AcmeError> {
        let extra: Vec<CertificateDer<'static>> = match extra_root {
            None => Vec::new(),
            Some(path) => CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    AcmeError::Client(format!("reading acme-ca-root {}: {e}", path.display()))
                })?,
        };
        if extra_root.is_some() && extra.is_empty() {
            return Err(AcmeError::Client(
                "acme-ca-root contains no CERTIFICATE block".into(),
            ));
        }
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider())
            .map_err(|e| AcmeError::Client(format!("loading trust roots: {e}")))?;
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Client(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(AcmeHttp {
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().clone();
        let response = self.client.request(req);
        Box::pin(async move {
            let read = async {
                let response = response
                    .await
                    .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(instant_acme::Error::Hyper)?
                    .to_bytes();
                if parts.status == http::StatusCode::BAD_REQUEST
                    && body.windows(8).any(|w| w == b"badNonce")
                {
                    // instant-acme retries these itself; the log shows how often.
                    tracing::debug!(%uri, "the CA rejected a nonce");
                }
                Ok(BytesResponse::from(http::Response::from_parts(
                    parts,
                    Full::new(body),
                )))
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
                Ok(result) => result,
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no complete answer from {uri} within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}
