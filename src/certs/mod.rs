//! The certificate lifecycle: which certificate each name needs, where it comes
//! from, where it is kept and when it is renewed.
//!
//! - [`plan`] decides, as a pure function of the config, which names need a
//!   certificate and whether it comes from ACME, the internal CA or given files.
//! - [`CertStore`] keeps obtained certificates on disk, written atomically;
//!   [`load_cert_files`] reads `tls "cert" "key"`.
//! - [`InternalCa`] is bellhop's own root for `localhost`, IPs and `tls internal`.
//! - [`schedule`] is the whole renewal and backoff policy as pure functions;
//!   [`NameStatus`] remembers failures across restarts.
//! - [`CertTable`] is what an operator sees of all this (`GET /certs`,
//!   `bellhop certs`), from the running manager or from the state directory.
//! - [`CertManager`] ties them together: it serves what is available at once,
//!   runs one background task per ACME name (which calls `crate::acme` to
//!   obtain certificates) and one that re-issues internal leaves, and feeds
//!   every certificate to the `tls` resolver.
//!
//! State on disk is described in `docs/tls.md`.

mod acme_task;
mod cert_info;
mod challenges;
mod clock;
mod cluster;
mod error;
mod files;
mod internal_ca;
mod internal_task;
mod manager;
pub(crate) mod plan;
mod report;
pub(crate) mod schedule;
mod shared;
mod shared_ca;
mod status;
mod store;

pub(crate) use cert_info::CertInfo;
pub(crate) use challenges::SharedChallenges;
pub(crate) use error::CertError;
pub(crate) use files::load_cert_files;
pub use internal_ca::InternalCa;
pub(crate) use internal_ca::LEAF_LIFETIME;
pub use manager::CertManager;
pub use report::{table_from_state, CertOrigin, CertRow, CertTable, LastError, RenewalWindow};
pub use shared::CertEvent;
pub use status::NameStatus;
pub(crate) use store::{CertStore, StoredCert};
