//! Worker threads: one single-threaded tokio runtime per core.
//!
//! ```text
//! Workers::spawn(n) ─► n std threads "bellhop-worker-i", each block_on(exit)
//!                      on its own current_thread runtime
//! Listeners::start  ─► one accept loop per (port, worker), spawned through the
//!                      worker's Handle on that worker's own listening socket
//! accept ─► connection task ─► requests ─► upstream: all on that one thread
//! Workers::join     ─► exit every runtime (dropping what is left), wait for
//!                      the threads
//! ```
//!
//! Why: on a work-stealing runtime every proxied request woke tasks across
//! threads; here a connection, its requests, their upstream connections and
//! responses stay on the thread whose socket accepted it, so nothing on the
//! request path hands work to another core and per-thread state (the upstream
//! pool) needs no lock. The kernel spreads new connections over the workers'
//! `SO_REUSEPORT` sockets. Background work (certificates, ACME, admin listener,
//! signals, reload) stays on the runtime that called [`Server::run`](super::Server::run).

use std::io;
use std::num::NonZeroUsize;
use std::thread;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Options;

/// Stack of each worker thread. A worker's block_on future is tiny and its
/// tasks live on the heap; the stack only holds one task's poll at a time.
/// Only touched pages count towards RSS (measured: 8 to 44 KiB of each after
/// a request), so this bounds address space, not memory; the usual 2 MiB is
/// kept, see docs/architecture.md.
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// How many workers `options` asks for: `workers N`, else one per CPU the
/// process may run on (std reads the affinity mask and cgroup quota).
pub(super) fn count(options: &Options) -> usize {
    options
        .workers
        .or_else(|| thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get)
}

/// The running worker threads. Dropping this stops them (so a `run` future
/// that is dropped does not leak threads).
#[derive(Debug)]
pub(super) struct Workers {
    /// Where to spawn each worker's tasks, in worker order.
    handles: Vec<Handle>,
    /// Cancelled to make every worker leave its runtime.
    exit: CancellationToken,
    /// One receiver per thread, resolved when its runtime has been dropped.
    done: Vec<oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts `n` worker threads and waits until each has its runtime.
    pub(super) async fn spawn(n: usize) -> io::Result<Workers> {
        let exit = CancellationToken::new();
        let mut workers = Workers {
            handles: Vec::with_capacity(n),
            exit: exit.clone(),
            done: Vec::with_capacity(n),
        };
        for i in 0..n {
            let (handle_tx, handle_rx) = oneshot::channel();
            let (done_tx, done_rx) = oneshot::channel();
            let exit = exit.clone();
            thread::Builder::new()
                .name(format!("bellhop-worker-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || run_worker(handle_tx, exit, done_tx))?;
            workers.done.push(done_rx);
            match handle_rx.await {
                Ok(Ok(handle)) => workers.handles.push(handle),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("worker thread ended at start")),
            }
        }
        Ok(workers)
    }

    /// The runtime of every worker, in order: one accept loop per listener
    /// is spawned on each.
    pub(super) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Ends every worker: tasks still running (connections past the grace
    /// period) are dropped, which closes their sockets. Returns once every
    /// thread has dropped its runtime.
    pub(super) async fn join(mut self) {
        self.exit.cancel();
        for (i, done) in std::mem::take(&mut self.done).into_iter().enumerate() {
            if done.await.is_err() {
                // The thread panicked before dropping its runtime.
                tracing::error!(worker = i, "worker thread failed");
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.exit.cancel();
    }
}

/// The body of one worker thread: a current_thread runtime that serves the
/// tasks spawned on it until `exit`.
fn run_worker(
    handle_tx: oneshot::Sender<io::Result<Handle>>,
    exit: CancellationToken,
    done_tx: oneshot::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = handle_tx.send(Err(e));
            return;
        }
    };
    if handle_tx.send(Ok(runtime.handle().clone())).is_err() {
        return;
    }
    runtime.block_on(exit.cancelled());
    drop(runtime);
    let _ = done_tx.send(());
}
