//! The TLS handshake path: what a connection meets before HTTP.
//!
//! - [`TlsTerminator`] accepts TLS (answering `acme-tls/1` validations on the
//!   side) and reports the negotiated HTTP version.
//! - [`BoundedBacklog`] wraps the accepted stream: how much rustls may hold
//!   for a client whose socket is full; under rustls, `RecordTail` holds
//!   the exact unsent tail of a record the socket cut, so rustls frees it.
//! - [`CertResolver`] maps SNI to a certificate and is swapped at runtime;
//!   [`ChallengeCerts`] holds TLS-ALPN-01 certificates while a validation runs.
//! - [`OnDemand`] signs leaves during the handshake for host-less
//!   `tls internal` sites, which answer any name, with whatever [`LeafSigner`]
//!   it is given (the internal CA).
//!
//! Which certificates exist, where they come from and when they are renewed is
//! the business of `certs`, which fills the resolver; `tls` never calls `certs`
//! or `acme`.

mod backlog;
mod error;
mod leaf_signer;
mod on_demand;
mod record_tail;
mod resolver;
mod terminator;

pub(crate) use backlog::BoundedBacklog;
pub use error::TlsError;
pub(crate) use leaf_signer::LeafSigner;
pub(crate) use on_demand::OnDemandPort;
pub use record_tail::RecordTail;
pub(crate) use resolver::ChallengeFallback;
pub use resolver::{CertResolver, ChallengeCerts};
pub use terminator::{Alpn, ClientTls, TlsTerminator};
