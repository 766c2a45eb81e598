//! Which sockets to listen on, binding them, and the accept loop.
//!
//! Listeners are derived from the config and owned by the server, apart from
//! the router: replacing the router never closes a listening socket. A reload
//! diffs the new plan against the running one by port (see `reload`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
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

/// Binds `spec`. All-interfaces means dual-stack `[::]`, falling back to
/// `0.0.0.0` on hosts without IPv6.
pub(super) fn bind(spec: &ListenerSpec) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(spec.bind, spec.port);
    match bind_addr(addr) {
        Err(e) if spec.bind == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), spec.port);
            bind_addr(v4).map_err(|_| e)
        }
        result => result,
    }
}

fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // Restarting must not wait for TIME_WAIT sockets of the previous process.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until `stop` (a child of the shutdown token, so that a
/// reload can stop one port) and hands each to its own task. Connections
/// already accepted get `stop` too: they finish their current request and close.
pub(super) async fn accept_loop(
    listener: TcpListener,
    spec: ListenerSpec,
    stop: CancellationToken,
    shared: Arc<Shared>,
) {
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
