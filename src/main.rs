//! The `bellhop` command line. Everything else lives in the library.

#![forbid(unsafe_code)]

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;

use bellhop::config::{
    self, Config, Handler, Options, PathPattern, ProxyConfig, Route, Site, TlsMode,
};
use bellhop::{init_logging, LogFormat};
use bellhop::{read_reload_status, ReloadOutcome, ReloadStatus};
use bellhop::{Handover, ReloadHandle, Server};

use cli::pid_file::{self, PidFile};

/// Where `bellhop run` looks for its config when `--config` is not given.
const DEFAULT_CONFIG_PATHS: [&str; 2] = ["Proxyfile", "/etc/bellhop/Proxyfile"];

/// A small, fast, auto-HTTPS reverse proxy.
#[derive(Debug, Parser)]
#[command(name = "bellhop", version, about, disable_version_flag = true)]
struct Cli {
    /// error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info")]
    log_level: LevelFilter,
    /// text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sites of a Proxyfile.
    Run {
        /// Config file [default: ./Proxyfile, then /etc/bellhop/Proxyfile].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write the process id here once listening (for `bellhop reload`
        /// and `bellhop upgrade`); removed on exit.
        #[arg(long)]
        pid_file: Option<PathBuf>,
    },
    /// Replace the running bellhop with the binary on disk now, without
    /// dropping a connection (SIGUSR2): the new process takes over the
    /// listening sockets and reads the Proxyfile afresh; the old one stops
    /// accepting, finishes its open requests and WebSockets (up to
    /// `drain-timeout`) and exits. Exits 0 once the new process serves, 1
    /// with the reason if it could not start (the old one serves on).
    Upgrade {
        /// The `--pid-file` the running bellhop was started with.
        #[arg(long, default_value = pid_file::DEFAULT)]
        pid_file: PathBuf,
    },
    /// Check a Proxyfile, tell the bellhop that runs it to reload it (SIGHUP),
    /// and wait for the outcome: exit 0 when applied, 1 with the reason when
    /// not (the previous config then keeps serving).
    Reload {
        /// Config file [default: ./Proxyfile, then /etc/bellhop/Proxyfile];
        /// the same file the running bellhop was started with.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The `--pid-file` the running bellhop was started with.
        #[arg(long)]
        pid_file: PathBuf,
    },
    /// Check a Proxyfile and exit: 0 when valid, 1 with diagnostics otherwise.
    Validate {
        /// Config file [default: ./Proxyfile, then /etc/bellhop/Proxyfile].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Rewrite a Proxyfile in canonical formatting (comments kept).
    Fmt {
        /// Only check; exit 1 if the file is not formatted.
        #[arg(long)]
        check: bool,
        /// File to format [default: ./Proxyfile].
        path: Option<PathBuf>,
    },
    /// Forward one address to one upstream, no config file needed.
    Proxy {
        /// Site address, e.g. `app.example.com` or `http://127.0.0.1:8080`.
        #[arg(long)]
        from: String,
        /// Upstream, e.g. `localhost:8000`, `8000` or `unix:/run/app.sock`.
        #[arg(long)]
        to: String,
    },
    /// Print the internal CA's root certificate (path, how to trust it, PEM),
    /// creating the CA if it does not exist yet.
    CaRoot {
        /// Config file whose `state-dir` to use [default: ./Proxyfile, then
        /// /etc/bellhop/Proxyfile, else the default state dir].
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show every managed certificate: source, issuer, validity, next
    /// renewal, ARI window and the last CA error. Asks the running bellhop
    /// (admin listener) when the config has `admin`, else reads the state
    /// directory; says which.
    Certs {
        /// Config file [default: ./Proxyfile, then /etc/bellhop/Proxyfile].
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an argon2id hash of a password, for `basic-auth "user" "HASH"`.
    /// On a terminal the password is asked for twice, without echo;
    /// otherwise the first line of standard input is the password.
    HashPassword,
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("bellhop {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Validate { config } => validate(config.as_deref()),
        Command::Fmt { check, path } => fmt(check, path.as_deref()),
        Command::Run { config, pid_file } => {
            let run = Run {
                path: None,
                pid_file,
                handover: None,
            };
            run.start((cli.log_level, cli.log_format), || {
                let path = find_config(config.as_deref())?;
                load(&path).map(|config| (Some(path), config))
            })
        }
        Command::Reload { config, pid_file } => reload(config.as_deref(), &pid_file),
        Command::Upgrade { pid_file } => cli::upgrade::command(&pid_file),
        Command::CaRoot { config } => ca_root(config.as_deref()),
        Command::Certs { config, json } => {
            let shown = find_config(config.as_deref())
                .and_then(|path| load(&path).map(|config| (path, config)))
                .and_then(|(path, config)| cli::certs::run(&path, &config, json));
            match shown {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::HashPassword => match hash_password() {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Proxy { from, to } => {
            let run = Run {
                path: None,
                pid_file: None,
                handover: None,
            };
            run.start((cli.log_level, cli.log_format), || {
                one_shot(&from, &to).map(|config| (None, config))
            })
        }
    }
}

/// What `serve` needs besides the config.
struct Run {
    /// The Proxyfile that SIGHUP re-reads (`None` for the one-shot `bellhop proxy`).
    path: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    /// The listening sockets of the bellhop that started this one (`bellhop upgrade`).
    handover: Option<Handover>,
}

impl Run {
    /// Loads the config with `load` and serves it. Started by an upgrade, the
    /// sockets are fetched first, so that a config that fails to load is
    /// reported to the old process (which serves on) as well as here.
    fn start(
        mut self,
        (level, format): (LevelFilter, LogFormat),
        load: impl FnOnce() -> anyhow::Result<(Option<PathBuf>, Config)>,
    ) -> ExitCode {
        // Started by an upgrade as the launcher of the real new process.
        if let Some(code) = bellhop::run_upgrade_launcher() {
            return code;
        }
        self.handover = match Handover::from_env() {
            Ok(handover) => handover,
            Err(e) => return fail(&e.context("cannot take over from the running bellhop")),
        };
        match load() {
            Ok((path, config)) => {
                self.path = path;
                serve(&level, format, config, self)
            }
            Err(e) => {
                if let Some(handover) = self.handover {
                    handover.fail(&format!("{e:#}"));
                }
                fail(&e)
            }
        }
    }
}

/// `bellhop hash-password`: the password from the terminal (no echo, typed
/// twice) or from the first line of a pipe, hashed with argon2id.
fn hash_password() -> anyhow::Result<String> {
    use std::io::IsTerminal as _;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let end = line.trim_end_matches(['\r', '\n']).len();
        line.truncate(end);
        line
    };
    anyhow::ensure!(!password.is_empty(), "the password is empty");
    bellhop::hash_password(password.as_bytes()).map_err(anyhow::Error::msg)
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

/// `--config`, else the first default path that exists.
fn find_config(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    DEFAULT_CONFIG_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .with_context(|| {
            format!(
                "no config file: looked for {}; pass --config PATH or try `bellhop proxy --from ADDR --to UPSTREAM`",
                DEFAULT_CONFIG_PATHS.join(" and ")
            )
        })
}

/// Loads a Proxyfile, turning a diagnostic into a printable error.
fn load(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{}", e.render()))
}

fn validate(path: Option<&Path>) -> ExitCode {
    match find_config(path).and_then(|path| load(&path).map(|c| (path, c))) {
        Ok((path, config)) => {
            let addresses: usize = config.sites.iter().map(|s| s.addresses.len()).sum();
            let sites = config.sites.len();
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            println!(
                "{}: valid ({}, {})",
                path.display(),
                plural(sites, "site", "sites"),
                plural(addresses, "address", "addresses")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fmt(check: bool, path: Option<&Path>) -> ExitCode {
    let path = path.map_or_else(|| PathBuf::from("Proxyfile"), Path::to_path_buf);
    let result = (|| -> anyhow::Result<bool> {
        let source = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let formatted = config::format(&source, &path.display().to_string())
            .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
        if formatted == source {
            return Ok(true);
        }
        if !check {
            std::fs::write(&path, formatted)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(false)
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) if check => {
            eprintln!(
                "{} is not formatted; run `bellhop fmt {}`",
                path.display(),
                path.display()
            );
            ExitCode::FAILURE
        }
        Ok(false) => {
            println!("formatted {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `bellhop ca-root`: the internal CA of the configured (or default) state dir.
///
/// With shared storage the root is the cluster's, which `bellhop run` fetches
/// into the state directory: a root made here could differ from it, so
/// without a local copy this asks for a first start instead.
fn ca_root(path: Option<&Path>) -> ExitCode {
    let options = match path {
        // An explicit --config must load; without one, a missing default
        // Proxyfile just means the default state dir.
        Some(path) => match load(path) {
            Ok(config) => config.options,
            Err(e) => return fail(&e),
        },
        None => match find_config(None) {
            Ok(path) => match load(&path) {
                Ok(config) => config.options,
                Err(e) => return fail(&e),
            },
            Err(_) => Options::default(),
        },
    };
    let loaded = match &options.storage {
        config::Storage::Dir => bellhop::InternalCa::load_or_create(&options.state_dir),
        config::Storage::Redis(_) => match bellhop::InternalCa::load_local(&options.state_dir) {
            Ok(Some(ca)) => Ok(ca),
            Ok(None) => {
                return fail(&anyhow::anyhow!(
                    "the internal CA of a cluster is kept in shared storage; `bellhop run` copies it to {} at start (creating it if the cluster has none): start bellhop once, then run `bellhop ca-root` again",
                    bellhop::InternalCa::dir(&options.state_dir).display()
                ))
            }
            Err(e) => Err(e),
        },
    };
    match loaded {
        Ok(ca) => {
            print!("{}", ca.trust_instructions());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&anyhow::Error::new(e).context("cannot load the internal CA")),
    }
}

/// The config of `bellhop proxy --from ADDR --to UPSTREAM`.
fn one_shot(from: &str, to: &str) -> anyhow::Result<Config> {
    let address =
        config::parse_site_address(from).map_err(|e| anyhow::anyhow!("--from {from:?}: {e}"))?;
    let upstream = config::parse_upstream(to).map_err(|e| anyhow::anyhow!("--to {to:?}: {e}"))?;
    Ok(Config {
        options: Options::default(),
        sites: vec![Site {
            addresses: vec![address],
            tls: TlsMode::Auto,
            hsts: None,
            routes: vec![Route::new(
                PathPattern::Any,
                Handler::Proxy(ProxyConfig::new(vec![upstream])),
            )],
            bind: None,
            log: None,
        }],
    })
}

/// Runs the server until it stops (SIGTERM, SIGINT, or the end of the drain
/// after an upgrade).
fn serve(level: &LevelFilter, format: LogFormat, config: Config, run_: Run) -> ExitCode {
    let _log_guard = match init_logging(*level, format) {
        Ok(guard) => guard,
        Err(e) => return fail(&e),
    };
    // Requests are served on the server's own worker threads (one runtime
    // each); this runtime only carries signals, reloads, certificates and the
    // admin listener, so one thread is plenty.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(config, run_)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, run: Run) -> anyhow::Result<()> {
    let Run {
        path,
        pid_file,
        handover,
    } = run;
    let server = match handover {
        Some(handover) => Server::take_over(config, handover).await?,
        None => Server::bind(config).await?,
    };
    let shutdown = server.shutdown_handle();
    let reload = server.reload_handle();
    let upgrade = server.upgrade_handle();
    // Before the pid file exists: a SIGHUP or SIGUSR2 sent on seeing it must
    // not find the default action (exit) still in place.
    let signals = Signals::new().context("cannot listen for signals")?;
    let pid_file = pid_file.map(PidFile::write).transpose()?;
    let status = pid_file.as_ref().map(PidFile::status);
    let outcome_beside = pid_file.as_ref().map(|p| p.path().to_path_buf());
    tokio::spawn(async move {
        let on_usr2 = || {
            // Its own task: SIGTERM and SIGHUP are still heard while the
            // new process starts (UpgradeHandle runs one at a time).
            tokio::spawn(cli::upgrade::on_signal(
                upgrade.clone(),
                outcome_beside.clone(),
            ));
        };
        let signal = signals
            .wait_for_stop(
                || reload_from(path.as_deref(), &reload, status.as_deref()),
                || {
                    tracing::info!("SIGUSR1 received: reopening access-log files");
                    reload.reopen_logs();
                },
                on_usr2,
            )
            .await;
        tracing::info!(signal, "shutting down");
        shutdown.shutdown();
    });
    let result = server.run().await;
    drop(pid_file);
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: re-reads the Proxyfile the server started with and swaps it in.
/// On any error the running config keeps serving, and the error is logged in
/// full (for a config error: file, line, column and the fix). With a pid
/// file, the outcome also goes to its reload status for `bellhop reload`.
async fn reload_from(path: Option<&Path>, reload: &ReloadHandle, status: Option<&ReloadStatus>) {
    let Some(path) = path else {
        tracing::warn!(
            "SIGHUP received, but there is no config file to reload (`bellhop proxy`); ignored"
        );
        return;
    };
    tracing::info!(config = %path.display(), "SIGHUP received: reloading");
    report(status, ReloadStatus::applying);
    let result = reload.reload_with(|| load(path)).await;
    match result {
        Ok(summary) => {
            tracing::info!(config = %path.display(), "reloaded: {summary}");
            report(status, |s| s.finished(Ok(&summary.to_string())));
        }
        Err(e) => {
            tracing::error!(
                config = %path.display(),
                "reload failed, still serving the previous config:\n{e:#}"
            );
            report(status, |s| s.finished(Err(&format!("{e:#}"))));
        }
    }
}

/// Writes to the reload status, if there is one; a failure to write is
/// logged (the reload itself is not affected, but `bellhop reload` will wait
/// in vain, so say why).
fn report(status: Option<&ReloadStatus>, write: impl FnOnce(&ReloadStatus) -> std::io::Result<()>) {
    if let Some(status) = status {
        if let Err(e) = write(status) {
            tracing::warn!(error = %e, "cannot write the reload status for `bellhop reload`");
        }
    }
}

/// The signals `bellhop run` handles.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// Resolves on SIGTERM or SIGINT; runs `on_hup` for every SIGHUP meanwhile
    /// (one at a time, so reloads never overlap), `on_usr1` for every
    /// SIGUSR1 (reopen the access-log files, after logrotate) and `on_usr2`
    /// for every SIGUSR2 (upgrade).
    async fn wait_for_stop<F, Fut>(
        mut self,
        mut on_hup: F,
        on_usr1: impl Fn(),
        mut on_usr2: impl FnMut(),
    ) -> &'static str
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => on_hup().await,
                _ = self.usr1.recv() => on_usr1(),
                _ = self.usr2.recv() => on_usr2(),
            }
        }
    }
}

/// `bellhop reload`: validates the config, sends SIGHUP to the process in the
/// pid file and waits for its outcome. A bad config is reported here and
/// nothing is signalled; a config the process cannot apply (a port in use, a
/// missing certificate file) fails with the process's reason.
fn reload(config: Option<&Path>, pid_file: &Path) -> ExitCode {
    let result = (|| -> anyhow::Result<(PathBuf, u32, Option<String>)> {
        let path = find_config(config)?;
        load(&path)?;
        let pid = pid_file::read(pid_file)?;
        let before = read_reload_status(pid_file).context("cannot read the reload status")?;
        pid_file::signal(pid, rustix::process::Signal::HUP, pid_file)?;
        let Some(before) = before else {
            return Ok((path, pid, None));
        };
        let summary = wait_for_reload(pid_file, pid, before.generation)
            .with_context(|| format!("bellhop (pid {pid}) did not apply {}", path.display()))?;
        Ok((path, pid, Some(summary)))
    })();
    match result {
        Ok((path, pid, Some(summary))) => {
            println!(
                "{}: applied by bellhop (pid {pid}): {summary}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok((path, pid, None)) => {
            println!(
                "{}: valid; sent SIGHUP to bellhop (pid {pid}), which keeps no reload status; its log says whether the reload was applied",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// How long `bellhop reload` waits for the outcome: applying is file reads
/// and binds, well under a second; the margin is for a loaded machine.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls the reload status until a reload later than `generation` has
/// finished; its summary, or its reason as the error.
fn wait_for_reload(pid_file: &Path, pid: u32, generation: u64) -> anyhow::Result<String> {
    let started = std::time::Instant::now();
    loop {
        let report = read_reload_status(pid_file).context("cannot read the reload status")?;
        match report {
            Some(r) if r.generation > generation => match r.outcome {
                ReloadOutcome::Applied(summary) => return Ok(summary),
                ReloadOutcome::Failed(reason) => {
                    anyhow::bail!("{reason}\n(the previous config is still serving)")
                }
                ReloadOutcome::Ready | ReloadOutcome::Applying => {}
            },
            _ => {}
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            anyhow::bail!("the process exited before reporting");
        }
        if started.elapsed() > RELOAD_WAIT {
            anyhow::bail!("no outcome reported within {RELOAD_WAIT:?}; see its log");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
