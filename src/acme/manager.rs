//! The certificate manager: gets every certificate a config needs and keeps it fresh.
//!
//! Start-up never waits for the network. [`CertManager::new`] serves what is
//! already there at once (stored ACME certificates, certificate files, internal
//! leaves); [`CertManager::start`] then spawns one task per ACME name that obtains
//! missing certificates and renews existing ones in the background, plus one task
//! that re-issues internal leaves. Host-less `tls internal` sites get their
//! leaves on demand during the handshake instead (`tls::OnDemand`, configured
//! here). A failing name backs off on its own schedule
//! (persisted, so restarts don't hammer the CA) and never affects other names; a
//! still-valid certificate keeps being served while its renewal fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::account;
use super::client::AcmeHttp;
use super::http01::Http01Tokens;
use super::issue::{self, OrderRequest, Responders};
use super::AcmeError;
use crate::certs::plan::{plan, CertSource, Fallback, Plan};
use crate::certs::schedule::{self, AriWindow, FailureKind, Validity};
use crate::certs::{
    load_cert_files, CertError, CertInfo, CertStore, InternalCa, NameStatus, StoredCert,
    LEAF_LIFETIME,
};
use crate::config::{AcmeChallenge, Config};
use crate::crypto::random_u32;
use crate::state_file::create_private_dir;
use crate::tls::{CertResolver, ChallengeCerts, LeafSigner, OnDemandPort};

/// One whole attempt (order, validation, download) may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Sleep in slices of at most this, re-reading the wall clock in between, so a
/// suspended VM or a clock step does not push renewal far past its time.
const MAX_SLEEP: Duration = Duration::from_secs(600);
/// How often to re-ask the CA for ARI when it gave no usable hint or failed.
const ARI_RETRY: Duration = Duration::from_secs(6 * 3600);

/// Something the manager did, for the server's logs, an admin endpoint or tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertEvent {
    /// A certificate was obtained (or re-issued) and is now served.
    Obtained {
        /// The name.
        name: String,
        /// End of its validity.
        not_after: SystemTime,
    },
    /// An attempt failed; the previous certificate, if any, is still served.
    Failed {
        /// The name.
        name: String,
        /// The error, with the CA's problem detail verbatim.
        error: String,
        /// When the next attempt will be made.
        next_attempt: SystemTime,
    },
}

/// ACME settings from the `options` block.
#[derive(Debug, Clone)]
struct AcmeSettings {
    directory: String,
    root: Option<PathBuf>,
    email: Option<String>,
    profile: Option<String>,
}

/// Where an internal leaf is served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    Name(String),
    NoSni,
    Default,
}

/// ARI support of the CA, learnt from the first `renewal_info` call.
const ARI_UNKNOWN: u8 = 0;
const ARI_YES: u8 = 1;
const ARI_NO: u8 = 2;

/// State shared by the manager handle and its tasks.
struct Shared {
    state_dir: PathBuf,
    settings: AcmeSettings,
    store: CertStore,
    resolver: Arc<CertResolver>,
    responders: Responders,
    account: tokio::sync::Mutex<Option<Account>>,
    ari: AtomicU8,
    events: broadcast::Sender<CertEvent>,
    internal_ca: Mutex<Option<Arc<InternalCa>>>,
}

/// What is running for the current plan.
#[derive(Default)]
struct Running {
    started: bool,
    acme: HashMap<String, Worker>,
    internal: HashMap<Slot, InternalLeaf>,
    internal_task: Option<CancellationToken>,
}

struct Worker {
    challenges: Vec<AcmeChallenge>,
    cancel: CancellationToken,
    /// The certificate loaded from disk, handed to the task when it starts.
    initial: Option<StoredCert>,
}

#[derive(Clone)]
struct InternalLeaf {
    names: Vec<String>,
    validity: Validity,
}

/// Obtains, stores, serves and renews every certificate of a config.
pub struct CertManager {
    shared: Arc<Shared>,
    running: Mutex<Running>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for CertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertManager")
            .field("state_dir", &self.shared.state_dir)
            .field("ca", &self.shared.settings.directory)
            .finish_non_exhaustive()
    }
}

impl CertManager {
    /// Prepares certificates for `config` and serves what is available now:
    /// stored ACME certificates (if still valid), `tls "cert" "key"` files and
    /// internal-CA leaves. Nothing here touches the network.
    ///
    /// Fails if the state dir cannot be created, a certificate file is unusable, or
    /// the internal CA cannot be loaded: those are configuration problems the
    /// operator must see at start-up.
    pub fn new(
        config: &Config,
        resolver: Arc<CertResolver>,
        tls_alpn: Arc<ChallengeCerts>,
        tokens: Arc<Http01Tokens>,
    ) -> Result<Self, AcmeError> {
        let options = &config.options;
        create_private_dir(&options.state_dir)?;
        let settings = AcmeSettings {
            directory: options.acme_ca.clone(),
            root: options.acme_ca_root.clone(),
            email: options.email.clone(),
            profile: options.acme_profile.clone(),
        };
        let (events, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            state_dir: options.state_dir.clone(),
            store: CertStore::new(&options.state_dir, &account::issuer_id(&settings.directory)),
            settings,
            resolver,
            responders: Responders { tokens, tls_alpn },
            account: tokio::sync::Mutex::new(None),
            ari: AtomicU8::new(ARI_UNKNOWN),
            events,
            internal_ca: Mutex::new(None),
        });
        let manager = CertManager {
            shared,
            running: Mutex::new(Running::default()),
            shutdown: CancellationToken::new(),
        };
        manager.apply(plan(config))?;
        Ok(manager)
    }

    /// Spawns the background tasks. Must be called inside a Tokio runtime.
    pub fn start(&self) {
        let mut running = self.lock();
        if running.started {
            return;
        }
        running.started = true;
        let names: Vec<String> = running.acme.keys().cloned().collect();
        for name in names {
            self.spawn_worker(&mut running, &name);
        }
        self.respawn_internal_task(&mut running);
    }

    /// Switches to a new config (reload): names no longer configured stop being
    /// served and renewed, new names are loaded and obtained, unchanged names keep
    /// their certificate and their task. On error nothing changes.
    ///
    /// The CA settings (`acme-ca`, `state-dir`, …) are those given to [`new`](Self::new);
    /// changing them needs a restart.
    pub fn update(&self, config: &Config) -> Result<(), AcmeError> {
        self.apply(plan(config))
    }

    /// A stream of [`CertEvent`]s from now on.
    pub fn events(&self) -> broadcast::Receiver<CertEvent> {
        self.shared.events.subscribe()
    }

    /// The store holding this CA's certificates (paths for docs, tools and tests).
    pub fn store(&self) -> &CertStore {
        &self.shared.store
    }

    /// Stops every background task. Certificates keep being served.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads everything `plan` needs, then swaps it in.
    fn apply(&self, plan: Plan) -> Result<(), AcmeError> {
        for (name, reason) in &plan.unsupported {
            tracing::error!(name = %name, "no certificate: {reason}");
        }
        let now = SystemTime::now();

        // Phase 1, fallible: load or make every certificate that doesn't need the
        // network. Nothing is served yet, so an error leaves the old state intact.
        let mut files = Vec::new();
        let mut internal_wanted: Vec<(Slot, Vec<String>)> = Vec::new();
        let mut acme_wanted: Vec<(String, Vec<AcmeChallenge>)> = Vec::new();
        for (name, source) in &plan.names {
            match source {
                CertSource::Files { cert, key } => files.push((
                    Slot::Name(name.clone()),
                    Arc::new(load_cert_files(cert, key)?),
                )),
                CertSource::Internal => {
                    internal_wanted.push((Slot::Name(name.clone()), vec![name.clone()]))
                }
                CertSource::Acme { challenges } => {
                    acme_wanted.push((name.clone(), challenges.clone()))
                }
            }
        }
        for (slot, fallback) in [(Slot::NoSni, &plan.no_sni), (Slot::Default, &plan.default)] {
            match fallback {
                Some(Fallback::Files { cert, key }) => {
                    files.push((slot, Arc::new(load_cert_files(cert, key)?)))
                }
                Some(Fallback::Internal(names)) => internal_wanted.push((slot, names.clone())),
                None => {}
            }
        }
        let mut running = self.lock();
        let mut internal_new = Vec::new();
        let ca = if internal_wanted.is_empty() && plan.on_demand.is_empty() {
            None
        } else {
            Some(self.shared.internal_ca()?)
        };
        if let Some(ca) = &ca {
            for (slot, names) in internal_wanted {
                match running.internal.get(&slot) {
                    Some(leaf) if leaf.names == names => continue,
                    _ => {}
                }
                let key = ca.issue(&names, now, LEAF_LIFETIME)?;
                internal_new.push((slot, names, Arc::new(key)));
            }
        }

        // Phase 2, infallible: swap in.
        let on_demand: HashMap<u16, OnDemandPort> = plan
            .on_demand
            .iter()
            .map(|(port, claimed)| (*port, OnDemandPort::new(claimed)))
            .collect();
        for (port, _) in &plan.on_demand {
            tracing::info!(
                port,
                "issuing internal certificates on demand for the host-less `tls internal` site"
            );
        }
        self.shared.resolver.on_demand().configure(
            on_demand,
            ca.filter(|_| !plan.on_demand.is_empty())
                .map(|ca| ca as Arc<dyn LeafSigner>),
        );
        let wanted_names: Vec<&str> = plan.names.iter().map(|(n, _)| n.as_str()).collect();
        self.shared.resolver.retain(|n| wanted_names.contains(&n));
        for slot in [Slot::NoSni, Slot::Default] {
            let configured = match slot {
                Slot::NoSni => plan.no_sni.is_some(),
                _ => plan.default.is_some(),
            };
            if !configured {
                running.internal.remove(&slot);
                self.shared.serve(&slot, None);
            }
        }
        for (slot, key) in files {
            running.internal.remove(&slot);
            self.shared.serve(&slot, Some(key));
        }
        running.internal.retain(|slot, _| match slot {
            Slot::Name(n) => plan
                .names
                .iter()
                .any(|(name, s)| name == n && *s == CertSource::Internal),
            _ => true,
        });
        for (slot, names, key) in internal_new {
            let validity = validity_of(&key).unwrap_or(Validity {
                not_before: now,
                not_after: now + LEAF_LIFETIME,
            });
            self.shared.serve(&slot, Some(key));
            running
                .internal
                .insert(slot, InternalLeaf { names, validity });
        }

        // ACME: stop workers for names that went away or changed challenges,
        // prepare workers for new names (spawned now if already started).
        running.acme.retain(|name, worker| {
            let keep = acme_wanted
                .iter()
                .any(|(n, c)| n == name && *c == worker.challenges);
            if !keep {
                worker.cancel.cancel();
            }
            keep
        });
        for (name, challenges) in acme_wanted {
            if running.acme.contains_key(&name) {
                continue;
            }
            let initial = self.shared.load_stored(&name, now);
            running.acme.insert(
                name.clone(),
                Worker {
                    challenges,
                    cancel: self.shutdown.child_token(),
                    initial,
                },
            );
            if running.started {
                self.spawn_worker(&mut running, &name);
            }
        }
        if running.started {
            self.respawn_internal_task(&mut running);
        }
        Ok(())
    }

    fn spawn_worker(&self, running: &mut Running, name: &str) {
        let Some(worker) = running.acme.get_mut(name) else {
            return;
        };
        let task = AcmeTask {
            shared: self.shared.clone(),
            name: name.to_string(),
            challenges: worker.challenges.clone(),
            current: worker.initial.take(),
            cancel: worker.cancel.clone(),
        };
        tokio::spawn(task.run());
    }

    fn respawn_internal_task(&self, running: &mut Running) {
        if let Some(old) = running.internal_task.take() {
            old.cancel();
        }
        if running.internal.is_empty() {
            return;
        }
        let cancel = self.shutdown.child_token();
        running.internal_task = Some(cancel.clone());
        let leaves: Vec<(Slot, InternalLeaf)> = running
            .internal
            .iter()
            .map(|(s, l)| (s.clone(), l.clone()))
            .collect();
        tokio::spawn(renew_internal(self.shared.clone(), leaves, cancel));
    }
}

impl Drop for CertManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Shared {
    fn serve(&self, slot: &Slot, key: Option<Arc<rustls::sign::CertifiedKey>>) {
        match (slot, key) {
            (Slot::Name(name), Some(key)) => self.resolver.set(name, key),
            (Slot::Name(name), None) => self.resolver.remove(name),
            (Slot::NoSni, key) => self.resolver.set_no_sni(key),
            (Slot::Default, key) => self.resolver.set_default(key),
        }
    }

    fn internal_ca(&self) -> Result<Arc<InternalCa>, CertError> {
        let mut ca = self
            .internal_ca
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ca) = ca.as_ref() {
            return Ok(ca.clone());
        }
        let loaded = Arc::new(InternalCa::load_or_create(&self.state_dir)?);
        *ca = Some(loaded.clone());
        Ok(loaded)
    }

    /// The stored certificate for `name`, served at once if still valid.
    fn load_stored(&self, name: &str, now: SystemTime) -> Option<StoredCert> {
        match self.store.load(name) {
            Ok(Some(stored)) if stored.info.is_valid_at(now) => {
                self.resolver.set(name, stored.key.clone());
                tracing::info!(name, not_after = %fmt_time(stored.info.not_after), "serving stored certificate");
                Some(stored)
            }
            Ok(Some(stored)) => {
                tracing::warn!(name, not_after = %fmt_time(stored.info.not_after), "stored certificate is not valid now; obtaining a new one");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(name, error = %e, "ignoring unusable stored certificate; obtaining a new one");
                None
            }
        }
    }

    /// The ACME account, restored or created on first use. Not cached on error,
    /// so a CA that was down is simply tried again next time.
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let http = AcmeHttp::new(self.settings.root.as_deref())?;
        let account = account::load_or_create(
            &self.state_dir,
            &self.settings.directory,
            self.settings.email.as_deref(),
            &http,
        )
        .await?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Drops the cached account and moves its credentials aside.
    async fn forget_account(&self) -> Result<(), AcmeError> {
        let mut slot = self.account.lock().await;
        *slot = None;
        account::retire(&self.state_dir, &self.settings.directory)
    }

    /// One issuance attempt, re-registering once if the CA forgot our account,
    /// and retrying once without `replaces` if the CA rejected the ARI hint.
    async fn obtain(
        &self,
        name: &str,
        challenges: &[AcmeChallenge],
        replaces: Option<CertificateIdentifier<'static>>,
    ) -> Result<issue::Issued, AcmeError> {
        let mut request = OrderRequest {
            name,
            challenges,
            profile: self.settings.profile.as_deref(),
            replaces,
        };
        let account = self.account().await?;
        let result = issue::obtain(&account, &request, &self.responders).await;
        match result {
            Err(e) if e.is_account_gone() => {
                tracing::warn!(ca = %self.settings.directory, error = %e, "the CA does not know our account any more; registering a new one");
                self.forget_account().await?;
                let account = self.account().await?;
                issue::obtain(&account, &request, &self.responders).await
            }
            Err(e)
                if request.replaces.is_some()
                    && e.problem().is_some()
                    && !e.is_validation_failure()
                    && !e.is_rate_limited() =>
            {
                tracing::info!(name, error = %e, "retrying the order without the ARI `replaces` field");
                request.replaces = None;
                issue::obtain(&account, &request, &self.responders).await
            }
            other => other,
        }
    }

    /// Asks the CA for its suggested renewal window (best effort).
    async fn renewal_info(
        &self,
        cert: &StoredCert,
    ) -> Result<Option<(AriWindow, Duration)>, AcmeError> {
        if self.ari.load(Ordering::Relaxed) == ARI_NO {
            return Ok(None);
        }
        let Some(leaf) = cert.key.cert.first() else {
            return Ok(None);
        };
        let Ok(id) = CertificateIdentifier::try_from(leaf) else {
            return Ok(None);
        };
        let account = self.account().await?;
        match account.renewal_info(&id).await {
            Ok((info, poll)) => {
                self.ari.store(ARI_YES, Ordering::Relaxed);
                let window = AriWindow {
                    start: SystemTime::from(info.suggested_window.start),
                    end: SystemTime::from(info.suggested_window.end),
                };
                Ok(Some((window, poll)))
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.ari.store(ARI_NO, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(AcmeError::acme("fetching renewal information", e)),
        }
    }
}

/// The background task of one ACME name.
struct AcmeTask {
    shared: Arc<Shared>,
    name: String,
    challenges: Vec<AcmeChallenge>,
    current: Option<StoredCert>,
    cancel: CancellationToken,
}

impl AcmeTask {
    async fn run(mut self) {
        let status_path = self.shared.store.name_dir(&self.name).join("status.json");
        let mut status = NameStatus::load(&status_path).unwrap_or_else(|e| {
            tracing::warn!(name = %self.name, error = %e, "ignoring unreadable status file");
            NameStatus::default()
        });
        if let (Some(next), Some(error)) = (status.retry_not_before(), &status.last_error) {
            tracing::info!(name = %self.name, next_attempt = %fmt_time(next), last_error = %error, "backing off after an earlier failure");
        }
        // One random draw per certificate, so re-evaluating the schedule does not
        // keep drifting the renewal time earlier.
        let mut unit = unit_random();
        let mut ari: Option<AriWindow> = None;
        let mut ari_poll_at = SystemTime::now();
        loop {
            let now = SystemTime::now();
            let validity = self.current.as_ref().map(stored_validity);
            let due = schedule::next_attempt(validity, status.retry_not_before(), ari, now, unit);
            let poll_ari = self.current.is_some()
                && self.shared.ari.load(Ordering::Relaxed) != ARI_NO
                && ari_poll_at < due;
            let wake = if poll_ari { ari_poll_at } else { due };
            if !sleep_until(wake, &self.cancel).await {
                return;
            }
            if poll_ari {
                ari_poll_at = self.poll_ari(&mut ari).await;
                continue;
            }
            if self.attempt(&mut status, &status_path).await {
                unit = unit_random();
                ari = None;
                ari_poll_at = SystemTime::now();
            }
        }
    }

    /// Refreshes the ARI window; returns when to poll next.
    async fn poll_ari(&self, ari: &mut Option<AriWindow>) -> SystemTime {
        let Some(current) = &self.current else {
            return SystemTime::now() + ARI_RETRY;
        };
        match self.shared.renewal_info(current).await {
            Ok(Some((window, poll))) => {
                *ari = Some(window);
                tracing::debug!(name = %self.name, start = %fmt_time(window.start), end = %fmt_time(window.end), "ARI renewal window");
                SystemTime::now()
                    + poll.clamp(Duration::from_secs(3600), Duration::from_secs(24 * 3600))
            }
            Ok(None) => SystemTime::now() + ARI_RETRY,
            Err(e) => {
                // Only a hint: the lifetime-based schedule still applies.
                tracing::debug!(name = %self.name, error = %e, "no renewal information");
                SystemTime::now() + ARI_RETRY
            }
        }
    }

    /// One attempt; true if a new certificate is now served.
    async fn attempt(&mut self, status: &mut NameStatus, status_path: &Path) -> bool {
        let name = self.name.clone();
        let replaces = match self.shared.ari.load(Ordering::Relaxed) {
            ARI_YES => self
                .current
                .as_ref()
                .and_then(|c| c.key.cert.first())
                .and_then(|leaf| CertificateIdentifier::try_from(leaf).ok())
                .map(CertificateIdentifier::into_owned),
            _ => None,
        };
        tracing::info!(name = %name, renewal = self.current.is_some(), "obtaining a certificate");
        let started = std::time::Instant::now();
        let result = tokio::select! {
            _ = self.cancel.cancelled() => return false,
            result = tokio::time::timeout(ATTEMPT_TIMEOUT, self.shared.obtain(&name, &self.challenges, replaces)) => result,
        };
        let result = match result {
            Ok(result) => result,
            Err(_) => Err(AcmeError::Timeout {
                name: name.clone(),
                secs: ATTEMPT_TIMEOUT.as_secs(),
            }),
        };
        let result = result.and_then(|issued| {
            let label = self.shared.store.cert_path(&name);
            let stored = StoredCert::from_pem(
                issued.chain_pem.as_bytes(),
                issued.key_pem.as_bytes(),
                &label,
            )?;
            Ok((issued, stored))
        });
        let now = SystemTime::now();
        match result {
            Ok((issued, stored)) => {
                // Serve first: a full disk must not keep a valid certificate off the wire.
                self.shared.resolver.set(&name, stored.key.clone());
                if let Err(e) = self.shared.store.save(
                    &name,
                    issued.chain_pem.as_bytes(),
                    issued.key_pem.as_bytes(),
                ) {
                    tracing::error!(name = %name, error = %e, "serving the new certificate, but storing it failed; it will be obtained again after a restart");
                }
                tracing::info!(name = %name, not_after = %fmt_time(stored.info.not_after), elapsed_ms = started.elapsed().as_millis() as u64, "certificate obtained");
                let _ = self.shared.events.send(CertEvent::Obtained {
                    name: name.clone(),
                    not_after: stored.info.not_after,
                });
                self.current = Some(stored);
                status.succeeded(now);
                if let Err(e) = status.save(status_path) {
                    tracing::warn!(name = %name, error = %e, "could not record success");
                }
                true
            }
            Err(error) => {
                let next = schedule::next_retry(
                    status.failures.saturating_add(1),
                    failure_kind(&error),
                    now,
                    unit_random(),
                );
                let text = error.to_string();
                let serving = self
                    .current
                    .as_ref()
                    .filter(|c| c.info.is_valid_at(now))
                    .map(|c| fmt_time(c.info.not_after));
                tracing::warn!(
                    name = %name,
                    error = %text,
                    next_attempt = %fmt_time(next),
                    still_serving_until = serving.as_deref().unwrap_or("-"),
                    "could not obtain a certificate"
                );
                status.failed(text.clone(), now, next);
                if let Err(e) = status.save(status_path) {
                    tracing::warn!(name = %name, error = %e, "could not record the failure");
                }
                let _ = self.shared.events.send(CertEvent::Failed {
                    name,
                    error: text,
                    next_attempt: next,
                });
                false
            }
        }
    }
}

/// Re-issues internal leaves at half their lifetime.
async fn renew_internal(
    shared: Arc<Shared>,
    mut leaves: Vec<(Slot, InternalLeaf)>,
    cancel: CancellationToken,
) {
    loop {
        let Some(due) = leaves
            .iter()
            .map(|(_, leaf)| schedule::renewal_due(leaf.validity))
            .min()
        else {
            return;
        };
        if !sleep_until(due, &cancel).await {
            return;
        }
        let now = SystemTime::now();
        let ca = match shared.internal_ca() {
            Ok(ca) => ca,
            Err(e) => {
                tracing::error!(error = %e, "internal CA unavailable; retrying in a minute");
                if !sleep_until(now + Duration::from_secs(60), &cancel).await {
                    return;
                }
                continue;
            }
        };
        for (slot, leaf) in leaves.iter_mut() {
            if schedule::renewal_due(leaf.validity) > now {
                continue;
            }
            match ca.issue(&leaf.names, now, LEAF_LIFETIME) {
                Ok(key) => {
                    let key = Arc::new(key);
                    leaf.validity = validity_of(&key).unwrap_or(Validity {
                        not_before: now,
                        not_after: now + LEAF_LIFETIME,
                    });
                    shared.serve(slot, Some(key));
                    tracing::debug!(names = ?leaf.names, "re-issued internal certificate");
                }
                Err(e) => {
                    tracing::error!(names = ?leaf.names, error = %e, "re-issuing internal certificate failed");
                    leaf.validity.not_after = now + Duration::from_secs(120);
                    leaf.validity.not_before = now;
                }
            }
        }
    }
}

/// How scheduling treats a failed attempt: rate limits wait longer.
fn failure_kind(error: &AcmeError) -> FailureKind {
    if error.is_rate_limited() {
        FailureKind::RateLimited {
            retry_after: error.retry_after(),
        }
    } else {
        FailureKind::Other
    }
}

fn stored_validity(cert: &StoredCert) -> Validity {
    Validity {
        not_before: cert.info.not_before,
        not_after: cert.info.not_after,
    }
}

fn validity_of(key: &rustls::sign::CertifiedKey) -> Option<Validity> {
    let info = CertInfo::parse(key.cert.first()?, "internal leaf").ok()?;
    Some(Validity {
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

/// Sleeps until the wall-clock `deadline`; false if cancelled first.
async fn sleep_until(deadline: SystemTime, cancel: &CancellationToken) -> bool {
    loop {
        let Ok(left) = deadline.duration_since(SystemTime::now()) else {
            return !cancel.is_cancelled();
        };
        if left.is_zero() {
            return !cancel.is_cancelled();
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
        }
    }
}

/// A uniform random number in `[0, 1)` for jitter.
fn unit_random() -> f64 {
    f64::from(random_u32()) / (f64::from(u32::MAX) + 1.0)
}

/// RFC 3339 UTC, second precision, for logs.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
