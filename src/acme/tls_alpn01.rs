//! TLS-ALPN-01 challenge certificates (RFC 8737).

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivatePkcs8KeyDer;

use super::AcmeError;
use crate::crypto::provider;

/// A self-signed certificate for exactly `name` carrying the critical
/// `id-pe-acmeIdentifier` extension with the SHA-256 digest of the key
/// authorization, as the validator expects.
pub(crate) fn challenge_cert(name: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let context = || format!("building the TLS-ALPN-01 certificate for {name}");
    // rcgen panics on anything but 32 bytes; never let a peer-influenced value get there.
    if digest.len() != 32 {
        return Err(AcmeError::Order {
            name: name.into(),
            reason: format!("key authorization digest is {} bytes, not 32", digest.len()),
        });
    }
    let key = KeyPair::generate().map_err(|e| AcmeError::rcgen(context(), e))?;
    let mut params = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| AcmeError::rcgen(context(), e))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let cert = params
        .self_signed(&key)
        .map_err(|e| AcmeError::rcgen(context(), e))?;
    // Not `CertifiedKey::from_der`: its key/certificate match check parses the
    // certificate with webpki, which rejects the unknown critical acmeIdentifier
    // extension. The key was generated for this certificate a moment ago.
    let signing_key = provider()
        .key_provider
        .load_private_key(PrivatePkcs8KeyDer::from(key.serialize_der()).into())
        .map_err(|e| AcmeError::rustls(context(), e))?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
}
