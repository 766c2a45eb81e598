//! Ports that stay free until the test that reserved them is done.
//!
//! Shared by both test crates (`tests/it`, `tests/acme`), each of which includes
//! this file as `support::ports` with `#[path]`, so there is one implementation.
//!
//! Some programs must be told their ports before they bind, so a test cannot
//! simply bind port 0 and keep the socket: Pebble and pebble-challtestsrv, a
//! `Server::bind` whose ACME validation ports Pebble must know, a listener that a
//! reload adds next to an existing port-0 one, a `bellhop run` at a log level
//! that hides its `listening` line. A test may also need an address where
//! nothing answers (a refused upstream).
//!
//! Probing a port with `bind(0)` and dropping the socket is racy: nextest runs
//! every test in its own process, and between the probe and the consumer's bind
//! another process (a parallel test's `bind(0)`, an outgoing connection, a
//! resolver's UDP socket) may be handed the same ephemeral port. That is how a
//! Pebble once died with "bind: address already in use" and its test waited out
//! its deadline.
//!
//! A [`Port`] closes both holes:
//! - it comes from outside the kernel's ephemeral range, so no `bind(0)` or
//!   `connect()` anywhere on the machine is ever given it;
//! - it is locked across processes by binding an abstract Unix socket named after
//!   it (Linux), which every test process (also in other checkouts) respects and
//!   the kernel releases when the holder exits, even when it is killed.
//!
//! Nothing listens on a reserved port until its holder starts something there, so
//! a reserved but unused port is also a reliable "nobody answers here" address.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out: above the well-known ports and the fixed ones other
/// tests write into configs (18080, 18443, ...).
const FIRST: u16 = 20_000;

/// A port reserved for this test until dropped.
#[derive(Debug)]
pub struct Port {
    number: u16,
    _lock: UnixListener,
}

impl Port {
    /// Reserves a port outside the ephemeral range that is free for TCP (all
    /// interfaces, as bellhop binds) and UDP (DNS) right now.
    pub fn reserve() -> Port {
        let (low, high) = ephemeral_range();
        let candidates: Vec<u16> = (FIRST..=u16::MAX)
            .filter(|p| !(low..=high).contains(p))
            .collect();
        // Different processes start at different places, so they rarely contend
        // for the same lock.
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let start = std::process::id()
            .wrapping_mul(7919)
            .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(31))
            as usize;
        for i in 0..candidates.len() {
            let number = candidates[(start + i) % candidates.len()];
            let Some(lock) = lock(number) else {
                continue;
            };
            if is_free(number) {
                return Port {
                    number,
                    _lock: lock,
                };
            }
        }
        panic!("no reservable port outside the ephemeral range {low}-{high}");
    }

    /// The port number.
    pub fn number(&self) -> u16 {
        self.number
    }
}

/// Takes the machine-wide lock for `port`, if nobody holds it.
fn lock(port: u16) -> Option<UnixListener> {
    let name = format!("bellhop-test-port-{port}");
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixListener::bind_addr(&addr).ok()
}

/// Whether nothing outside the lock protocol uses `port` (another program's
/// listener, or a TIME_WAIT left by a previous holder's connections).
fn is_free(port: u16) -> bool {
    let tcp = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
        .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)));
    tcp.is_ok() && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The kernel's ephemeral port range (Linux default when unreadable).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u16>);
            Some((parts.next()?.ok()?, parts.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}
