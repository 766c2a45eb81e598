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
#![forbid(unsafe_code)]

pub mod acme;
pub mod body;
pub mod certs;
pub mod config;
mod crypto;
pub mod encode;
pub mod files;
pub mod limit;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod server;
mod state_file;
pub mod tls;
