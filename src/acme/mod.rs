//! Certificates from an ACME CA (Let's Encrypt by default), obtained and renewed
//! in the background.
//!
//! - [`CertManager`] decides which names need which certificate ([`plan`]),
//!   serves stored ones at once and runs one task per name.
//! - [`schedule`] is the whole renewal and backoff policy as pure functions.
//! - The ACME flow itself (account, order, challenge, finalize) lives in private
//!   modules on top of instant-acme; challenge responses are published through
//!   [`Http01Tokens`] (served on `http-port`) and
//!   [`ChallengeCerts`](crate::tls::ChallengeCerts) (served on `https-port`).
//!
//! State on disk is described in `docs/tls.md`.

mod account;
mod client;
mod error;
mod http01;
mod issue;
mod manager;
mod nonce;
mod tls_alpn01;

pub use account::{account_path, issuer_id};
pub use error::AcmeError;
pub use http01::{Http01Tokens, HTTP01_PATH_PREFIX};
pub use manager::{CertEvent, CertManager};
