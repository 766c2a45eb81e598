//! Retrying requests the CA rejected with `badNonce`.
//!
//! instant-acme retries `badNonce` three times per request. CAs may reject a
//! fraction of perfectly good nonces (RFC 8555 §6.5 allows it; Pebble does it on
//! purpose, 5 % by default), and an issuance makes about ten signed requests, so a
//! few unlucky nonces would fail the whole attempt and cost a backoff. A request
//! rejected for its nonce was not processed, so repeating it is always safe.

/// How many times a whole instant-acme call is repeated after `badNonce`.
pub(crate) const BAD_NONCE_RETRIES: u32 = 4;

/// Whether the CA rejected the request only because of its nonce.
pub(crate) fn is_bad_nonce(err: &instant_acme::Error) -> bool {
    matches!(err, instant_acme::Error::Api(p)
        if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:badNonce"))
}

/// Evaluates an `async` instant-acme expression (including its `.await`) again
/// while it fails with `badNonce`, up to [`BAD_NONCE_RETRIES`] more times.
macro_rules! retry_bad_nonce {
    ($call:expr) => {{
        let mut retries = 0;
        loop {
            match $call {
                Err(e)
                    if $crate::acme::nonce::is_bad_nonce(&e)
                        && retries < $crate::acme::nonce::BAD_NONCE_RETRIES =>
                {
                    retries += 1;
                    tracing::debug!("badNonce; repeating the request");
                }
                result => break result,
            }
        }
    }};
}

pub(crate) use retry_bad_nonce;
