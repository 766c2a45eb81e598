//! `bellhop upgrade` in the running (old) process: start the new binary with
//! the listening sockets handed over, wait until it serves, then drain.
//!
//! ```text
//! UpgradeHandle::upgrade(command)
//!   1. Offer::bind, Listeners::offer (copies of every listening descriptor)
//!   2. spawn command with BELLHOP_UPGRADE, through the launcher
//!      (launcher.rs says why) ──► the new process connects
//!   3. wait for it to connect (or exit), hand the sockets over, wait for
//!      Ready | Failed | EOF | timeout
//!   4. Ready: let the launcher exit (the new process is now the service
//!      manager's child), tell systemd MAINPID=new (notify.rs says why this order),
//!      stop accepting (`accepting`), tell the new process `Handed` (it then
//!      says READY=1), and `Server::run` drains: open requests and
//!      WebSockets go on until they end or `drain-timeout`, then the
//!      process exits
//!      anything else: the new process is ended, this one serves on unchanged
//! ```
//!
//! Both processes accept on the same sockets until step 4, so a connection
//! the kernel queued on any of them is accepted by one of the two.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

use super::handover::{self, Offer, Outcome, Successor};
use super::launcher::{self, Report};
use super::notify;
use super::reload::Listeners;
use super::Shared;

/// How long the new process may take to accept on every listener (it loads
/// its config and stored certificates; ACME runs after, in the background).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a new process that said it failed may take to exit, before it is
/// killed (its exit status goes into the error).
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// Starts upgrades of the server it came from; one at a time.
#[derive(Debug, Clone)]
pub struct UpgradeHandle {
    shared: Arc<Shared>,
    listeners: Arc<Listeners>,
    /// Held while an upgrade runs; after a successful one, the connection
    /// to the new process, kept open until this process exits (its end
    /// tells the new process that the drain is over).
    busy: Arc<Mutex<Option<tokio::net::UnixStream>>>,
}

impl UpgradeHandle {
    pub(super) fn new(shared: Arc<Shared>, listeners: Arc<Listeners>) -> UpgradeHandle {
        UpgradeHandle {
            shared,
            listeners,
            busy: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `command` (the new binary and its arguments) with this server's
    /// listening sockets. Returns the new process id once it serves; this
    /// server has then stopped accepting and drains (its `run` returns when
    /// the last connection ends, or at `drain-timeout`). On an error the new
    /// process has been ended and this server serves on as before; the error
    /// says why (the new process's own reason, or its exit status).
    pub async fn upgrade(&self, command: std::process::Command) -> anyhow::Result<u32> {
        let Ok(mut busy) = self.busy.try_lock() else {
            bail!("an upgrade is already in progress");
        };
        if self.shared.background.accepting.is_cancelled() {
            bail!("this bellhop is shutting down or already handed its listeners over");
        }
        let offer = Offer::bind().context("cannot open the handover socket")?;
        let offered = self
            .listeners
            .offer()
            .context("cannot copy the listening sockets")?;
        let mut command = tokio::process::Command::from(command);
        command
            .env(handover::ENV, offer.name())
            .env(launcher::LAUNCH_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        notify::successor_env(&mut command);
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let mut new =
            NewProcess::start(command).with_context(|| format!("cannot start {program}"))?;
        tracing::info!(launcher = new.launcher_pid, %program, "upgrade: started the new process, handing over the listeners");

        let outcome = tokio::time::timeout(READY_TIMEOUT, async {
            // Before it connects, its end is the only news (a binary that
            // is not bellhop, or one that crashed at once); once connected,
            // the connection says everything, its end included.
            let launcher = new.launcher_pid;
            let (mut successor, pid) = tokio::select! {
                connected = offer.accept(|peer| peer == launcher || parent_of(peer) == Some(launcher)) => connected?,
                () = new.ended() => return Ok((Outcome::Gone, None)),
            };
            new.pid = Some(pid);
            let outcome = successor.hand_over(offered).await?;
            anyhow::Ok((outcome, Some(successor)))
        })
        .await;
        match outcome {
            Ok(Ok((Outcome::Ready, Some(successor)))) => {
                let pid = new.release().await;
                *busy = self.hand_over(pid, successor).await;
                Ok(pid)
            }
            Ok(Ok((Outcome::Failed(reason), _))) => {
                let status = new.end().await;
                Err(anyhow!("{reason}\n(the new process {status})"))
            }
            Ok(Ok(_)) => {
                let status = new.end().await;
                Err(anyhow!(
                    "the new process {status} before it was ready (its log says why)"
                ))
            }
            Ok(Err(e)) => {
                let status = new.end().await;
                Err(e.context(format!(
                    "handing over to the new process failed (it {status})"
                )))
            }
            Err(_) => {
                new.end().await;
                Err(anyhow!(
                    "the new process did not serve within {} s; it was killed",
                    READY_TIMEOUT.as_secs()
                ))
            }
        }
    }

    /// The new process serves: systemd learns its pid, this process stops
    /// accepting, and the new one is told (in that order, see notify.rs).
    /// Returns the connection to keep open until this process exits.
    async fn hand_over(&self, pid: u32, successor: Successor) -> Option<tokio::net::UnixStream> {
        let background = &self.shared.background;
        self.shared.notify.hand_over(pid, background.tasks.len());
        tracing::info!(pid, "upgrade: the new process serves");
        background.accepting.cancel();
        match successor.handed().await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::warn!(pid, error = %e, "upgrade: cannot tell the new process the hand-over is complete");
                None
            }
        }
    }
}

/// The launcher this process started and, once it connects, the new
/// process (launcher.rs). A binary older than the launcher ignores
/// `LAUNCH_ENV` and is the new process itself: it then connects from the
/// launcher's pid, and its output ends when it exits.
struct NewProcess {
    launcher: Child,
    launcher_pid: u32,
    reports: Lines<BufReader<ChildStdout>>,
    /// The launcher's stdin: closing it lets the launcher exit, which hands
    /// the new process to the service manager.
    launcher_stdin: Option<ChildStdin>,
    /// The new process, once connected.
    pid: Option<u32>,
    /// How it ended, once known.
    how: Option<String>,
}

impl NewProcess {
    fn start(mut command: tokio::process::Command) -> std::io::Result<NewProcess> {
        let mut launcher = command.spawn()?;
        let launcher_pid = launcher
            .id()
            .ok_or_else(|| std::io::Error::other("the new process has no id"))?;
        let (Some(stdout), launcher_stdin) = (launcher.stdout.take(), launcher.stdin.take()) else {
            return Err(std::io::Error::other("the new process has no output pipe"));
        };
        Ok(NewProcess {
            launcher,
            launcher_pid,
            reports: BufReader::new(stdout).lines(),
            launcher_stdin,
            pid: None,
            how: None,
        })
    }

    /// Returns once the new process has ended (or the launcher, before
    /// starting it), with `how` said.
    async fn ended(&mut self) {
        if self.how.is_some() {
            return;
        }
        let mut how = None;
        while let Some(report) = launcher::next_report(&mut self.reports).await {
            if let Report::Exited(text) = report {
                how = Some(text);
                break;
            }
        }
        let status = self.launcher.wait().await;
        self.how = Some(how.unwrap_or_else(|| match status {
            Ok(status) => launcher::describe(status),
            Err(e) => format!("could not be waited for ({e})"),
        }));
    }

    /// The new process serves: lets the launcher exit so that the new
    /// process is adopted by the service manager before `MAINPID=` names
    /// it (a main PID that is not its child, systemd never waits for at
    /// stop). Returns the new process's pid.
    async fn release(&mut self) -> u32 {
        let pid = self.pid.unwrap_or(self.launcher_pid);
        if pid != self.launcher_pid {
            self.launcher_stdin = None;
            if tokio::time::timeout(EXIT_WAIT, self.launcher.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    launcher = self.launcher_pid,
                    "upgrade: the launcher did not exit; the new process stays its child"
                );
            }
        }
        pid
    }

    /// Waits briefly for a new process that gave up to exit, else kills it;
    /// says how it ended.
    async fn end(&mut self) -> String {
        if tokio::time::timeout(EXIT_WAIT, self.ended()).await.is_err() {
            match self.pid.filter(|&pid| pid != self.launcher_pid) {
                Some(pid) => {
                    let _ = signal_process(pid, rustix::process::Signal::KILL);
                }
                None => {
                    let _ = self.launcher.start_kill();
                }
            }
            self.ended().await;
        }
        self.how.clone().unwrap_or_default()
    }
}

/// Sends `signal` to process `pid` with kill(2) (through rustix: the crate
/// has no unsafe code of its own). Also what `bellhop reload` and `bellhop
/// upgrade` signal the running process with.
pub fn signal_process(pid: u32, signal: rustix::process::Signal) -> std::io::Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    rustix::process::kill_process(target, signal).map_err(std::io::Error::from)
}

/// The parent of process `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}
