//! One certificate for one name: order, challenge, finalize, download.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    Order, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};

use super::nonce::{is_bad_nonce, retry_bad_nonce, BAD_NONCE_RETRIES};
use super::publish::{ChallengeResponder, Published};
use super::tls_alpn01::challenge_cert;
use super::AcmeError;
use crate::config::AcmeChallenge;

/// What to order.
pub(crate) struct OrderRequest<'a> {
    /// The single DNS name of the certificate.
    pub name: &'a str,
    /// Challenge types to try, in order.
    pub challenges: &'a [AcmeChallenge],
    /// CA profile (`profile` option), if any.
    pub profile: Option<&'a str>,
    /// The certificate this one replaces (ARI), if the CA supports ARI.
    pub replaces: Option<CertificateIdentifier<'static>>,
}

/// A freshly issued certificate, PEM, not yet checked or stored.
pub(crate) struct Issued {
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM PKCS#8 key.
    pub key_pem: String,
}

/// How the order status is polled. Validation and issuance often complete in
/// milliseconds, so the first poll comes after 50 ms; doubling from there keeps
/// a slow CA to about a dozen polls over the two minutes we wait (and a CA's
/// `Retry-After` is honoured by instant-acme).
fn poll_policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(2.0)
        .timeout(Duration::from_secs(120))
}

/// Tries each challenge type in turn; moves on only when the CA reports a
/// validation problem (another type may reach us where this one could not).
pub(crate) async fn obtain(
    account: &Account,
    request: &OrderRequest<'_>,
    responder: &Arc<dyn ChallengeResponder>,
) -> Result<Issued, AcmeError> {
    let mut last_error = None;
    for (i, challenge) in request.challenges.iter().enumerate() {
        match obtain_with(account, request, *challenge, responder).await {
            Ok(issued) => return Ok(issued),
            Err(err) if err.is_validation_failure() && i + 1 < request.challenges.len() => {
                tracing::info!(name = request.name, error = %err, "trying the next challenge type");
                last_error = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    Err(last_error.unwrap_or_else(|| AcmeError::Order {
        name: request.name.to_string(),
        reason: "no challenge type to try".into(),
    }))
}

/// The name RFC 8555/8737 give a challenge type, for logs and errors.
pub(crate) fn challenge_name(challenge: AcmeChallenge) -> &'static str {
    match challenge {
        AcmeChallenge::Http01 => "http-01",
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
    }
}

fn challenge_type(challenge: AcmeChallenge) -> ChallengeType {
    match challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    }
}

/// One order with one challenge type: order, prove control, finalize.
async fn obtain_with(
    account: &Account,
    request: &OrderRequest<'_>,
    challenge: AcmeChallenge,
    responder: &Arc<dyn ChallengeResponder>,
) -> Result<Issued, AcmeError> {
    let name = request.name;
    let ids = [Identifier::Dns(name.to_string())];
    let mut new_order = NewOrder::new(&ids);
    if let Some(profile) = request.profile {
        new_order = new_order.profile(profile);
    }
    if let Some(replaces) = &request.replaces {
        new_order = new_order.replaces(replaces.clone());
    }
    let mut order = retry_bad_nonce!(account.new_order(&new_order).await)
        .map_err(|e| AcmeError::acme(format!("ordering a certificate for {name}"), e))?;
    let published = authorize(&mut order, name, challenge, responder).await?;
    // The answer stays published until the CA has decided: it validates from
    // several vantage points, possibly more than once.
    await_validation(&mut order, name, challenge).await?;
    drop(published);
    finalize(&mut order, name).await
}

/// Publishes the answer to the order's one authorization and tells the CA to
/// validate. `None` when the CA reused an earlier valid authorization.
async fn authorize(
    order: &mut Order,
    name: &str,
    challenge: AcmeChallenge,
    responder: &Arc<dyn ChallengeResponder>,
) -> Result<Option<Published>, AcmeError> {
    let kind = challenge_name(challenge);
    // bellhop orders one name per certificate, so there is exactly one
    // authorization. Fetching it is repeated from scratch after a badNonce
    // because the iterator has already moved past a failed fetch.
    if order.state().authorizations.len() != 1 {
        return Err(AcmeError::Order {
            name: name.to_string(),
            reason: format!(
                "expected one authorization, the CA returned {}",
                order.state().authorizations.len()
            ),
        });
    }
    let mut retries = 0;
    loop {
        let mut authorizations = order.authorizations();
        let Some(authz) = authorizations.next().await else {
            return Ok(None);
        };
        let mut authz = match authz {
            Err(e) if is_bad_nonce(&e) && retries < BAD_NONCE_RETRIES => {
                retries += 1;
                continue;
            }
            other => other.map_err(|e| {
                AcmeError::acme(format!("fetching the authorization for {name}"), e)
            })?,
        };
        match authz.status {
            // Reused from an earlier order: nothing to prove.
            AuthorizationStatus::Valid => return Ok(None),
            AuthorizationStatus::Pending => {}
            other => {
                return Err(AcmeError::Order {
                    name: name.to_string(),
                    reason: format!("authorization is {other:?}, not pending"),
                })
            }
        }
        let mut handle =
            authz
                .challenge(challenge_type(challenge))
                .ok_or_else(|| AcmeError::Order {
                    name: name.to_string(),
                    reason: format!("the CA offered no {kind} challenge"),
                })?;
        let key_auth = handle.key_authorization();
        let published = match challenge {
            AcmeChallenge::TlsAlpn01 => {
                let digest = key_auth.digest();
                let cert = challenge_cert(name, digest.as_ref())?;
                Published::tls_alpn01(responder, name, Arc::new(cert), digest.as_ref()).await
            }
            AcmeChallenge::Http01 => {
                Published::http01(responder, &handle.token, key_auth.as_str()).await
            }
        };
        retry_bad_nonce!(handle.set_ready().await)
            .map_err(|e| AcmeError::challenge_ready(name, kind, e))?;
        return Ok(Some(published));
    }
}

/// Waits until the CA has validated the order; its reason if it did not.
async fn await_validation(
    order: &mut Order,
    name: &str,
    challenge: AcmeChallenge,
) -> Result<(), AcmeError> {
    let kind = challenge_name(challenge);
    let status = retry_bad_nonce!(order.poll_ready(&poll_policy()).await);
    let status = match status {
        Ok(status) => status,
        Err(instant_acme::Error::Api(problem)) => {
            return Err(AcmeError::Validation {
                name: name.to_string(),
                challenge: kind,
                problem,
            })
        }
        Err(e) => {
            return Err(AcmeError::acme(
                format!("waiting for {kind} validation of {name}"),
                e,
            ))
        }
    };
    if status == OrderStatus::Invalid {
        return Err(validation_error(order, name, challenge).await);
    }
    Ok(())
}

/// Sends a CSR for a fresh key and downloads the certificate.
async fn finalize(order: &mut Order, name: &str) -> Result<Issued, AcmeError> {
    let key = KeyPair::generate().map_err(|e| AcmeError::rcgen("generating a key", e))?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| AcmeError::rcgen(format!("building a CSR for {name}"), e))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::rcgen(format!("signing the CSR for {name}"), e))?;
    retry_bad_nonce!(order.finalize_csr(csr.der()).await)
        .map_err(|e| AcmeError::acme(format!("finalizing the order for {name}"), e))?;
    // Many CAs issue while answering the finalize request; only poll if not.
    let ready = retry_bad_nonce!(order.certificate().await)
        .map_err(|e| AcmeError::acme(format!("downloading the certificate for {name}"), e))?;
    let chain_pem = match ready {
        Some(chain) => chain,
        None => retry_bad_nonce!(order.poll_certificate(&poll_policy()).await)
            .map_err(|e| AcmeError::acme(format!("downloading the certificate for {name}"), e))?,
    };
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// Digs the CA's reason out of an invalid order: the failed challenge's error.
async fn validation_error(order: &mut Order, name: &str, challenge: AcmeChallenge) -> AcmeError {
    let kind = challenge_name(challenge);
    let wanted = challenge_type(challenge);
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if authz.refresh().await.is_err() {
            continue;
        }
        let problem = authz
            .challenges
            .iter()
            .find(|c| c.r#type == wanted)
            .and_then(|c| c.error.clone());
        if let Some(problem) = problem {
            return AcmeError::Validation {
                name: name.to_string(),
                challenge: kind,
                problem,
            };
        }
    }
    AcmeError::Order {
        name: name.to_string(),
        reason: format!("{kind} validation failed and the CA gave no reason"),
    }
}
