//! Sizing the connection caps at start: raise the open-file limit as far as
//! the hard limit allows, then derive `max-connections` from it unless the
//! Proxyfile sets it.
//!
//! Why derive it: past the open-file limit `accept` fails with EMFILE and
//! every client, good or bad, waits; a cap below it refuses the excess at
//! once and keeps the descriptors a served request needs. A proxied
//! connection holds two (the client's socket and one upstream socket), so
//! the default is half of what is left after [`RESERVED_FDS`]:
//!
//! ```text
//! max-connections = (RLIMIT_NOFILE - 256) / 2
//! ```
//!
//! With the systemd unit's `LimitNOFILE=65536` that is 32,640; with a
//! common 1,024 it is 384.

use std::sync::Arc;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::config::Options;
use crate::limit::{ConnCaps, RefusedCounters};

/// Descriptors kept for everything that is not a client connection or its
/// upstream socket: listeners (one per worker and port), static files being
/// sent, certificates and state files, the admin listener, logs.
pub(super) const RESERVED_FDS: u64 = 256;
/// The derived cap never goes above this, however high the hard limit
/// (containers often allow 2^20 or more).
const DERIVED_MAX: u64 = 1_000_000;
/// Nor below this, so a tiny limit still serves someone.
const DERIVED_MIN: u64 = 16;

/// Raises the soft RLIMIT_NOFILE to the hard one and returns the limit in
/// force afterwards (`None` when unlimited or unknown).
fn raise_nofile() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit")
            }
            Err(e) => {
                tracing::warn!(error = %e, soft = ?limit.current, hard = ?limit.maximum, "cannot raise the open-file limit")
            }
        }
    }
    getrlimit(Resource::Nofile).current
}

/// `max-connections` for an open-file limit of `nofile` (see the module docs).
pub(super) fn derived_max(nofile: Option<u64>) -> usize {
    let derived = nofile.map_or(DERIVED_MAX, |n| n.saturating_sub(RESERVED_FDS) / 2);
    usize::try_from(derived.clamp(DERIVED_MIN, DERIVED_MAX)).unwrap_or(usize::MAX)
}

/// Raises the open-file limit and builds the caps `options` ask for, logging
/// the figures.
pub(super) fn connection_caps(options: &Options, refused: RefusedCounters) -> Arc<ConnCaps> {
    let nofile = raise_nofile();
    let max = options
        .max_connections
        .unwrap_or_else(|| derived_max(nofile));
    tracing::info!(
        open_file_limit = nofile.map_or_else(|| "unlimited".to_string(), |n| n.to_string()),
        max_connections = max,
        max_connections_per_ip = options.max_connections_per_ip,
        "connection caps"
    );
    ConnCaps::new(max, options.max_connections_per_ip, refused)
}

#[cfg(test)]
mod tests {
    use super::derived_max;

    #[test]
    fn derived_from_the_open_file_limit() {
        assert_eq!(derived_max(Some(65_536)), 32_640);
        assert_eq!(derived_max(Some(1_024)), 384);
        assert_eq!(derived_max(Some(100)), 16);
        assert_eq!(derived_max(Some(1 << 30)), 1_000_000);
        assert_eq!(derived_max(None), 1_000_000);
    }
}
