//! The per-name record of failures that survives restarts.
//!
//! Stored as `status.json` next to the name's certificate. Its job is to stop a
//! crash-looping or frequently restarted bellhop from hammering the CA: on start
//! the manager waits for `next_attempt` before trying again.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::schedule::AriWindow;
use super::CertError;
use crate::state_file::{read_optional, write_atomic, PUBLIC_MODE};

/// What went wrong last and when to try again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameStatus {
    /// Consecutive failed attempts; 0 after a success.
    pub failures: u32,
    /// The last error, with the CA's problem detail verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last attempt failed (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<u64>,
    /// Not before this time is the next attempt made (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<u64>,
    /// When a certificate was last obtained (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<u64>,
    /// The renewal window the CA last suggested through ARI (Unix seconds),
    /// kept so `bellhop certs` can show it while bellhop is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_window: Option<(u64, u64)>,
}

impl NameStatus {
    /// Reads the status file; a missing file is a clean slate. A corrupt one is
    /// reported so the caller can log it, then also treated as a clean slate.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(Self::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| CertError::Invalid {
            path: path.to_path_buf(),
            reason: format!("invalid status JSON: {e}"),
        })
    }

    /// Writes the status atomically.
    pub fn save(&self, path: &Path) -> Result<(), CertError> {
        let mut json = serde_json::to_vec_pretty(self).unwrap_or_default();
        json.push(b'\n');
        Ok(write_atomic(path, &json, PUBLIC_MODE)?)
    }

    /// The pending retry time, if the last attempt failed.
    pub fn retry_not_before(&self) -> Option<SystemTime> {
        if self.failures == 0 {
            return None;
        }
        self.next_attempt.map(from_unix)
    }

    /// The ARI window of the current certificate, if the CA gave one.
    pub(crate) fn ari(&self) -> Option<AriWindow> {
        self.ari_window.map(|(start, end)| AriWindow {
            start: from_unix(start),
            end: from_unix(end),
        })
    }

    /// Records the CA's renewal window; true if it changed (worth saving).
    pub(crate) fn set_ari(&mut self, window: Option<AriWindow>) -> bool {
        let window = window.map(|w| (to_unix(w.start), to_unix(w.end)));
        let changed = self.ari_window != window;
        self.ari_window = window;
        changed
    }

    /// Records a failure.
    pub fn failed(&mut self, error: String, now: SystemTime, next: SystemTime) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        self.last_failure = Some(to_unix(now));
        self.next_attempt = Some(to_unix(next));
    }

    /// Records a success and forgets earlier failures.
    pub fn succeeded(&mut self, now: SystemTime) {
        *self = NameStatus {
            last_success: Some(to_unix(now)),
            ..NameStatus::default()
        };
    }
}

/// `SystemTime` → Unix seconds (0 before the epoch).
pub(super) fn to_unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds → `SystemTime`.
pub(super) fn from_unix(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resets() {
        let dir = std::env::temp_dir().join(format!("bellhop-status-{}", std::process::id()));
        let path = dir.join("status.json");
        assert_eq!(NameStatus::load(&path).unwrap(), NameStatus::default());
        let mut s = NameStatus::default();
        let now = from_unix(1000);
        s.failed("boom".into(), now, from_unix(1060));
        s.save(&path).unwrap();
        let loaded = NameStatus::load(&path).unwrap();
        assert_eq!(loaded.failures, 1);
        assert_eq!(loaded.retry_not_before(), Some(from_unix(1060)));
        let mut ok = loaded;
        ok.succeeded(from_unix(2000));
        assert_eq!(ok.retry_not_before(), None);
        assert_eq!(ok.last_error, None);
        std::fs::write(&path, "{").unwrap();
        assert!(NameStatus::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
