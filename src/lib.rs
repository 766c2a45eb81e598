//! bellhop: a small, fast, auto-HTTPS reverse proxy.
//!
//! Data flows through the modules in one direction:
//!
//! ```text
//! config   Proxyfile (KDL) → validated, typed Config
//! router   Config → per-port host tables → site → path route → handler
//! server   listeners → accept → (TLS) → hyper HTTP/1.1 or h2 → router → handler
//! proxy    handler that rewrites headers, sends through a pooled upstream
//!          client, streams the response back and splices upgraded streams
//! files    handler that serves static files from a directory
//! encode   gzip/zstd compression of any handler's response, streamed
//! error_pages, header_ops   response filters: `error-page`, `header`
//!
//! certs    background: which certificate each name needs, stored, scheduled,
//!          renewed (internal CA, given files, ACME) → fed to the tls resolver
//! acme     the ACME protocol: obtain a certificate for a name
//! tls      the handshake path: terminator, SNI resolver, on-demand leaves
//! ```
//!
//! The config lives behind an atomic swap so a reload never touches listeners or
//! open connections.
#![warn(missing_docs)]
// deny, not forbid: one call has no safe form, glibc's `malloc_trim`
// (server/trim.rs), allowed there alone with its SAFETY note.
#![deny(unsafe_code)]
#![deny(unreachable_pub)]

// Every module is private; what tests, benches and the CLI may use is named
// below, so a newcomer sees the whole surface in one place and an internal
// rename never leaks.
mod access;
mod acme;
mod body;
mod certs;
pub mod config;
mod crypto;
mod encode;
mod error_pages;
mod files;
mod header_ops;
mod http1;
mod http_path;
mod io_through;
mod limit;
mod logging;
mod metrics;
mod path_rewrite;
mod proxy;
mod reload_status;
mod router;
mod server;
mod state_file;
mod storage;
mod tls;

/// Run a config: bind, serve, reload, upgrade, shut down.
pub use server::{
    run_upgrade_launcher, signal_process, Handover, ReloadHandle, ReloadSummary, Server,
    ShutdownHandle, UpgradeHandle,
};

/// `bellhop hash-password`: an argon2id hash for `basic-auth`.
pub use access::hash_password;
/// How the running process reports each reload's outcome to `bellhop reload`.
pub use reload_status::{
    read_reload_status, reload_status_path, ReloadOutcome, ReloadReport, ReloadStatus,
};

/// Log output of the CLI (format and level).
pub use logging::{init as init_logging, LogFormat, LogGuard};

/// The certificate lifecycle, for tools and the ACME tests.
pub use certs::{CertEvent, CertManager, InternalCa, NameStatus};

/// The certificate table of `GET /certs` and `bellhop certs`, and how the
/// CLI builds it from the state directory while bellhop is stopped.
pub use certs::{table_from_state, CertOrigin, CertRow, CertTable, LastError, RenewalWindow};

/// Where the ACME account lives, and the HTTP-01 answers a server publishes.
pub use acme::{account_path, Http01Tokens};

/// The TLS handshake path, for the TLS tests.
pub use tls::{Alpn, CertResolver, ChallengeCerts, ClientTls, RecordTail, TlsError, TlsTerminator};
