//! Idle upstream connections: one pool per thread, no lock.
//!
//! A request checks a connection out of its own thread's pool and the response
//! body checks it back in when the exchange is over. With one runtime per core
//! a connection then never leaves its thread. On a work-stealing runtime a task
//! may check out on one thread and check in on another: that is still correct
//! (the socket is registered with the runtime, not the thread), it only loses
//! locality.
//!
//! Lanes are keyed by the upstream target, not by the `Proxy` that used them,
//! so a reload that keeps an upstream keeps its warm connections.
//!
//! Idle connections close after their `pool-idle-timeout` (kept below the
//! backend's, so bellhop rather than the backend ends them). Expired ones are
//! dropped whenever the thread's pool is touched, and on a single-threaded
//! runtime a background task per thread also closes them on time when traffic
//! stops. On a work-stealing runtime that task cannot be tied to the thread,
//! so there they close on the thread's next request.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

use super::conn::{Home, UpstreamConn};
use crate::config::Upstream;

/// Names an upstream target for the pools. Equal targets get equal keys for
/// the life of the process, across reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PoolKey(usize);

/// Every target seen so far; a key is its index. Touched when a config is
/// loaded, never on the request path.
static TARGETS: Mutex<Vec<Upstream>> = Mutex::new(Vec::new());

impl PoolKey {
    /// Position of the target among every target seen: a dense index for
    /// other per-target tables (passive health).
    pub(super) fn index(self) -> usize {
        self.0
    }

    /// The key of `target`.
    pub(super) fn of(target: &Upstream) -> PoolKey {
        let mut targets = TARGETS.lock().unwrap_or_else(PoisonError::into_inner);
        match targets.iter().position(|t| t == target) {
            Some(i) => PoolKey(i),
            None => {
                targets.push(target.clone());
                PoolKey(targets.len() - 1)
            }
        }
    }
}

/// How many idle connections per lane keep their read buffer (LIFO: the
/// most recently checked in, which are checked out first). A warm
/// connection reads each response into the buffer the last one used.
const WARM: usize = 8;

/// A connection waiting in the pool.
struct Idle {
    conn: Box<UpstreamConn>,
    since: Instant,
    expires: Instant,
}

/// The idle connections of one upstream, oldest first.
struct Lane {
    key: PoolKey,
    idle: VecDeque<Idle>,
}

/// This thread's pool.
struct ThreadPool {
    lanes: Vec<Lane>,
    reaper: Reaper,
}

/// Whether this thread has a reaper task. The runtime flavor is looked up
/// once per thread, not on every check-in (it clones the runtime handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reaper {
    /// Not known yet whether this thread's runtime keeps tasks on it.
    Unknown,
    /// A work-stealing runtime: expired connections close on check-in only.
    Unavailable,
    /// Single-threaded runtime, no reaper running (the pool was empty).
    Stopped,
    /// The reaper task is running.
    Running,
}

thread_local! {
    static POOL: RefCell<ThreadPool> = const {
        RefCell::new(ThreadPool { lanes: Vec::new(), reaper: Reaper::Unknown })
    };
}

/// Takes the most recently used live connection to `key`'s upstream, closing
/// any expired or dead ones met on the way.
pub(super) fn checkout(key: PoolKey) -> Option<Box<UpstreamConn>> {
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let lane = pool.lanes.iter_mut().find(|lane| lane.key == key)?;
        let now = Instant::now();
        while let Some(mut idle) = lane.idle.pop_back() {
            if idle.expires > now && idle.conn.is_reusable() {
                idle.conn.idled = now.saturating_duration_since(idle.since);
                return Some(idle.conn);
            }
        }
        None
    })
    .ok()
    .flatten()
}

/// Puts a connection whose exchange is over back into this thread's pool.
pub(super) fn checkin(conn: Box<UpstreamConn>, home: Home) {
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let now = Instant::now();
        pool.close_expired(now);
        let lane = match pool.lanes.iter().position(|lane| lane.key == home.key) {
            Some(i) => &mut pool.lanes[i],
            None => {
                pool.lanes.push(Lane {
                    key: home.key,
                    idle: VecDeque::new(),
                });
                let last = pool.lanes.len() - 1;
                &mut pool.lanes[last]
            }
        };
        lane.idle.push_back(Idle {
            conn,
            since: now,
            expires: now + home.idle_timeout,
        });
        // The most recent few keep their buffers: they are the next to be
        // checked out. The one that just fell behind them gives its buffers
        // back, so a burst's worth of idle connections holds none.
        if let Some(cold) = lane.idle.len().checked_sub(WARM + 1) {
            lane.idle[cold].conn.io.shed();
        }
        pool.start_reaper();
    });
}

impl ThreadPool {
    /// Closes the expired connections at the front of each lane. Lanes are in
    /// check-in order, so this is exact unless proxies with different idle
    /// timeouts share an upstream; the reaper sweeps whole lanes.
    fn close_expired(&mut self, now: Instant) {
        for lane in &mut self.lanes {
            while lane.idle.front().is_some_and(|idle| idle.expires <= now) {
                lane.idle.pop_front();
            }
        }
    }

    /// The earliest expiry of any idle connection.
    fn next_expiry(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .flat_map(|lane| lane.idle.iter().map(|idle| idle.expires))
            .min()
    }

    /// Spawns this thread's reaper, if the runtime keeps it on this thread.
    fn start_reaper(&mut self) {
        if self.reaper == Reaper::Unknown {
            let single_threaded = Handle::try_current()
                .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread);
            self.reaper = if single_threaded {
                Reaper::Stopped
            } else {
                Reaper::Unavailable
            };
        }
        if self.reaper == Reaper::Stopped {
            self.reaper = Reaper::Running;
            tokio::spawn(reap());
        }
    }
}

/// Closes idle connections as they expire until the pool is empty.
async fn reap() {
    /// Lets the next check-in start a reaper again, also when the runtime
    /// drops this task.
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = POOL.try_with(|pool| pool.borrow_mut().reaper = Reaper::Stopped);
        }
    }
    let _running = Running;
    loop {
        let next = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let now = Instant::now();
            for lane in &mut pool.lanes {
                lane.idle.retain(|idle| idle.expires > now);
                if lane.idle.is_empty() {
                    // A burst of upstream connections grew the lane; its
                    // buffer would otherwise pin a heap page for good.
                    lane.idle.shrink_to_fit();
                }
            }
            pool.next_expiry()
        });
        match next {
            Ok(Some(at)) => tokio::time::sleep_until(at).await,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::proxy::body::UpstreamBody;
    use crate::proxy::conn::tests::get;

    /// A backend on loopback that answers every request on every connection
    /// with a 5-byte body.
    async fn backend() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
                            if sock.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Upstream::Tcp {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// Sends a GET on `conn` and reads its body to the end, which checks
    /// the connection in (`UpstreamBody`).
    async fn exchange_on(mut conn: Box<UpstreamConn>) -> bytes::Bytes {
        let (head, delimited) = get(&mut conn).await.unwrap();
        assert_eq!(head.status, 200);
        let body = UpstreamBody::new(delimited.framing, conn);
        body.collect().await.unwrap().to_bytes()
    }

    /// Idle connections keep their read buffer for the next response, but
    /// only the most recent [`WARM`] of a lane: a burst's worth of idle
    /// connections gives theirs back.
    #[tokio::test]
    async fn only_the_warm_few_idle_connections_keep_their_read_buffer() {
        let target = backend().await;
        let home = Home {
            key: PoolKey::of(&target),
            idle_timeout: Duration::from_secs(60),
        };
        for _ in 0..WARM + 3 {
            let conn = UpstreamConn::open(&target, Duration::from_secs(5), Some(home))
                .await
                .unwrap();
            // The body is a copy: the connection kept its buffer.
            assert_eq!(exchange_on(conn).await, "hello");
        }
        let buffers: Vec<bool> = POOL.with(|pool| {
            let pool = pool.borrow();
            let lane = pool.lanes.iter().find(|l| l.key == home.key).unwrap();
            lane.idle
                .iter()
                .map(|idle| idle.conn.io.holds_read_buffer())
                .collect()
        });
        let mut expected = vec![false; 3];
        expected.extend([true; WARM]);
        assert_eq!(buffers, expected, "oldest first");
        // The warm one checked out first reads its next response into the
        // buffer it kept, and is checked in again.
        let mut conn = checkout(home.key).expect("a pooled connection");
        assert!(conn.io.holds_read_buffer());
        conn.home = Some(home);
        assert_eq!(exchange_on(conn).await, "hello");
        let warm = POOL.with(|pool| {
            let pool = pool.borrow();
            let lane = pool.lanes.iter().find(|l| l.key == home.key).unwrap();
            lane.idle
                .back()
                .map(|idle| idle.conn.io.holds_read_buffer())
        });
        assert_eq!(warm, Some(true));
    }
}
