//! Which sockets to listen on, binding them, and the accept loop.
//!
//! Listeners are derived from the config and owned by the server, apart from
//! the router: replacing the router never closes a listening socket. A reload
//! diffs the new plan against the running one by port (see `reload`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use std::pin::pin;

use rustix::net::{acceptfrom_with, SocketAddrAny, SocketFlags};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFdReadyGuard;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::Accepted;
use super::waiting_room::{watch, Guest, WaitingRoom};
use super::{https, Shared};
use crate::config::{port_uses, Config, Need, Scheme};

/// A port bellhop listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListenerSpec {
    /// The port as configured (0 = ephemeral); the router's key for this listener.
    pub port: u16,
    /// Addresses to bind, never empty: the addresses its sites need, or only
    /// `[::]` (all interfaces) when one of them needs every interface.
    pub bind: Vec<IpAddr>,
    /// Whether connections start with a TLS handshake.
    pub scheme: Scheme,
}

/// All interfaces (dual-stack).
const EVERYWHERE: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// Listeners needed by `config`, in order of first appearance, each binding
/// what its sites' addresses say (see `config::port_uses`). The plain HTTP
/// port is added when an HTTPS site needs its redirect (and ACME HTTP-01).
pub(super) fn plan(config: &Config) -> Vec<ListenerSpec> {
    let mut specs: Vec<ListenerSpec> = Vec::new();
    for u in port_uses(&config.options, config.sites.iter()) {
        let ip = match u.need {
            Need::Bind(ip) | Need::Address(ip) => ip,
            Need::Everywhere => EVERYWHERE,
        };
        match specs.iter_mut().find(|s| s.port == u.port) {
            Some(spec) if spec.bind == [EVERYWHERE] || spec.bind.contains(&ip) => {}
            Some(spec) if ip == EVERYWHERE => spec.bind = vec![EVERYWHERE],
            Some(spec) => spec.bind.push(ip),
            None => specs.push(ListenerSpec {
                port: u.port,
                bind: vec![ip],
                scheme: u.scheme,
            }),
        }
    }
    specs
}

/// Binds `spec` once per worker and address: `count` sockets on each address
/// with `SO_REUSEPORT`, so each worker accepts on its own socket and the
/// kernel spreads connections over them; address-major order. For port 0 the
/// first socket picks the port and the others join it. All-interfaces means
/// dual-stack `[::]`, falling back to `0.0.0.0` on hosts without IPv6.
pub(super) fn bind(spec: &ListenerSpec, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut sockets: Vec<std::net::TcpListener> = Vec::with_capacity(count * spec.bind.len());
    let mut port = spec.port;
    for ip in &spec.bind {
        let group = match bind_group(SocketAddr::new(*ip, port), count) {
            Err(e) if *ip == EVERYWHERE => {
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                bind_group(v4, count).map_err(|_| e)
            }
            result => result,
        }?;
        if let Some(first) = group.first() {
            port = first.local_addr()?.port();
        }
        sockets.extend(group);
    }
    Ok(sockets)
}

/// [`bind`] for the new process of an upgrade: on each address of `spec`,
/// the sockets the old process handed over for it (plus more beside them if
/// this process has more workers), else fresh ones. Handed sockets on an
/// address `spec` no longer has close when dropped here. With fewer workers
/// than handed sockets every socket is still accepted on (`Entry::start`
/// cycles the workers), so no connection already queued on one is stranded.
pub(super) fn adopt(
    spec: &ListenerSpec,
    count: usize,
    mut handed: Vec<std::net::TcpListener>,
) -> io::Result<Vec<std::net::TcpListener>> {
    // For port 0, the port the old process was given.
    let port = match handed.first() {
        Some(first) => first.local_addr()?.port(),
        None => spec.port,
    };
    let mut sockets = Vec::with_capacity(count * spec.bind.len());
    for ip in &spec.bind {
        // `[::]` may have fallen back to 0.0.0.0 (see `bind`).
        let fits = |s: &std::net::TcpListener| {
            s.local_addr()
                .is_ok_and(|a| a.ip() == *ip || (*ip == EVERYWHERE && a.ip().is_unspecified()))
        };
        let (mut group, rest): (Vec<_>, Vec<_>) = handed.into_iter().partition(fits);
        handed = rest;
        match group.first() {
            Some(first) => {
                let addr = first.local_addr()?;
                while group.len() < count {
                    group.push(bind_addr(addr)?);
                }
                sockets.extend(group);
            }
            None => {
                let fresh = ListenerSpec {
                    port,
                    bind: vec![*ip],
                    scheme: spec.scheme,
                };
                sockets.extend(bind(&fresh, count)?);
            }
        }
    }
    Ok(sockets)
}

/// `count` listening sockets sharing `addr` (its port fixed by the first).
fn bind_group(mut addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = bind_addr(addr)?;
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn bind_addr(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting must not wait for TIME_WAIT sockets of the previous process.
    socket.set_reuse_address(true)?;
    // One socket per worker on the same port. Linux only lets sockets of the
    // same user join the group, so no other account can take a share.
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() && addr.ip() != EVERYWHERE {
        // `[::1]` next to `127.0.0.1` on one port: v6 only, no v4-mapped overlap.
        socket.set_only_v6(true)?;
    }
    // The accept loop runs on a worker's runtime, which needs it non-blocking.
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// At most this many connections are accepted in one go before the loop
/// looks at its other work (arrivals, deadlines, stop).
const ACCEPTS_PER_TURN: usize = 64;

/// Accepts connections until `stop` (a child of the shutdown token, so that a
/// reload can stop one port). Each waits in this loop's [`WaitingRoom`] until
/// its first byte arrives, then gets its own task on the runtime this runs on
/// (a worker's). Connections already being served get `stop` too: they finish
/// their current request and close; those still waiting are closed.
pub(super) async fn accept_loop(
    socket: std::net::TcpListener,
    spec: ListenerSpec,
    stop: CancellationToken,
    shared: Arc<Shared>,
) {
    // Registered here, with the reactor of the worker that will accept on it.
    let started = watch(socket).and_then(|listener| Ok((listener, WaitingRoom::new()?)));
    let (listener, mut room) = match started {
        Ok(started) => started,
        Err(e) => {
            tracing::error!(error = %e, port = spec.port, "cannot accept on a listening socket");
            return;
        }
    };
    let door = Door { spec, shared, stop };
    // When an accept failure was last logged.
    let mut warned: Option<Instant> = None;
    let mut leaving: Vec<Guest> = Vec::new();
    let mut expiry = pin!(tokio::time::sleep_until(Instant::now()));
    loop {
        let wait = door.first_byte_timeout();
        let next_expiry = room.oldest_arrival().map(|arrived| arrived + wait);
        if let Some(at) = next_expiry {
            if expiry.deadline() != at {
                expiry.as_mut().reset(at);
            }
        }
        // Biased, in this order: stop, then deadlines (a flood that keeps
        // the listener ready must not keep silent guests past theirs), then
        // guests with bytes, then new connections.
        tokio::select! {
            biased;
            () = door.stop.cancelled() => break,
            () = &mut expiry, if next_expiry.is_some() => {
                if let Some(cutoff) = Instant::now().checked_sub(wait) {
                    room.expired(cutoff, &mut leaving);
                }
                for guest in leaving.drain(..) {
                    door.turn_away(&guest, wait);
                }
                forget_a_flood(&mut leaving);
            }
            arrived = room.arrivals(&mut leaving) => {
                if let Err(e) = arrived {
                    tracing::error!(error = %e, port = door.spec.port, "cannot wait for new connections' first bytes");
                    break;
                }
                for guest in leaving.drain(..) {
                    door.serve(guest);
                }
                forget_a_flood(&mut leaving);
            }
            ready = listener.readable() => {
                let result = match ready {
                    Ok(mut ready) => door.accept_some(&mut ready, &mut room),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    // EMFILE/ENFILE and friends: the socket is fine, the
                    // process is out of something. Pause instead of spinning
                    // on the error, and say so at most once a second.
                    let now = Instant::now();
                    if warned.is_none_or(|at| now >= at + Duration::from_secs(1)) {
                        tracing::warn!(error = %e, port = door.spec.port, "accept failed; pausing accepts for 100 ms");
                        warned = Some(now);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    room.clear();
}

/// After a flood, thousands of guests leave the waiting room at once (their
/// deadline passed together); the vector that held them is not kept at that
/// size for the rest of the process's life.
fn forget_a_flood<T>(leaving: &mut Vec<T>) {
    const KEEP: usize = 64;
    if leaving.capacity() > KEEP {
        *leaving = Vec::new();
    }
}

/// What an accept loop needs to let connections in and hand them on.
struct Door {
    spec: ListenerSpec,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Door {
    /// How long a connection may stay silent, from accept: the TLS handshake
    /// timeout on TLS ports, `client-header-timeout` on plain-HTTP ones (the
    /// first byte's wait counts against what follows it).
    fn first_byte_timeout(&self) -> Duration {
        match (&self.spec.scheme, &self.shared.https) {
            (Scheme::Https, Some(https)) => https.handshake_timeout(),
            _ => self.shared.idle_timeout,
        }
    }

    /// Accepts what is queued on the listener (up to [`ACCEPTS_PER_TURN`])
    /// into `room`. Errors other than "nothing more queued" are returned.
    fn accept_some(
        &self,
        ready: &mut AsyncFdReadyGuard<'_, std::net::TcpListener>,
        room: &mut WaitingRoom,
    ) -> io::Result<()> {
        for _ in 0..ACCEPTS_PER_TURN {
            let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
            let accepted = ready.try_io(|listener| {
                acceptfrom_with(listener.get_ref(), flags).map_err(io::Error::from)
            });
            let guest = match accepted {
                Err(_would_block) => return Ok(()),
                Ok(Ok((socket, address))) => self.admit(socket.into(), address),
                // The client gave up between its handshake and this accept.
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionAborted => None,
                Ok(Err(e)) => return Err(e),
            };
            if let Some(Err(guest)) = guest.map(|guest| room.seat(guest)) {
                self.serve(guest);
            }
        }
        Ok(())
    }

    /// A just-accepted connection as a guest, or `None` when a cap refuses
    /// it: then it is closed at once, before any TLS or HTTP work (the caps
    /// count and log the refusal).
    fn admit(&self, stream: std::net::TcpStream, address: Option<SocketAddrAny>) -> Option<Guest> {
        let mut peer = address.and_then(|a| SocketAddr::try_from(a).ok())?;
        // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d.
        peer.set_ip(crate::config::canonical_ip(peer.ip()));
        let permit = self.shared.caps.admit(peer.ip()).ok()?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        Some(Guest {
            stream,
            peer,
            permit,
            arrived: Instant::now(),
        })
    }

    /// Serves a guest whose first bytes arrived on its own task, tracked for
    /// shutdown, with the deadline its wait counted against.
    fn serve(&self, guest: Guest) {
        let deadline = guest.arrived + self.first_byte_timeout();
        let stream = match TcpStream::from_std(guest.stream) {
            Ok(stream) => stream,
            Err(e) => {
                return tracing::debug!(peer = %guest.peer, error = %e, "cannot register a connection");
            }
        };
        let accepted = Accepted {
            peer: guest.peer,
            port: self.spec.port,
            scheme: self.spec.scheme,
            tls: None,
        };
        let (shared, stop, permit) = (self.shared.clone(), self.stop.clone(), guest.permit);
        let tasks = &self.shared.background.tasks;
        match accepted.scheme {
            Scheme::Https => tasks.spawn(https::serve_tls(
                stream, accepted, permit, shared, stop, deadline,
            )),
            Scheme::Http => tasks.spawn(super::h1::serve_http1(
                stream,
                accepted,
                permit,
                shared,
                stop,
                Some(deadline),
            )),
        };
    }

    /// Counts and logs a guest that said nothing within `wait`; dropping it
    /// then closes its socket.
    fn turn_away(&self, guest: &Guest, wait: Duration) {
        match (&self.spec.scheme, &self.shared.https) {
            (Scheme::Https, Some(https)) => https.handshake_timed_out(guest.peer, wait),
            _ => tracing::debug!(peer = %guest.peer, "no request within client-header-timeout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(src: &str) -> Vec<(u16, Vec<IpAddr>)> {
        let config = crate::config::parse(src, "Proxyfile").expect("valid config");
        plan(&config)
            .into_iter()
            .map(|s| (s.port, s.bind))
            .collect()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_flood_sized_vector_is_not_kept() {
        let mut leaving: Vec<u64> = (0..10_000).collect();
        leaving.clear();
        forget_a_flood(&mut leaving);
        assert_eq!(leaving.capacity(), 0);
        let mut few: Vec<u64> = Vec::with_capacity(8);
        few.push(1);
        few.clear();
        forget_a_flood(&mut few);
        assert_eq!(few.capacity(), 8, "a small vector is kept for reuse");
    }

    #[test]
    fn redirect_port_of_a_loopback_https_site_binds_loopback_only() {
        let plan = plan_of(
            "options { http-port 8080 }\n\"https://127.0.0.1:8443\" { tls internal; respond \"s\" }\n\"http://127.0.0.1:8080\" { respond \"p\" }\n",
        );
        assert_eq!(
            plan,
            vec![(8443, ips(&["127.0.0.1"])), (8080, ips(&["127.0.0.1"]))]
        );
    }

    #[test]
    fn a_host_name_site_needs_every_interface_and_bind_narrows_it() {
        let plan = plan_of("app.example.com { proxy 8000 }\n");
        assert_eq!(plan, vec![(443, ips(&["::"])), (80, ips(&["::"]))]);
        let plan = plan_of("options { bind \"127.0.0.1\" }\napp.example.com { proxy 8000 }\n");
        assert_eq!(
            plan,
            vec![(443, ips(&["127.0.0.1"])), (80, ips(&["127.0.0.1"]))]
        );
    }

    #[test]
    fn ip_sites_on_one_port_bind_each_address() {
        let plan = plan_of(
            "\"http://127.0.0.1:8080\" { respond \"a\" }\n\"http://127.0.0.2:8080\" { respond \"b\" }\n",
        );
        assert_eq!(plan, vec![(8080, ips(&["127.0.0.1", "127.0.0.2"]))]);
    }
}
