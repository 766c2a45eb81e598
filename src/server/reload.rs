//! Config reload: a new router, certificates and listener set swapped in while
//! every open connection, in-flight request and upgraded tunnel keeps going.
//!
//! ```text
//! ReloadHandle::reload(config)
//!   1. Router::new            ─┐ (rate-limit buckets of unchanged limits carried over)
//!   2. listener::plan + diff   │ fallible: on any error nothing has changed
//!   3. bind added ports        │ (one socket per worker each)
//!   4. Https::update          ─┘
//!   5. swap the router, start accepting on added ports (on every worker),
//!      stop accepting on removed ones (every worker's loop for that port
//!      shares one stop token; their connections finish normally)
//! ```
//!
//! Requests and tunnels hold the router snapshot they started with, so a
//! swap never cuts them. Every accept loop has its own stop token, a child of
//! the server's `accepting` token (itself a child of shutdown, cancelled
//! alone when an upgrade hands the listeners over), so one port can stop
//! accepting without the others.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{bail, Context as _};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::handover::{Adopted, Offered};
use super::listener::{self, ListenerSpec};
use super::Shared;
use crate::config::{Config, Options, Scheme};
use crate::router::Router;

/// The listening sockets of a server, changed by reloads.
#[derive(Debug)]
pub(super) struct Listeners {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The worker runtimes, once `Server::run` has started the accept loops
    /// (empty before): each listener gets one accept loop on each.
    workers: Vec<Handle>,
    /// Sockets bound per listener: one per worker.
    per_port: usize,
    /// One entry per configured port, in plan order.
    entries: Vec<Entry>,
    /// Accept loops started so far (per port, one per worker), awaited on shutdown.
    loops: Vec<JoinHandle<()>>,
    /// The options the server runs with (those only read at start-up).
    options: Options,
    /// A copy of the admin listener's descriptor, for an upgrade to hand over.
    admin: Option<OwnedFd>,
}

#[derive(Debug)]
struct Entry {
    spec: ListenerSpec,
    /// The bound address (the real port when `spec.port` is 0).
    addr: Option<SocketAddr>,
    /// Stops this accept loop only.
    stop: CancellationToken,
    /// The sockets (one per worker) until `run` starts their accept loops.
    pending: Option<Vec<std::net::TcpListener>>,
    /// Copies of the sockets' descriptors, for an upgrade to hand over
    /// (the accept loops own the sockets themselves).
    descriptors: Vec<OwnedFd>,
}

impl Listeners {
    /// Binds every listener of `specs`, `per_port` sockets each (one per
    /// worker), taking the sockets an upgrade handed over where they fit;
    /// fails on the first that cannot bind. Every accept loop stops when
    /// `accepting` is cancelled.
    pub(super) fn bind(
        specs: Vec<ListenerSpec>,
        per_port: usize,
        options: Options,
        accepting: &CancellationToken,
        mut adopted: Option<&mut Adopted>,
    ) -> anyhow::Result<Listeners> {
        let mut entries = Vec::with_capacity(specs.len());
        for spec in specs {
            let handed = adopted.as_deref_mut().and_then(|a| a.take(&spec));
            entries.push(Entry::bind(spec, per_port, accepting, handed)?);
        }
        Ok(Listeners {
            inner: Mutex::new(Inner {
                workers: Vec::new(),
                per_port,
                entries,
                loops: Vec::new(),
                options,
                admin: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bound address of every listener, in plan order.
    pub(super) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.lock().entries.iter().filter_map(|e| e.addr).collect()
    }

    /// Starts the accept loops of every listener bound so far, one on each
    /// worker runtime of `workers`; later reloads start theirs at once.
    pub(super) fn start(&self, shared: &Arc<Shared>, workers: &[Handle]) {
        let mut inner = self.lock();
        inner.workers = workers.to_vec();
        let mut loops = Vec::new();
        for entry in &mut inner.entries {
            loops.extend(entry.start(shared, workers));
        }
        inner.loops.extend(loops);
    }

    /// Whether every configured listener has its accept loop running (the
    /// admin `/health`): false before `run` and once shutdown has begun.
    pub(super) fn all_serving(&self) -> bool {
        let inner = self.lock();
        !inner.workers.is_empty()
            && inner
                .entries
                .iter()
                .all(|e| e.pending.is_none() && !e.stop.is_cancelled())
    }

    /// Keeps a copy of the admin listener's descriptor for an upgrade.
    pub(super) fn set_admin(&self, admin: &impl AsFd) -> std::io::Result<()> {
        self.lock().admin = Some(admin.as_fd().try_clone_to_owned()?);
        Ok(())
    }

    /// Copies of every listening socket's descriptor, for an upgrade.
    pub(super) fn offer(&self) -> std::io::Result<Offered> {
        let inner = self.lock();
        let mut offered = Offered::default();
        for entry in &inner.entries {
            let fds = entry
                .descriptors
                .iter()
                .map(|fd| fd.try_clone())
                .collect::<std::io::Result<_>>()?;
            offered.listeners.push((entry.spec.port, fds));
        }
        offered.admin = inner.admin.as_ref().map(OwnedFd::try_clone).transpose()?;
        Ok(offered)
    }

    /// Closes the descriptor copies once the accept loops are done (after an
    /// upgrade handed them over, this process holds no listener any more).
    pub(super) fn release(&self) {
        let mut inner = self.lock();
        inner.admin = None;
        for entry in &mut inner.entries {
            entry.descriptors.clear();
        }
    }

    /// The accept loops to await once shutdown has been signalled. Reloads
    /// after shutdown are refused, so no loop starts after this.
    pub(super) fn take_loops(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.lock().loops)
    }
}

impl Entry {
    /// Binds `count` sockets for `spec`, or adopts those `handed` over.
    fn bind(
        spec: ListenerSpec,
        count: usize,
        accepting: &CancellationToken,
        handed: Option<Vec<std::net::TcpListener>>,
    ) -> anyhow::Result<Entry> {
        let sockets = match handed {
            Some(handed) => listener::adopt(&spec, count, handed).with_context(|| {
                format!(
                    "cannot listen on {} beside the handed-over sockets",
                    addresses(&spec)
                )
            })?,
            None => listener::bind(&spec, count)
                .with_context(|| format!("cannot listen on {}", addresses(&spec)))?,
        };
        let descriptors = sockets
            .iter()
            .map(|s| s.as_fd().try_clone_to_owned())
            .collect::<std::io::Result<_>>()
            .context("cannot copy a listening socket's descriptor")?;
        Ok(Entry {
            addr: sockets.first().and_then(|s| s.local_addr().ok()),
            spec,
            stop: accepting.child_token(),
            pending: Some(sockets),
            descriptors,
        })
    }

    /// Spawns one accept loop per worker, each on its own socket, if the
    /// sockets have not been handed out yet.
    fn start(&mut self, shared: &Arc<Shared>, workers: &[Handle]) -> Vec<JoinHandle<()>> {
        if workers.is_empty() {
            return Vec::new();
        }
        let Some(sockets) = self.pending.take() else {
            return Vec::new();
        };
        // Bound with one socket per worker and address (address-major), so
        // socket i goes to worker i % workers.
        for socket in sockets.iter().step_by(workers.len()) {
            if let Ok(addr) = socket.local_addr() {
                tracing::info!(%addr, tls = self.spec.scheme == Scheme::Https, workers = workers.len(), "listening");
            }
        }
        // One socket per worker, unless an upgrade handed over more: then
        // some worker accepts on two, so no queued connection is left behind.
        sockets
            .into_iter()
            .zip(workers.iter().cycle())
            .map(|(socket, worker)| {
                worker.spawn(listener::accept_loop(
                    socket,
                    self.spec.clone(),
                    self.stop.clone(),
                    shared.clone(),
                ))
            })
            .collect()
    }
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Sites in the new config.
    pub sites: usize,
    /// Listeners now accepting that were not before (bound addresses).
    pub listeners_added: Vec<SocketAddr>,
    /// Listeners that stopped accepting (their connections finish normally).
    pub listeners_removed: Vec<SocketAddr>,
    /// Listeners kept as they were.
    pub listeners_kept: usize,
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} site{}, listeners: {} kept",
            self.sites,
            if self.sites == 1 { "" } else { "s" },
            self.listeners_kept
        )?;
        let list = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !self.listeners_added.is_empty() {
            write!(f, ", added {}", list(&self.listeners_added))?;
        }
        if !self.listeners_removed.is_empty() {
            write!(f, ", removed {}", list(&self.listeners_removed))?;
        }
        Ok(())
    }
}

/// Applies a new config to the running server it came from (see the module
/// docs). Cheap to clone; reloads run one at a time.
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) listeners: Arc<Listeners>,
}

impl ReloadHandle {
    /// Swaps in `config`. On error the running config keeps serving unchanged.
    pub async fn reload(&self, config: Config) -> anyhow::Result<ReloadSummary> {
        self.reload_with(|| Ok(config)).await
    }

    /// Reloads with the config `load` reads (the Proxyfile, for SIGHUP), so
    /// that a file that does not load counts as a failed reload too. The
    /// service manager sees `RELOADING=1` first and `READY=1` after, with a
    /// status line that says whether the reload applied.
    pub async fn reload_with(
        &self,
        load: impl FnOnce() -> anyhow::Result<Config>,
    ) -> anyhow::Result<ReloadSummary> {
        let notify = &self.shared.notify;
        notify.reloading();
        let result = match load() {
            Ok(config) => self
                .prepare(&config)
                .await
                .and_then(|()| self.apply(config)),
            Err(e) => Err(e),
        };
        self.shared.metrics.reloaded(result.is_ok());
        // Reading and planning the config ran start-up's code again.
        super::code_pages::release();
        if notify.enabled() {
            let status = self.shared.status_line();
            match &result {
                Ok(_) => notify.ready(&status),
                Err(_) => notify.ready(&format!(
                    "reload failed, still serving the previous config (see the log); {status}"
                )),
            }
        }
        result
    }

    /// Reopens every access-log file (SIGUSR1, after logrotate moved them):
    /// lines from now on go to a new file at the configured path.
    pub fn reopen_logs(&self) {
        self.shared.access_logs.reopen_all();
    }

    /// What must be fetched before [`apply`](Self::apply), which holds the
    /// reload lock and does not wait on the network.
    async fn prepare(&self, config: &Config) -> anyhow::Result<()> {
        match &self.shared.https {
            Some(https) => https.prepare_update(config).await,
            None => Ok(()),
        }
    }

    fn apply(&self, config: Config) -> anyhow::Result<ReloadSummary> {
        // Everything below is synchronous and short (file reads for
        // certificates, bind calls); holding the lock serializes reloads.
        let mut inner = self.listeners.lock();
        let accepting = &self.shared.background.accepting;
        if self.shared.background.shutdown.is_cancelled() {
            bail!("the server is shutting down");
        }
        if accepting.is_cancelled() {
            bail!(
                "this bellhop has handed its listeners to a new process (upgrade) and is draining"
            );
        }

        // 1. Routes, taking over the running router's rate-limit buckets.
        let router = Router::new(
            &config,
            &self.shared.metrics,
            Some(&self.shared.router.load()),
            &self.shared.access_logs,
        )
        .context("cannot build the routes")?;

        // 2. Which listeners stay, go and come.
        let specs = listener::plan(&config);
        for spec in &specs {
            if let Some(old) = inner.entries.iter().find(|e| e.spec.port == spec.port) {
                if old.spec != *spec {
                    bail!(
                        "port {} would change from {} to {}; restart bellhop to apply this",
                        spec.port,
                        describe(&old.spec),
                        describe(spec)
                    );
                }
            }
        }
        let any_tls = specs.iter().any(|s| s.scheme == Scheme::Https);
        if any_tls && self.shared.https.is_none() {
            bail!("the new config serves HTTPS but bellhop started without any HTTPS site; restart bellhop to apply this");
        }

        // 3. Bind added ports; dropping `added` on a later error closes them.
        let mut added = Vec::new();
        for spec in &specs {
            if !inner.entries.iter().any(|e| e.spec.port == spec.port) {
                added.push(Entry::bind(spec.clone(), inner.per_port, accepting, None)?);
            }
        }

        // 4. Certificates, the last fallible step.
        if let Some(https) = &self.shared.https {
            https.update(&config)?;
        }

        // 5. Commit: routes first, so added ports find theirs; then the
        // access-log files are reopened (logrotate may have moved them).
        self.shared.router.store(Arc::new(router));
        self.shared.access_logs.reopen_all();
        warn_restart_only(&inner.options, &config.options);
        let mut removed = Vec::new();
        inner.entries.retain(|e| {
            let keep = specs.iter().any(|s| s.port == e.spec.port);
            if !keep {
                e.stop.cancel();
                removed.extend(e.addr);
            }
            keep
        });
        let listeners_kept = inner.entries.len();
        let listeners_added = added.iter().filter_map(|e| e.addr).collect();
        let workers = inner.workers.clone();
        let mut loops = Vec::new();
        for mut entry in added {
            // Before `run` there are no workers yet; `start` spawns them later.
            loops.extend(entry.start(&self.shared, &workers));
            inner.entries.push(entry);
        }
        inner.loops.retain(|l| !l.is_finished());
        inner.loops.extend(loops);
        // Keep plan order, so `local_addrs` reads like the config.
        inner
            .entries
            .sort_by_key(|e| specs.iter().position(|s| s.port == e.spec.port));
        Ok(ReloadSummary {
            sites: config.sites.len(),
            listeners_added,
            listeners_removed: removed,
            listeners_kept,
        })
    }
}

fn describe(spec: &ListenerSpec) -> String {
    format!(
        "{} on {}",
        match spec.scheme {
            Scheme::Https => "HTTPS",
            Scheme::Http => "HTTP",
        },
        addresses(spec)
    )
}

/// `127.0.0.1:8080 and [::1]:8080`: every address a listener binds.
fn addresses(spec: &ListenerSpec) -> String {
    spec.bind
        .iter()
        .map(|ip| SocketAddr::new(*ip, spec.port).to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Says which changed options a reload cannot apply (the rest of it applies).
fn warn_restart_only(old: &Options, new: &Options) {
    let restart_only = restart_only_changes(old, new);
    if !restart_only.is_empty() {
        tracing::warn!(
            options = %restart_only.join(", "),
            "these options only take effect on restart"
        );
    }
}

/// Options the server reads once at start-up that differ in `new`.
fn restart_only_changes(old: &Options, new: &Options) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("email", old.email != new.email);
    check("acme-ca", old.acme_ca != new.acme_ca);
    check("acme-ca-root", old.acme_ca_root != new.acme_ca_root);
    check("profile", old.acme_profile != new.acme_profile);
    check("state-dir", old.state_dir != new.state_dir);
    check("admin", old.admin != new.admin);
    check("grace-period", old.grace_period != new.grace_period);
    check(
        "client-header-timeout",
        old.client_header_timeout != new.client_header_timeout,
    );
    check("workers", old.workers != new.workers);
    check("storage", old.storage != new.storage);
    check(
        "max-connections",
        old.max_connections != new.max_connections,
    );
    check(
        "max-connections-per-ip",
        old.max_connections_per_ip != new.max_connections_per_ip,
    );
    check(
        "client-body-timeout",
        old.client_body_timeout != new.client_body_timeout,
    );
    check(
        "client-write-timeout",
        old.client_write_timeout != new.client_write_timeout,
    );
    changed
}
