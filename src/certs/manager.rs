//! The certificate manager: gets every certificate a config needs and keeps it fresh.
//!
//! Start-up never waits for the network. [`CertManager::new`] serves what is
//! already there at once (stored ACME certificates, certificate files, internal
//! leaves); [`CertManager::start`] then spawns one task per ACME name that obtains
//! missing certificates and renews existing ones in the background
//! (`acme_task`), plus one task that re-issues internal leaves
//! (`internal_task`). Host-less `tls internal` sites get their leaves on demand
//! during the handshake instead (`tls::OnDemand`, configured here).
//!
//! A new config is applied in two steps, like a reload: [`prepare`] does
//! everything that can fail (reading certificate files, loading the internal CA,
//! signing leaves) without serving anything, then [`commit`] swaps it all in and
//! cannot fail.
//!
//! [`prepare`]: CertManager::prepare
//! [`commit`]: CertManager::commit

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acme_task::AcmeTask;
use super::challenges::{Responders, SharedChallenges};
use super::internal_task::{leaf_validity, renew_internal};
use super::plan::{plan, CertSource, Fallback, Plan};
use super::report::{local_row, CertTable, Progress};
use super::schedule::Validity;
use super::shared::{CertEvent, Shared, Slot};
use super::{
    load_cert_files, CertError, CertInfo, CertStore, InternalCa, StoredCert, LEAF_LIFETIME,
};
use crate::acme::{issuer_id, Acme, CaSettings, Http01Tokens};
use crate::config::{AcmeChallenge, Config};
use crate::metrics::Metrics;
use crate::state_file::create_private_dir;
use crate::storage;
use crate::tls::{CertResolver, ChallengeCerts, LeafSigner, OnDemandPort};

/// What is running for the current plan.
#[derive(Default)]
struct Running {
    started: bool,
    acme: HashMap<String, Worker>,
    internal: HashMap<Slot, InternalLeaf>,
    internal_task: Option<CancellationToken>,
    /// Every name of the plan with its source, in config order.
    names: Vec<(String, CertSource)>,
}

struct Worker {
    challenges: Vec<AcmeChallenge>,
    cancel: CancellationToken,
    /// The certificate loaded from disk, handed to the task when it starts.
    initial: Option<StoredCert>,
}

/// An internal leaf being served, and what its renewal needs.
#[derive(Clone)]
pub(super) struct InternalLeaf {
    pub names: Vec<String>,
    pub validity: Validity,
}

/// Everything a plan needs that can fail, made before anything is served.
struct Prepared {
    plan: Plan,
    now: SystemTime,
    /// Certificates read from `tls "cert" "key"` files.
    files: Vec<(Slot, Arc<CertifiedKey>)>,
    /// Internal leaves for slots that are new or whose names changed.
    leaves: Vec<(Slot, Vec<String>, Arc<CertifiedKey>)>,
    /// ACME names and their challenge types, in config order.
    acme: Vec<(String, Vec<AcmeChallenge>)>,
    /// The internal CA, when internal leaves or on-demand issuance need it.
    ca: Option<Arc<InternalCa>>,
}

/// Obtains, stores, serves and renews every certificate of a config.
pub struct CertManager {
    shared: Arc<Shared>,
    running: Mutex<Running>,
    /// Answers to challenges other instances started (cluster only).
    shared_challenges: Option<Arc<SharedChallenges>>,
}

impl std::fmt::Debug for CertManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertManager")
            .field("state_dir", &self.shared.state_dir)
            .field("ca", &self.shared.acme.directory())
            .finish_non_exhaustive()
    }
}

impl CertManager {
    /// Prepares certificates for `config` and serves what is available now:
    /// stored ACME certificates (if still valid), `tls "cert" "key"` files and
    /// internal-CA leaves. Nothing here touches the network. ACME challenge
    /// answers will be published in `tls_alpn` and `tokens`.
    ///
    /// Fails if the state dir cannot be created, a certificate file is unusable, or
    /// the internal CA cannot be loaded: those are configuration problems the
    /// operator must see at start-up.
    ///
    /// With shared storage, use [`open`](Self::open): `new` cannot fetch the
    /// cluster's internal CA, so it fails when a site needs it and this
    /// instance has no local copy yet.
    pub fn new(
        config: &Config,
        resolver: Arc<CertResolver>,
        tls_alpn: Arc<ChallengeCerts>,
        tokens: Arc<Http01Tokens>,
    ) -> Result<Self, CertError> {
        let manager = Self::unapplied(config, resolver, tls_alpn, tokens)?;
        manager.apply(&plan(config))?;
        Ok(manager)
    }

    /// [`new`](Self::new), after making this instance's copy of the internal
    /// CA the one in shared storage (`shared_ca`), when a site needs it.
    /// Waits for shared storage for a few seconds at most.
    pub async fn open(
        config: &Config,
        resolver: Arc<CertResolver>,
        tls_alpn: Arc<ChallengeCerts>,
        tokens: Arc<Http01Tokens>,
    ) -> Result<Self, CertError> {
        let manager = Self::unapplied(config, resolver, tls_alpn, tokens)?;
        let plan = plan(config);
        manager.shared.sync_internal_ca(&plan).await?;
        manager.apply(&plan)?;
        Ok(manager)
    }

    /// The first, asynchronous step of [`update`](Self::update): fetches the
    /// cluster's internal CA if the new config is the first to need it.
    pub(crate) async fn prepare_update(&self, config: &Config) -> Result<(), CertError> {
        self.shared.sync_internal_ca(&plan(config)).await
    }

    /// The manager with nothing served yet.
    fn unapplied(
        config: &Config,
        resolver: Arc<CertResolver>,
        tls_alpn: Arc<ChallengeCerts>,
        tokens: Arc<Http01Tokens>,
    ) -> Result<Self, CertError> {
        let options = &config.options;
        create_private_dir(&options.state_dir)?;
        let settings = CaSettings {
            directory: options.acme_ca.clone(),
            root: options.acme_ca_root.clone(),
            email: options.email.clone(),
            profile: options.acme_profile.clone(),
        };
        let storage = storage::open(&options.storage, &options.state_dir)
            .map_err(|e| CertError::Storage(e.to_string()))?;
        let shared_challenges = storage.is_shared().then(|| {
            let lookup = Arc::new(SharedChallenges::new(storage.clone()));
            tls_alpn.set_fallback(lookup.clone());
            lookup
        });
        let (events, _) = broadcast::channel(64);
        let issuer = issuer_id(&settings.directory);
        let shared = Arc::new(Shared {
            state_dir: options.state_dir.clone(),
            store: CertStore::new(&options.state_dir, &issuer),
            issuer,
            acme: Acme::new(
                storage.clone(),
                settings,
                Arc::new(Responders {
                    tokens,
                    tls_alpn,
                    storage: storage.clone(),
                }),
            ),
            storage,
            wanted: Mutex::new(HashSet::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            resolver,
            events,
            internal_ca: Mutex::new(None),
            metrics: OnceLock::new(),
            progress: Progress::default(),
        });
        Ok(CertManager {
            shared,
            running: Mutex::new(Running::default()),
            shared_challenges,
        })
    }

    /// Spawns the background tasks. Must be called inside a Tokio runtime.
    pub fn start(&self) {
        let mut running = self.lock();
        if running.started {
            return;
        }
        running.started = true;
        if let Some(changes) = self.shared.storage.changes() {
            self.shared.tasks.spawn(super::cluster::follow(
                self.shared.clone(),
                changes,
                self.shared.shutdown.child_token(),
            ));
        }
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
    pub fn update(&self, config: &Config) -> Result<(), CertError> {
        self.apply(&plan(config))
    }

    /// A stream of [`CertEvent`]s from now on.
    pub fn events(&self) -> broadcast::Receiver<CertEvent> {
        self.shared.events.subscribe()
    }

    /// Reports the served certificates to `metrics` from now on
    /// (`bellhop_certificate_not_after_seconds`); a second call is ignored.
    pub(crate) fn report_to(&self, metrics: Arc<Metrics>) {
        if self.shared.metrics.set(metrics).is_ok() {
            self.shared.report_served();
        }
    }

    /// The certificate table (admin `GET /certs`): every name of the config
    /// with what is served for it and, for ACME names, what their tasks plan.
    pub fn table(&self) -> CertTable {
        let names = self.lock().names.clone();
        let certificates = names
            .iter()
            .map(|(name, source)| {
                let served = self
                    .shared
                    .resolver
                    .get(name)
                    .and_then(|key| CertInfo::parse(key.cert.first()?, name).ok());
                match source {
                    CertSource::Acme { .. } => {
                        self.shared.progress.acme_row(name, source, served.as_ref())
                    }
                    _ => local_row(name, source, served.as_ref()),
                }
            })
            .collect();
        CertTable { certificates }
    }

    /// The store holding this CA's certificates (paths for docs, tools and tests).
    pub fn store(&self) -> &CertStore {
        &self.shared.store
    }

    /// Challenge answers other instances published, for the HTTP-01 listener;
    /// `None` unless the storage is shared.
    pub(crate) fn shared_challenges(&self) -> Option<&Arc<SharedChallenges>> {
        self.shared_challenges.as_ref()
    }

    /// Stops every background task. Certificates keep being served.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Waits until every background task has ended (after
    /// [`shutdown`](Self::shutdown): a task ends at its next wait, or when
    /// the order it is placing is cancelled).
    pub async fn stopped(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prepares `plan`, then commits it; on error nothing has changed.
    fn apply(&self, plan: &Plan) -> Result<(), CertError> {
        let mut running = self.lock();
        let prepared = self.prepare(plan, &running)?;
        self.commit(&mut running, prepared);
        Ok(())
    }

    /// The fallible half of [`apply`](Self::apply): loads or makes every
    /// certificate that doesn't need the network. Nothing is served yet, so an
    /// error leaves the running state intact. Internal leaves whose names did
    /// not change are kept, not re-issued.
    fn prepare(&self, plan: &Plan, running: &Running) -> Result<Prepared, CertError> {
        for (name, reason) in &plan.unsupported {
            tracing::error!(name = %name, "no certificate: {reason}");
        }
        let now = SystemTime::now();
        let mut files = Vec::new();
        let mut internal: Vec<(Slot, Vec<String>)> = Vec::new();
        let mut acme = Vec::new();
        for (name, source) in &plan.names {
            let slot = Slot::Name(name.clone());
            match source {
                CertSource::Files { cert, key } => {
                    files.push((slot, Arc::new(load_cert_files(cert, key)?)))
                }
                CertSource::Internal => internal.push((slot, vec![name.clone()])),
                CertSource::Acme { challenges } => acme.push((name.clone(), challenges.clone())),
            }
        }
        for (slot, fallback) in [(Slot::NoSni, &plan.no_sni), (Slot::Default, &plan.default)] {
            match fallback {
                Some(Fallback::Files { cert, key }) => {
                    files.push((slot, Arc::new(load_cert_files(cert, key)?)))
                }
                Some(Fallback::Internal(names)) => internal.push((slot, names.clone())),
                None => {}
            }
        }
        let ca = if internal.is_empty() && plan.on_demand.is_empty() {
            None
        } else {
            Some(self.shared.internal_ca()?)
        };
        let mut leaves = Vec::new();
        if let Some(ca) = &ca {
            for (slot, names) in internal {
                if running
                    .internal
                    .get(&slot)
                    .is_some_and(|l| l.names == names)
                {
                    continue;
                }
                let key = ca.issue(&names, now, LEAF_LIFETIME)?;
                leaves.push((slot, names, Arc::new(key)));
            }
        }
        Ok(Prepared {
            plan: plan.clone(),
            now,
            files,
            leaves,
            acme,
            ca,
        })
    }

    /// The infallible half of [`apply`](Self::apply): serves what `prepared`
    /// holds, stops serving what the plan no longer names, and starts or stops
    /// the background tasks to match.
    fn commit(&self, running: &mut Running, prepared: Prepared) {
        let Prepared {
            plan,
            now,
            files,
            leaves,
            acme,
            ca,
        } = prepared;
        self.commit_on_demand(&plan, ca);
        self.commit_local(running, &plan, files, leaves, now);
        running.names = plan.names.clone();
        self.commit_acme(running, acme, now);
        if running.started {
            self.respawn_internal_task(running);
        }
        self.shared.report_served();
    }

    /// Turns on-demand issuance on for exactly the plan's ports.
    fn commit_on_demand(&self, plan: &Plan, ca: Option<Arc<InternalCa>>) {
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
        let signer = ca
            .filter(|_| !plan.on_demand.is_empty())
            .map(|ca| ca as Arc<dyn LeafSigner>);
        self.shared
            .resolver
            .on_demand()
            .configure(on_demand, signer);
    }

    /// Serves file certificates and internal leaves; drops names and fallbacks
    /// the plan no longer has.
    fn commit_local(
        &self,
        running: &mut Running,
        plan: &Plan,
        files: Vec<(Slot, Arc<CertifiedKey>)>,
        leaves: Vec<(Slot, Vec<String>, Arc<CertifiedKey>)>,
        now: SystemTime,
    ) {
        let wanted_names: Vec<&str> = plan.names.iter().map(|(n, _)| n.as_str()).collect();
        self.shared.resolver.retain(|n| wanted_names.contains(&n));
        for (slot, configured) in [
            (Slot::NoSni, plan.no_sni.is_some()),
            (Slot::Default, plan.default.is_some()),
        ] {
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
        for (slot, names, key) in leaves {
            let validity = leaf_validity(&key, now);
            self.shared.serve(&slot, Some(key));
            running
                .internal
                .insert(slot, InternalLeaf { names, validity });
        }
    }

    /// Stops workers for names that went away or changed challenges, and
    /// prepares workers for new names (spawned now if already started).
    fn commit_acme(
        &self,
        running: &mut Running,
        wanted: Vec<(String, Vec<AcmeChallenge>)>,
        now: SystemTime,
    ) {
        *self
            .shared
            .wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            wanted.iter().map(|(n, _)| n.clone()).collect();
        running.acme.retain(|name, worker| {
            let keep = wanted
                .iter()
                .any(|(n, c)| n == name && *c == worker.challenges);
            if !keep {
                worker.cancel.cancel();
                self.shared.forget(name);
            }
            keep
        });
        for (name, challenges) in wanted {
            if running.acme.contains_key(&name) {
                continue;
            }
            let initial = self.shared.load_stored(&name, now);
            running.acme.insert(
                name.clone(),
                Worker {
                    challenges,
                    cancel: self.shared.shutdown.child_token(),
                    initial,
                },
            );
            if running.started {
                self.spawn_worker(running, &name);
            }
        }
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
        self.shared.tasks.spawn(task.run());
    }

    fn respawn_internal_task(&self, running: &mut Running) {
        if let Some(old) = running.internal_task.take() {
            old.cancel();
        }
        if running.internal.is_empty() {
            return;
        }
        let cancel = self.shared.shutdown.child_token();
        running.internal_task = Some(cancel.clone());
        let leaves: Vec<(Slot, InternalLeaf)> = running
            .internal
            .iter()
            .map(|(s, l)| (s.clone(), l.clone()))
            .collect();
        self.shared
            .tasks
            .spawn(renew_internal(self.shared.clone(), leaves, cancel));
    }
}

impl Drop for CertManager {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
