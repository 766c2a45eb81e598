//! What on-demand issuance needs from a certificate authority.
//!
//! The handshake path signs leaves for host-less `tls internal` sites, but the
//! authority itself (its key on disk, its root) belongs to the certificate
//! lifecycle in `certs`. This trait is the narrow door between them, so `tls`
//! never depends on `certs`.

use std::error::Error;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;

/// Signs short-lived leaves during a handshake.
pub trait LeafSigner: Send + Sync {
    /// A leaf for `names` (DNS names or IP addresses as text), valid from about
    /// `now` for [`leaf_lifetime`](Self::leaf_lifetime).
    fn sign_leaf(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<CertifiedKey, Box<dyn Error + Send + Sync>>;

    /// How long a signed leaf is valid; cached leaves are re-issued after half of it.
    fn leaf_lifetime(&self) -> Duration;
}
