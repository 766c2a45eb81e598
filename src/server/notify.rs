//! Telling the service manager (systemd, `Type=notify`) what the server is
//! doing: ready, reloading, stopping, a one-line status, watchdog pings.
//!
//! The datagram protocol (`sd_notify(3)`) is sent with the `sd-notify` crate:
//! `RELOADING=1` must carry `MONOTONIC_USEC=` read from `CLOCK_MONOTONIC`,
//! which std does not expose and this crate may not read itself
//! (`forbid(unsafe_code)`); the crate is one small file on top of libc, which
//! is already in the tree. Without `NOTIFY_SOCKET` (not under systemd, the
//! in-process tests) every call is a no-op.
//!
//! An upgrade (`bellhop upgrade`) passes the main PID on. With the unit's
//! `NotifyAccess=main` systemd takes messages from its main PID only, so the
//! order is fixed:
//!
//! 1. the new process serves and says so over the hand-over connection;
//! 2. the old process (still the main PID) sends `MAINPID=<new>` with a
//!    status saying it drains ([`Notifier::hand_over`]); from then on this
//!    process sends nothing, since systemd would refuse it (and a late
//!    `STOPPING=1` or watchdog ping must never be taken as the service's);
//! 3. it stops accepting and tells the new process (`Handed`);
//! 4. the new process, now the main PID, sends `READY=1` and its status.
//!
//! `READY=1` before step 2 would be dropped with a "reception only permitted
//! for main PID" warning, and the datagrams of the two processes are read in
//! the order they were queued, which step 3 makes the order above.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use sd_notify::NotifyState;

/// Set once this process has passed the main PID to its successor. A
/// process-wide flag, not a field: systemd's main PID is a property of the
/// process, and every copy of the [`Notifier`] must fall silent at once.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Sends state changes to the service manager, if one listens. A copy is
/// as good as the original: each message opens its own socket.
#[derive(Debug, Clone, Copy)]
pub(super) struct Notifier {
    /// Whether `NOTIFY_SOCKET` was set when the server was bound.
    enabled: bool,
}

impl Notifier {
    /// A notifier for the socket named by `NOTIFY_SOCKET`, if set.
    pub(super) fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    /// Whether anything is sent at all (so callers can skip work only the
    /// service manager would see).
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// `READY=1`: every listener is bound and the config is loaded.
    pub(super) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with the monotonic time systemd pairs with the reload
    /// it asked for; `READY=1` follows once the reload is over, however it went.
    pub(super) fn reloading(&self) {
        if !self.enabled {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading the config"),
            ]),
            Err(e) => tracing::warn!(error = %e, "cannot read CLOCK_MONOTONIC for systemd"),
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub(super) fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: finishing in-flight requests"),
        ]);
    }

    /// `STATUS=…`, shown by `systemctl status`.
    pub(super) fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `MAINPID=pid`: the successor of an upgrade is the service now. Sent
    /// with a status saying that this process drains `connections` (systemd
    /// shows it until the successor sends its own); afterwards this process
    /// sends nothing more (see the module doc).
    pub(super) fn hand_over(&self, pid: u32, connections: usize) {
        let status = format!(
            "upgrading: bellhop {pid} serves; bellhop {} drains {connections} open connection{}",
            std::process::id(),
            if connections == 1 { "" } else { "s" }
        );
        self.send(&[NotifyState::MainPid(pid), NotifyState::Status(&status)]);
        HANDED_OVER.store(true, Ordering::Relaxed);
        if self.enabled {
            tracing::info!(pid, "told systemd the new main process");
        }
    }

    /// `WATCHDOG=1`: the server is alive.
    pub(super) fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled || HANDED_OVER.load(Ordering::Relaxed) {
            return;
        }
        // A service manager that went away is no reason to stop serving.
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "cannot notify the service manager");
        }
    }
}

/// The watchdog interval systemd asks for (`WatchdogSec=`), when it is meant
/// for this process (`WATCHDOG_PID`, if set, is ours).
pub(super) fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Prepares the environment of an upgrade's new process for the watchdog.
/// systemd set `WATCHDOG_PID` to this process; inherited as is, it would
/// tell the new one (soon the main PID, which systemd expects the pings
/// from) that the watchdog is not its business. So the new process gets the
/// watchdog exactly when this one has it.
pub(super) fn successor_env(command: &mut tokio::process::Command) {
    command.env_remove("WATCHDOG_PID");
    if watchdog_interval().is_none() {
        command.env_remove("WATCHDOG_USEC");
    }
}

/// What the server does, in one line for `systemctl status`:
/// `serving 3 sites, 2 certificates, next renewal in 41 d`.
pub(super) fn status_line(
    sites: usize,
    certificates: usize,
    next_renewal: Option<SystemTime>,
    now: SystemTime,
) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let mut line = format!("serving {sites} site{}", plural(sites));
    if certificates > 0 {
        line.push_str(&format!(
            ", {certificates} certificate{}",
            plural(certificates)
        ));
    }
    if let Some(at) = next_renewal {
        let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
        line.push_str(", next renewal ");
        line.push_str(&in_words(wait));
    }
    line
}

/// `in 41 d`, `in 5 h`, `in 12 min`, `due now`: coarse, as a person reads it.
fn in_words(wait: Duration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match wait.as_secs() {
        s if s >= 2 * DAY => format!("in {} d", s / DAY),
        s if s >= 2 * HOUR => format!("in {} h", s / HOUR),
        s if s >= MINUTE => format!("in {} min", s / MINUTE),
        _ => "due now".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_reads_like_a_sentence() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let days = |d: u64| now + Duration::from_secs(d * 86_400 + 3_600);
        assert_eq!(
            status_line(3, 2, Some(days(41)), now),
            "serving 3 sites, 2 certificates, next renewal in 41 d"
        );
        assert_eq!(status_line(1, 0, None, now), "serving 1 site");
        assert_eq!(
            status_line(1, 1, Some(now + Duration::from_secs(5 * 3600)), now),
            "serving 1 site, 1 certificate, next renewal in 5 h"
        );
        assert_eq!(
            status_line(2, 1, Some(now), now),
            "serving 2 sites, 1 certificate, next renewal due now"
        );
    }
}
