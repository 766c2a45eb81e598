//! Which sockets to listen on, binding them, and the accept loop.
//!
//! Listeners are derived from the config and owned by the server, apart from
//! the router: replacing the router never closes a listening socket. A reload
//! diffs the new plan against the running one by port (see `reload`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::connection::{self, Accepted};
use super::{https, Shared};
use crate::config::{Config, HostPattern, Scheme};

/// A socket bellhop listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListenerSpec {
    /// The port as configured (0 = ephemeral); the router's key for this listener.
    pub port: u16,
    /// Address to bind: a site's IP when every site on the port names the same
    /// IP, else all interfaces.
    pub bind: IpAddr,
    /// Whether connections start with a TLS handshake.
    pub scheme: Scheme,
}

/// Listeners needed by `config`, in order of first appearance. The plain HTTP
/// port is added when an HTTPS site needs its redirect (and ACME HTTP-01).
pub(super) fn plan(config: &Config) -> Vec<ListenerSpec> {
    let options = &config.options;
    let mut specs: Vec<ListenerSpec> = Vec::new();
    let mut add = |port: u16, host: Option<&HostPattern>, scheme: Scheme| {
        let ip = match host {
            Some(HostPattern::Ip(ip)) => Some(*ip),
            _ => None,
        };
        match specs.iter_mut().find(|s| s.port == port) {
            Some(spec) => {
                if Some(spec.bind) != ip {
                    spec.bind = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                }
            }
            None => specs.push(ListenerSpec {
                port,
                bind: ip.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
                scheme,
            }),
        }
    };
    for site in &config.sites {
        for address in &site.addresses {
            add(
                address.effective_port(options),
                Some(&address.host),
                address.scheme,
            );
        }
    }
    let needs_http = config
        .sites
        .iter()
        .flat_map(|s| &s.addresses)
        .any(|a| a.scheme == Scheme::Https && a.effective_port(options) != options.http_port);
    if needs_http {
        add(options.http_port, None, Scheme::Http);
    }
    specs
}

/// Binds `spec` once per worker: `count` sockets on the same address with
/// `SO_REUSEPORT`, so each worker accepts on its own socket and the kernel
/// spreads connections over them. For port 0 the first socket picks the port
/// and the others join it. All-interfaces means dual-stack `[::]`, falling back
/// to `0.0.0.0` on hosts without IPv6.
pub(super) fn bind(spec: &ListenerSpec, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let addr = SocketAddr::new(spec.bind, spec.port);
    match bind_group(addr, count) {
        Err(e) if spec.bind == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), spec.port);
            bind_group(v4, count).map_err(|_| e)
        }
        result => result,
    }
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
    // The accept loop runs on a worker's runtime, which needs it non-blocking.
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts connections until `stop` (a child of the shutdown token, so that a
/// reload can stop one port) and hands each to its own task on the runtime
/// this runs on (a worker's). Connections already accepted get `stop` too:
/// they finish their current request and close.
pub(super) async fn accept_loop(
    socket: std::net::TcpListener,
    spec: ListenerSpec,
    stop: CancellationToken,
    shared: Arc<Shared>,
) {
    // Registered here, with the reactor of the worker that will accept on it.
    let listener = match TcpListener::from_std(socket) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, port = spec.port, "cannot accept on a listening socket");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, mut peer)) => {
                // Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d.
                peer.set_ip(crate::config::canonical_ip(peer.ip()));
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let accepted = Accepted {
                    peer,
                    port: spec.port,
                    scheme: spec.scheme,
                };
                spawn_connection(stream, accepted, &shared, &stop);
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: the socket is fine, the process is
                // out of something. Pause instead of spinning on the error.
                tracing::warn!(error = %e, port = spec.port, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one accepted connection on its own task, tracked for shutdown.
fn spawn_connection(
    stream: TcpStream,
    accepted: Accepted,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) {
    let tasks = &shared.background.tasks;
    let (shared, stop) = (shared.clone(), stop.clone());
    match accepted.scheme {
        Scheme::Https => tasks.spawn(https::serve_tls(stream, accepted, shared, stop)),
        Scheme::Http => tasks.spawn(connection::serve_http1(stream, accepted, shared, stop)),
    };
}
