//! Test support: real backends on 127.0.0.1, clients, config builders, a handle on
//! a spawned `bellhop` process, and waiting helpers.
//!
//! Rules every test follows (and these helpers make easy):
//! - only 127.0.0.1 (or other 127/8 addresses) and ephemeral ports, or a
//!   [`ports::Port`] where a port must be known before it is bound;
//! - no fixed sleep where a condition can be waited for: use [`wait_for`];
//! - every test is bounded in time: wrap the body in [`bounded`].
#![allow(dead_code)]

pub mod backends;
pub mod binary;
pub mod client;
pub mod config;
pub mod h2_frames;
pub mod pattern;
#[path = "../../common/ports.rs"]
pub mod ports;
pub mod server;
pub mod ws;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shorthand for whole seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Shorthand for milliseconds.
pub const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `fut` and panics with `what` if it takes longer than `limit`.
///
/// Every test body goes through this so a hang fails the test instead of the run.
pub async fn bounded<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {limit:?}"),
    }
}

/// Polls `cond` every 10 ms until it is true; panics with `what` after `timeout`.
/// Returns how long it took.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(millis(10)).await;
    }
}

/// The root certificate of a server's internal CA (`tls internal`), once the
/// server has written it into its state directory `state`.
pub async fn internal_root(state: &Path) -> Vec<u8> {
    let path = state.join("internal/root.pem");
    wait_for("the internal CA root", secs(10), || path.exists()).await;
    std::fs::read(&path).expect("read root.pem")
}

/// Like [`wait_for`] for a condition that must itself await (e.g. a connect attempt).
pub async fn wait_for_async<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(millis(10)).await;
    }
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh, empty directory whose name contains `tag`.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bellhop-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raises this process's open-file soft limit to its hard limit (children inherit
/// it), for tests that hold thousands of sockets. Returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        lim.rlim_cur
    }
}

/// A task that is aborted when this handle is dropped, so backends die with their test.
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `fut` as a [`Task`].
pub fn spawn_task(fut: impl Future<Output = ()> + Send + 'static) -> Task {
    Task(tokio::spawn(fut))
}
