//! Telling systemd that the service's main process is now another one
//! (`MAINPID=`), after an upgrade handed the listeners over.
//!
//! The message is sent by the old process, the main PID systemd knows, so
//! the unit's default `NotifyAccess=main` accepts it; from then on the new
//! process is the main PID for `systemctl status`, reload and stop. Without
//! `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `MAINPID=pid` to `$NOTIFY_SOCKET`, if set. A failure is logged:
/// the upgrade itself has worked, only systemd's bookkeeping lags.
pub(super) fn hand_to(pid: u32) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    // `@name` is an abstract socket (sd_notify(3)), anything else a path.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let result = addr.and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(format!("MAINPID={pid}\n").as_bytes(), &addr)
    });
    match result {
        Ok(_) => tracing::info!(pid, "told systemd the new main process"),
        Err(e) => {
            tracing::warn!(pid, error = %e, "cannot tell systemd the new main process (MAINPID)")
        }
    }
}
