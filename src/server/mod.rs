//! Listeners, connections and the lifecycle of the whole server.
//!
//! ```text
//! Server::bind(config) ─► plan + bind listeners, build the router
//! Server::run()        ─► N worker threads (worker.rs), one accept loop per
//!                         listener on each ─► Accepted { peer, port, scheme }
//!                         ─► connection task on that worker ─► (TLS) ─► hyper
//!                         ─► service::handle: the request phases (challenge,
//!                         site, route, admit, handle, filter, log)
//! ReloadHandle         ─► new router, certificates and listener set; open
//!                         connections and tunnels keep their snapshot
//! ShutdownHandle       ─► stop accepting, finish in-flight requests within the
//!                         grace period, close upgraded tunnels (a WebSocket
//!                         with Close 1001 to both ends: proxy/tunnel.rs), return
//! UpgradeHandle        ─► start the new binary with the listening sockets
//!                         handed over (handover.rs); once it serves, stop
//!                         accepting and drain: open requests and tunnels run
//!                         until they end or `drain-timeout`, then return
//! ```

mod access_line;
mod access_log;
mod admin;
mod answers;
mod boxed;
mod caps;
mod code_pages;
mod connection;
mod date;
mod h1;
mod h2;
mod handover;
mod https;
mod launcher;
mod linger;
mod listener;
mod malformed;
mod notify;
mod reload;
mod service;
mod traffic;
mod trim;
mod upgrade;
mod waiting_room;
mod watchdog;
mod worker;
mod write_deadline;

pub(crate) use h1::H1Body;
pub(crate) use h2::H2Body;
pub use handover::Handover;
pub use launcher::run_upgrade_launcher;
pub use reload::{ReloadHandle, ReloadSummary};
pub use upgrade::{signal_process, UpgradeHandle};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::config::Config;
use crate::limit::ConnCaps;
use crate::logging::AccessLogFiles;
use crate::metrics::Metrics;
use crate::proxy::Tunnel;
use crate::router::Router;
use access_line::{Moved, RequestLog};
use notify::Notifier;
use reload::Listeners;

/// Request head (request line + headers, final CRLF included) size limit;
/// one byte more gets 431. hyper's `max_header_size` checks the parsed head
/// exactly (its read buffer, `max_buf_size`, can overshoot by a read).
/// (hyper also caps a head at 100 header lines, and a target at 65,534
/// bytes: 414.)
const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// State shared by every connection of the server. Its fields are private to
/// `server` (submodules see them): nothing outside reaches into a running server.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The current router; swapped as a whole on reload.
    router: ArcSwap<Router>,
    /// Tasks and shutdown signal for connections and tunnels.
    background: Background,
    /// HTTP/1.1 connection settings (timeouts, limits).
    http1: http1::Builder,
    /// A connection with no request in flight this long is closed (h2: a
    /// GOAWAY first; HTTP/1.1: hyper's header-read timeout, or parked).
    idle_timeout: Duration,
    /// TLS and certificates; `None` when no site is served over HTTPS.
    https: Option<https::Https>,
    /// Counters and gauges for the admin listener; kept across reloads.
    metrics: Arc<Metrics>,
    /// `max-connections` and `max-connections-per-ip`, across all workers.
    caps: Arc<ConnCaps>,
    /// `client-body-timeout`: longest pause inside a request body.
    client_body_timeout: Duration,
    /// `client-write-timeout`: longest blocked write to a client.
    client_write_timeout: Duration,
    /// The service manager (systemd `Type=notify`), told about readiness,
    /// reloads, shutdown and status.
    notify: Notifier,
    /// The sites' access-log files, reopened on SIGUSR1 and reload.
    access_logs: AccessLogFiles,
    /// After an upgrade, the old process while it drains (0: none), named in
    /// the status line until it exits.
    draining_predecessor: AtomicU32,
}

/// Where the server keeps the tasks that outlive the code that started them
/// (connections, upgraded tunnels), so shutdown can signal them and wait.
#[derive(Debug)]
struct Background {
    /// Every connection and tunnel task is spawned on this tracker.
    tasks: TaskTracker,
    /// Cancelled when bellhop shuts down.
    shutdown: CancellationToken,
    /// Cancelled when the listeners stop accepting: on shutdown (a child of
    /// it), or alone once an upgrade has handed them to a new process.
    accepting: CancellationToken,
}

impl Shared {
    /// Runs an upgraded tunnel on its own task, where shutdown closes it,
    /// counted in `bellhop_open_websockets` while it runs. The tunnel holds
    /// its connection's context, so the connection keeps its place under
    /// the caps until the socket closes; its access-log line (if any) is
    /// written when it ends, with its lifetime and bytes.
    fn spawn_tunnel(
        &self,
        tunnel: Tunnel,
        conn: Arc<connection::ConnContext>,
        log: Option<Box<RequestLog>>,
    ) {
        let shutdown = self.background.shutdown.clone();
        let open = self.metrics.websocket_opened();
        conn.set_upgraded();
        self.background.tasks.spawn(async move {
            let end = tunnel.run(shutdown).await;
            drop((open, conn));
            if let Some(log) = log {
                log.write(Moved {
                    bytes: end.received,
                    from_client: Some(end.sent),
                    complete: end.closed_cleanly(),
                });
            }
        });
    }

    /// The one-line status for `systemctl status`: sites, certificates and
    /// the next renewal.
    fn status_line(&self) -> String {
        let sites = self.router.load().sites();
        let (certificates, next_renewal) = self
            .https
            .as_ref()
            .map_or((0, None), https::Https::renewal_summary);
        let mut line = notify::status_line(
            sites,
            certificates,
            next_renewal,
            std::time::SystemTime::now(),
        );
        match self.draining_predecessor.load(Ordering::Relaxed) {
            0 => {}
            pid => line.push_str(&format!(
                "; bellhop {pid} (before the upgrade) drains its connections"
            )),
        }
        line
    }
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    listeners: Arc<Listeners>,
    /// The admin listener's socket until `run` serves it.
    admin: Option<tokio::net::TcpListener>,
    shared: Arc<Shared>,
    grace_period: Duration,
    /// How long open connections may run on after an upgrade (`drain-timeout`).
    drain_timeout: Duration,
    /// Worker threads `run` starts; every listener has one socket per worker.
    workers: usize,
    /// When this process was started by an upgrade: the old process, told
    /// once every listener accepts.
    handover: Option<Handover>,
}

/// Starts a graceful shutdown of the server it came from.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Stop accepting, let in-flight requests finish, then `run` returns.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

impl Server {
    /// Builds the router and binds every listener the config needs.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Server::bind_with(config, None).await
    }

    /// [`bind`](Self::bind) for the new process of an upgrade: adopts the
    /// listening sockets the old process handed over (binding only what the
    /// config adds), and tells the old process that it serves once
    /// [`run`](Self::run) accepts, or here why it cannot start.
    pub async fn take_over(config: Config, mut handover: Handover) -> anyhow::Result<Server> {
        match Server::bind_with(config, Some(&mut handover)).await {
            Ok(mut server) => {
                server.handover = Some(handover);
                Ok(server)
            }
            Err(e) => {
                handover.fail(&format!("{e:#}"));
                Err(e)
            }
        }
    }

    async fn bind_with(config: Config, handover: Option<&mut Handover>) -> anyhow::Result<Server> {
        let metrics = Arc::new(Metrics::new());
        let access_logs = AccessLogFiles::default();
        let router = Router::new(&config, &metrics, None, &access_logs)
            .context("cannot build the routes")?;
        let specs = listener::plan(&config);
        // Stored and local certificates are served from the first connection on;
        // ACME starts in `run`, once the listeners can answer validations.
        let https = https::Https::new(&config, &metrics).await?;
        let shutdown = CancellationToken::new();
        let accepting = shutdown.child_token();
        let workers = worker::count(&config.options);
        let mut adopted = handover.map(Handover::sockets);
        let listeners = Listeners::bind(
            specs,
            workers,
            config.options.clone(),
            &accepting,
            adopted.as_deref_mut(),
        )?;
        let admin = config
            .options
            .admin
            .map(|addr| {
                let handed = adopted.as_mut().and_then(|a| a.take_admin(addr));
                admin::bind_or_adopt(addr, handed)
                    .with_context(|| format!("cannot listen on {addr} (the admin listener)"))
            })
            .transpose()?;
        if let Some(admin) = &admin {
            listeners
                .set_admin(admin)
                .context("cannot copy the admin listener's descriptor")?;
        }

        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // Bounds slow request heads and idle keep-alive connections alike.
            .header_read_timeout(config.options.client_header_timeout)
            .max_buf_size(MAX_REQUEST_HEAD)
            .max_header_size(MAX_REQUEST_HEAD)
            .keep_alive(true);

        Ok(Server {
            listeners: Arc::new(listeners),
            admin,
            shared: Arc::new(Shared {
                router: ArcSwap::from_pointee(router),
                background: Background {
                    tasks: TaskTracker::new(),
                    shutdown,
                    accepting,
                },
                http1,
                idle_timeout: config.options.client_header_timeout,
                https,
                caps: caps::connection_caps(&config.options, metrics.refused_connections()),
                metrics,
                client_body_timeout: config.options.client_body_timeout,
                client_write_timeout: config.options.client_write_timeout,
                notify: Notifier::from_env(),
                access_logs,
                draining_predecessor: AtomicU32::new(0),
            }),
            grace_period: config.options.grace_period,
            drain_timeout: config.options.drain_timeout,
            workers,
            handover: None,
        })
    }

    /// The bound address of every listener, in the order of the listener plan
    /// (sites' addresses in config order, then the plain HTTP port if added).
    /// Reloads change this set.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    /// The bound address of the admin listener, if `admin` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that starts graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.background.shutdown.clone())
    }

    /// A handle that starts a new binary with this server's listening
    /// sockets, then drains this server (see [`UpgradeHandle`]).
    pub fn upgrade_handle(&self) -> UpgradeHandle {
        UpgradeHandle::new(self.shared.clone(), self.listeners.clone())
    }

    /// A handle that swaps in a new config while the server runs (also usable
    /// before [`run`](Self::run): the new listeners then start with it).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            shared: self.shared.clone(),
            listeners: self.listeners.clone(),
        }
    }

    /// Serves until shutdown, then waits up to the grace period for in-flight
    /// requests before returning.
    ///
    /// Requests are served on the worker threads this starts; the runtime
    /// that awaits `run` keeps the background work (certificates, ACME, the
    /// admin listener) and returns once every worker thread has ended.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let workers = worker::Workers::spawn(self.workers)
            .await
            .context("cannot start the worker threads")?;
        // Start-up is over but for this function: its code and data need not
        // stay mapped, and every request is served after this.
        code_pages::release();
        self.listeners.start(&self.shared, workers.handles());
        if let Some(admin) = self.admin.take() {
            if let Ok(addr) = admin.local_addr() {
                tracing::info!(%addr, "admin listener: /metrics, /health, /certs");
            }
            tokio::spawn(admin::serve(
                admin,
                self.shared.clone(),
                self.listeners.clone(),
                self.shared.background.accepting.clone(),
            ));
        }

        if let Some(https) = &self.shared.https {
            https.start();
        }
        // Started by an upgrade: READY=1 waits until the old process has
        // handed the main PID over (notify.rs says why).
        let predecessor = match self.handover.take() {
            Some(handover) => handover.ready().await,
            None => None,
        };
        let service_manager = self.tell_service_manager(workers.handles(), predecessor);
        let _trim = AbortOnDropHandle::new(tokio::spawn(trim::give_back(self.shared.caps.clone())));

        let background = &self.shared.background;
        background.accepting.cancelled().await;
        if background.shutdown.is_cancelled() {
            self.shared.notify.stopping();
        } else {
            // Handed over: the watchdog and status are the new process's now.
            drop(service_manager);
        }
        if let Some(https) = &self.shared.https {
            // After an upgrade the new process renews; two would race.
            https.shutdown();
        }
        for accept in self.listeners.take_loops() {
            // An accept loop only ends on shutdown, an upgrade, or when a
            // reload removes its port; a panic there is a bug
            // worth reporting but not worth failing the drain for.
            if let Err(e) = accept.await {
                tracing::error!(error = %e, "accept loop failed");
            }
        }
        self.listeners.release();
        background.tasks.close();
        if !background.shutdown.is_cancelled() {
            self.drain().await;
        }
        let open = background.tasks.len();
        if open > 0 {
            tracing::info!(connections = open, grace_period = ?self.grace_period, "waiting for in-flight requests");
        }
        if tokio::time::timeout(self.grace_period, background.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = background.tasks.len(),
                "grace period over, closing remaining connections"
            );
        }
        workers.join().await;
        if let Some(https) = &self.shared.https {
            // A task cancelled mid-request (an ARI poll) ends when that does;
            // no write to the state directory may follow `run`'s return.
            if tokio::time::timeout(self.grace_period, https.stopped())
                .await
                .is_err()
            {
                tracing::warn!("grace period over, certificate tasks still running");
            }
        }
        // No request can log any more: write out what the files have queued.
        self.shared.access_logs.close_all();
        Ok(())
    }

    /// Once everything serves: `READY=1` with the status line, then the
    /// tasks that keep the service manager informed while `run` runs (the
    /// watchdog pings when `WatchdogSec=` is set, the status line after each
    /// certificate event, and once the `predecessor` of an upgrade has
    /// drained and exited); they stop when the returned handles drop.
    fn tell_service_manager(
        &self,
        workers: &[tokio::runtime::Handle],
        predecessor: Option<handover::Predecessor>,
    ) -> Vec<AbortOnDropHandle<()>> {
        let notify = &self.shared.notify;
        if !notify.enabled() {
            return Vec::new();
        }
        let mut tasks = Vec::new();
        if let Some(predecessor) = predecessor {
            self.shared
                .draining_predecessor
                .store(predecessor.pid, Ordering::Relaxed);
            let shared = self.shared.clone();
            tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
                predecessor.exited().await;
                shared.draining_predecessor.store(0, Ordering::Relaxed);
                shared.notify.status(&shared.status_line());
            })));
        }
        notify.ready(&self.shared.status_line());
        if let Some(interval) = notify::watchdog_interval() {
            let heartbeats = watchdog::Heartbeats::start(workers, interval);
            let ping = watchdog::ping(heartbeats, *notify, interval);
            tasks.push(AbortOnDropHandle::new(tokio::spawn(ping)));
        }
        if let Some(https) = &self.shared.https {
            let mut events = https.events();
            let shared = self.shared.clone();
            tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
                // A lagging receiver only missed events: the status is read afresh.
                while !matches!(
                    events.recv().await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed)
                ) {
                    shared.notify.status(&shared.status_line());
                }
            })));
        }
        tasks
    }

    /// After an upgrade: lets the open connections and tunnels run until
    /// they end, `drain-timeout` passes, or shutdown is asked for; then
    /// shuts down (closing tunnels, as on SIGTERM).
    async fn drain(&self) {
        let background = &self.shared.background;
        tracing::info!(
            connections = background.tasks.len(),
            drain_timeout = ?self.drain_timeout,
            "no longer accepting (the new process serves); draining open connections"
        );
        tokio::select! {
            () = background.tasks.wait() => tracing::info!("drained: every connection has ended"),
            () = tokio::time::sleep(self.drain_timeout) => tracing::warn!(
                remaining = background.tasks.len(),
                "drain-timeout over, closing the remaining connections"
            ),
            () = background.shutdown.cancelled() => {}
        }
        background.shutdown.cancel();
    }
}
