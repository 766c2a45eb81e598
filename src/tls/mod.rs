//! TLS termination and certificates that are not ACME's business.
//!
//! - [`TlsTerminator`] accepts TLS (answering `acme-tls/1` validations on the
//!   side) and reports the negotiated HTTP version.
//! - [`CertResolver`] maps SNI to a certificate and is swapped at runtime;
//!   [`ChallengeCerts`] holds TLS-ALPN-01 certificates while a validation runs.
//! - [`InternalCa`] is bellhop's own root for `localhost`, IPs and `tls internal`;
//!   [`OnDemand`] signs its leaves during the handshake for host-less
//!   `tls internal` sites, which answer any name.
//! - [`CertStore`] keeps certificates on disk, written atomically
//!   (`crate::state_file`), and [`load_cert_files`] reads `tls "cert" "key"`.

mod cert_info;
mod error;
mod files;
mod internal_ca;
mod on_demand;
mod resolver;
mod store;
mod terminator;

pub use cert_info::CertInfo;
pub use error::TlsError;
pub use files::load_cert_files;
pub use internal_ca::{InternalCa, LEAF_LIFETIME};
pub use on_demand::{OnDemand, OnDemandPort, ON_DEMAND_CAPACITY};
pub use resolver::{CertResolver, ChallengeCerts};
pub use store::{file_name_for, CertStore, StoredCert};
pub use terminator::{Alpn, TlsTerminator, ACME_TLS_ALPN};
