//! The one rustls crypto provider and the random numbers bellhop draws from it.
//!
//! Shared by `tls` (handshakes), `certs` (keys, internal CA) and `acme` (the
//! CA's HTTPS client, challenge certificates), none of which should depend on
//! another just to reach the provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider every bellhop TLS object uses. Passing it explicitly (rather
/// than relying on the process default) keeps the library usable from tests and
/// from a `main` that forgot to install one.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A random number from the same CSPRNG rustls uses (no extra dependency).
pub(crate) fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // ring's system RNG does not fail on Linux; if it ever did, the callers
    // (a suffix in a CA name, renewal jitter) degrade harmlessly with zero.
    let _ = provider().secure_random.fill(&mut buf);
    u32::from_le_bytes(buf)
}
