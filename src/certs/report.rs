//! The certificate table: every managed name, where its certificate comes
//! from, who issued it, until when it is valid, when it is renewed next, the
//! CA's ARI window and the last CA error, verbatim, with its time.
//!
//! Two readers build the same [`CertTable`]: the running manager
//! ([`CertManager::table`](super::CertManager::table), served as JSON by the
//! admin listener's `GET /certs`) from what it serves and what its tasks
//! report ([`Progress`]), and [`table_from_state`] from the state directory
//! alone, for `bellhop certs` while bellhop is stopped. Times are RFC 3339 in
//! UTC, to the second.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::clock::fmt_time;
use super::plan::{plan, CertSource};
use super::schedule::{self, AriWindow, Validity};
use super::status::from_unix;
use super::{CertError, CertInfo, CertStore, InternalCa, NameStatus};
use crate::acme::issuer_id;
use crate::config::Config;

/// Every managed name, in config order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertTable {
    /// One row per name.
    pub certificates: Vec<CertRow>,
}

/// One managed name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRow {
    /// The host name (or IP address, or `*.wildcard`).
    pub name: String,
    /// Where its certificate comes from.
    pub source: CertOrigin,
    /// The issuer of the certificate served (or stored), RFC 4514 text.
    pub issuer: Option<String>,
    /// End of validity of that certificate.
    pub not_after: Option<String>,
    /// When bellhop will next try to obtain or renew it (ACME), or re-issue
    /// it (internal CA); `None` for given files, which only a reload re-reads.
    pub next_renewal: Option<String>,
    /// The renewal window the CA suggested through ARI, when it gave one.
    pub ari_window: Option<RenewalWindow>,
    /// The last failed attempt, with the CA's problem detail verbatim.
    pub last_error: Option<LastError>,
    /// Consecutive failed attempts (0 after a success).
    pub failures: u32,
    /// When a certificate was last obtained from the CA.
    pub last_success: Option<String>,
    /// Anything the columns above cannot say (why a field is empty).
    pub note: Option<String>,
}

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertOrigin {
    /// The ACME CA (`acme-ca`).
    Acme,
    /// bellhop's internal CA.
    Internal,
    /// `tls "cert" "key"` files.
    File,
}

impl CertOrigin {
    /// The word the JSON and the table use.
    pub fn as_str(self) -> &'static str {
        match self {
            CertOrigin::Acme => "acme",
            CertOrigin::Internal => "internal",
            CertOrigin::File => "file",
        }
    }
}

/// An ARI renewal window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalWindow {
    /// Earliest suggested renewal time.
    pub start: String,
    /// Latest suggested renewal time.
    pub end: String,
}

/// The last error of a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// The error as logged, with the CA's problem document verbatim.
    pub message: String,
    /// When the attempt failed.
    pub at: Option<String>,
}

impl CertRow {
    /// A row for `name` with the facts of its certificate, if there is one.
    fn new(name: &str, source: &CertSource, cert: Option<&CertInfo>) -> Self {
        CertRow {
            name: name.to_string(),
            source: match source {
                CertSource::Acme { .. } => CertOrigin::Acme,
                CertSource::Internal => CertOrigin::Internal,
                CertSource::Files { .. } => CertOrigin::File,
            },
            issuer: cert.map(|c| c.issuer.clone()),
            not_after: cert.map(|c| fmt_time(c.not_after)),
            next_renewal: None,
            ari_window: None,
            last_error: None,
            failures: 0,
            last_success: None,
            note: None,
        }
    }

    /// Adds what an ACME name's failure record says.
    fn with_status(mut self, status: &NameStatus) -> Self {
        self.failures = status.failures;
        self.last_error = status.last_error.as_ref().map(|message| LastError {
            message: message.clone(),
            at: status.last_failure.map(|t| fmt_time(from_unix(t))),
        });
        self.last_success = status.last_success.map(|t| fmt_time(from_unix(t)));
        self
    }

    fn with_ari(mut self, window: Option<AriWindow>) -> Self {
        self.ari_window = window.map(|w| RenewalWindow {
            start: fmt_time(w.start),
            end: fmt_time(w.end),
        });
        self
    }

    fn with_next(mut self, next: Option<SystemTime>) -> Self {
        self.next_renewal = next.map(fmt_time);
        self
    }

    fn with_note(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }
}

/// What a running ACME task last decided, for the table.
#[derive(Debug, Clone)]
struct AcmeProgress {
    next_attempt: SystemTime,
    ari: Option<AriWindow>,
    status: NameStatus,
}

/// The running ACME tasks' schedule, shared with the manager. Written when a
/// task re-plans (after each attempt or ARI poll), read by `GET /certs`.
#[derive(Debug, Default)]
pub(super) struct Progress(Mutex<HashMap<String, AcmeProgress>>);

impl Progress {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, AcmeProgress>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `name`'s next attempt and what it is based on.
    pub(super) fn record(
        &self,
        name: &str,
        next_attempt: SystemTime,
        ari: Option<AriWindow>,
        status: &NameStatus,
    ) {
        self.lock().insert(
            name.to_string(),
            AcmeProgress {
                next_attempt,
                ari,
                status: status.clone(),
            },
        );
    }

    /// Forgets a name whose task stopped.
    pub(super) fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// The row of an ACME name of the running manager.
    pub(super) fn acme_row(
        &self,
        name: &str,
        source: &CertSource,
        served: Option<&CertInfo>,
    ) -> CertRow {
        let row = CertRow::new(name, source, served);
        match self.lock().get(name) {
            Some(p) => row
                .with_status(&p.status)
                .with_ari(p.ari)
                .with_next(Some(p.next_attempt)),
            None => row.with_note(Some("not scheduled yet (bellhop is starting)".into())),
        }
    }
}

/// Why a given file's row has no renewal time.
const GIVEN_FILE: &str = "given file: read at start and on reload";
/// Why a stopped bellhop's internal names have no certificate to show.
const IN_MEMORY: &str =
    "internal leaves live in memory: issued when bellhop starts, re-issued at half their lifetime";

/// The row of a name the running manager serves from the internal CA or files.
pub(super) fn local_row(name: &str, source: &CertSource, served: Option<&CertInfo>) -> CertRow {
    let row = CertRow::new(name, source, served);
    match source {
        CertSource::Internal => row.with_next(served.map(|c| schedule::renewal_due(validity(c)))),
        _ => row.with_note(Some(GIVEN_FILE.into())),
    }
}

/// The table as the state directory and the config's files tell it, for a
/// bellhop that is not running. Reads certificates and failure records, never
/// keys, and creates nothing. Fails only when the state directory exists but
/// cannot be read (run as the user bellhop runs as).
pub fn table_from_state(config: &Config) -> Result<CertTable, CertError> {
    let state_dir = &config.options.state_dir;
    if let Err(e) = std::fs::read_dir(state_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(CertError::io("reading", state_dir, e));
        }
    }
    let store = CertStore::new(state_dir, &issuer_id(&config.options.acme_ca));
    let now = SystemTime::now();
    let certificates = plan(config)
        .names
        .iter()
        .map(|(name, source)| match source {
            CertSource::Acme { .. } => stored_acme_row(&store, name, source, now),
            CertSource::Internal => {
                let root = CertInfo::from_chain_file(&InternalCa::root_path(state_dir));
                let mut row = CertRow::new(name, source, None).with_note(Some(IN_MEMORY.into()));
                // The root is self-signed: its issuer is the CA's own name.
                row.issuer = root.ok().flatten().map(|ca| ca.issuer);
                row
            }
            CertSource::Files { cert, .. } => file_row(name, source, cert),
        })
        .collect();
    Ok(CertTable { certificates })
}

/// An ACME name's row from its stored chain and failure record; the next
/// attempt is the schedule's latest (no jitter, which only moves it earlier).
fn stored_acme_row(store: &CertStore, name: &str, source: &CertSource, now: SystemTime) -> CertRow {
    let mut notes = Vec::new();
    let info = CertInfo::from_chain_file(&store.cert_path(name)).unwrap_or_else(|e| {
        notes.push(format!("stored certificate unusable: {e}"));
        None
    });
    let status = store.load_status(name).unwrap_or_else(|e| {
        notes.push(format!("failure record unreadable: {e}"));
        NameStatus::default()
    });
    if info.is_none() && notes.is_empty() {
        notes.push("no certificate stored yet".into());
    }
    let next = schedule::next_attempt(
        info.as_ref().map(validity),
        status.retry_not_before(),
        status.ari(),
        now,
        0.0,
    );
    CertRow::new(name, source, info.as_ref())
        .with_status(&status)
        .with_ari(status.ari())
        .with_next(Some(next))
        .with_note((!notes.is_empty()).then(|| notes.join("; ")))
}

/// A `tls "cert" "key"` name's row, from the certificate file alone.
fn file_row(name: &str, source: &CertSource, cert: &Path) -> CertRow {
    match CertInfo::from_chain_file(cert) {
        Ok(Some(info)) => {
            CertRow::new(name, source, Some(&info)).with_note(Some(GIVEN_FILE.into()))
        }
        Ok(None) => CertRow::new(name, source, None)
            .with_note(Some(format!("{} does not exist", cert.display()))),
        Err(e) => CertRow::new(name, source, None).with_note(Some(e.to_string())),
    }
}

fn validity(info: &CertInfo) -> Validity {
    Validity {
        not_before: info.not_before,
        not_after: info.not_after,
    }
}
