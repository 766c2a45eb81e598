//! The ACME protocol (RFC 8555) on top of instant-acme: "obtain a certificate
//! for this name" from Let's Encrypt or any other ACME CA.
//!
//! - `Acme` is one CA: the account (stored under the state dir, created on
//!   first use), orders with TLS-ALPN-01 or HTTP-01, and ARI renewal hints.
//! - Challenge answers are published through `ChallengeResponder`, an
//!   interface defined here so the protocol does not depend on how bellhop
//!   serves them; [`Http01Tokens`] is the HTTP-01 table the plain-HTTP
//!   listener answers from.
//!
//! Which names need certificates, where they are kept and when they are
//! renewed is the certificate lifecycle's business (`crate::certs`), which
//! calls this module; `acme` imports neither `certs` nor `tls`.

mod account;
mod ca;
mod client;
mod error;
mod http01;
mod issue;
mod nonce;
mod publish;
mod tls_alpn01;

pub use account::account_path;
pub(crate) use account::issuer_id;
pub(crate) use ca::{Acme, CaSettings};
pub(crate) use error::AcmeError;
pub use http01::Http01Tokens;
pub(crate) use http01::HTTP01_PATH_PREFIX;
pub(crate) use issue::Issued;
pub(crate) use publish::ChallengeResponder;
pub(crate) use tls_alpn01::challenge_cert;
