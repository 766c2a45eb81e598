//! `bellhop upgrade` in the running (old) process: start the new binary with
//! the listening sockets handed over, wait until it serves, then drain.
//!
//! ```text
//! UpgradeHandle::upgrade(command)
//!   1. Offer::bind, Listeners::offer (copies of every listening descriptor)
//!   2. spawn command with BELLHOP_UPGRADE ──► the new process connects
//!   3. wait for it to connect (or exit), hand the sockets over, wait for
//!      Ready | Failed | EOF | timeout
//!   4. Ready: tell systemd MAINPID=new (notify.rs says why this order),
//!      stop accepting (`accepting`), tell the new process `Handed` (it then
//!      says READY=1), and `Server::run` drains: open requests and
//!      WebSockets go on until they end or `drain-timeout`, then the
//!      process exits
//!      anything else: the new process is ended, this one serves on unchanged
//! ```
//!
//! Both processes accept on the same sockets until step 4, so a connection
//! the kernel queued on any of them is accepted by one of the two.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::process::Child;
use tokio::sync::Mutex;

use super::handover::{self, Offer, Outcome, Successor};
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
        command.env(handover::ENV, offer.name());
        notify::successor_env(&mut command);
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let pid = child.id().context("the new process has no id")?;
        tracing::info!(pid, %program, "upgrade: started the new process, handing over the listeners");

        let outcome = tokio::time::timeout(READY_TIMEOUT, async {
            // Before it connects, its exit is the only news (a binary that
            // is not bellhop, or one that crashed at once); once connected,
            // the connection says everything, its end included.
            let mut successor = tokio::select! {
                successor = offer.accept(pid) => successor?,
                _ = child.wait() => return Ok((Outcome::Gone, None)),
            };
            let outcome = successor.hand_over(offered).await?;
            anyhow::Ok((outcome, Some(successor)))
        })
        .await;
        match outcome {
            Ok(Ok((Outcome::Ready, Some(successor)))) => {
                *busy = self.hand_over(pid, successor).await;
                Ok(pid)
            }
            Ok(Ok((Outcome::Failed(reason), _))) => {
                let status = end(&mut child).await;
                Err(anyhow!("{reason}\n(the new process {status})"))
            }
            Ok(Ok(_)) => {
                let status = end(&mut child).await;
                Err(anyhow!(
                    "the new process {status} before it was ready (its log says why)"
                ))
            }
            Ok(Err(e)) => {
                let status = end(&mut child).await;
                Err(e.context(format!(
                    "handing over to the new process failed (it {status})"
                )))
            }
            Err(_) => {
                end(&mut child).await;
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

/// Waits briefly for a new process that gave up to exit, else kills it;
/// says how it ended.
async fn end(child: &mut Child) -> String {
    let status = match tokio::time::timeout(EXIT_WAIT, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    match status {
        Ok(status) => describe(status),
        Err(e) => format!("could not be waited for ({e})"),
    }
}

/// `exited with status 1`, `was killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => status.to_string(),
    }
}
