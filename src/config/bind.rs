//! `bind "127.0.0.1"` (in `options` for every site, or in one site) and which
//! local address each listening port binds.
//!
//! A port binds what its sites' addresses say: the `bind` address when one is
//! given, a site's IP when it is addressed by IP (`"https://127.0.0.1:8443"`),
//! and every interface only where a host-name site needs it. The plain-HTTP
//! port that carries an HTTPS site's redirects and ACME challenges follows the
//! same rule for that site, so a loopback-only site never opens `[::]:80`.
//!
//! One listener serves every site on its port and picks the site by Host, so
//! a site with `bind` cannot share its port with a site that listens wider
//! (the wider socket would also reach the bound site): that is an error here,
//! where the file and line are known.

use std::net::IpAddr;

use super::error::{Problem, Problems};
use super::hosts::{canonical_ip, HostPattern};
use super::model::{Options, Scheme, Site};
use super::options::OptionsBlock;
use super::reader::Directive;
use super::site::SiteBlock;
use super::values::Invalid;

/// What one site address asks of the socket on its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// `bind` (the site's, else the options'): this address and no other.
    Bind(IpAddr),
    /// An address written as an IP: that address, unless another site on the
    /// port needs more.
    Address(IpAddr),
    /// A host name (or no host at all): every interface.
    Everywhere,
}

/// One site address's use of a listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortUse {
    /// The port as configured (0 = ephemeral).
    pub port: u16,
    /// The protocol spoken on it.
    pub scheme: Scheme,
    /// Which local address it needs.
    pub need: Need,
    /// Index of the site in the file, and of the address in the site.
    pub site: usize,
    /// See `site`.
    pub address: usize,
    /// Whether this use is the redirect (and ACME) port of an HTTPS address.
    pub redirect: bool,
}

/// Every port use of `sites`, in file order, then the `http-port` uses of
/// HTTPS addresses (their redirects and ACME HTTP-01).
pub(crate) fn port_uses<'a>(
    options: &Options,
    sites: impl Iterator<Item = &'a Site> + Clone,
) -> Vec<PortUse> {
    let mut uses = Vec::new();
    let mut redirects = Vec::new();
    for (i, site) in sites.enumerate() {
        for (j, address) in site.addresses.iter().enumerate() {
            let need = match (site.bind.or(options.bind), &address.host) {
                (Some(ip), _) => Need::Bind(ip),
                (None, HostPattern::Ip(ip)) => Need::Address(*ip),
                (None, _) => Need::Everywhere,
            };
            let port = address.effective_port(options);
            let base = PortUse {
                port,
                scheme: address.scheme,
                need,
                site: i,
                address: j,
                redirect: false,
            };
            uses.push(base);
            if address.scheme == Scheme::Https && port != options.http_port {
                redirects.push(PortUse {
                    port: options.http_port,
                    scheme: Scheme::Http,
                    redirect: true,
                    ..base
                });
            }
        }
    }
    uses.extend(redirects);
    uses
}

/// Reads `bind "127.0.0.1"` (options or site level).
pub(super) fn parse(d: &Directive<'_>, problems: &mut Problems) -> Option<IpAddr> {
    const USAGE: &str = "bind \"127.0.0.1\"";
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    arg.parse_string("an IP address", USAGE, ip, problems)
}

fn ip(text: &str) -> Result<IpAddr, Invalid> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>().map(canonical_ip).map_err(|_| {
        Invalid::new(format!("`{text}` is not an IP address"))
            .help("bind takes the local IP address to listen on, e.g. bind \"127.0.0.1\" or bind \"::1\"; without it a site listens where its address says")
    })
}

/// Sites that share a port must agree on its address when any of them has a
/// `bind` (see the module docs).
pub(super) fn check(options: &OptionsBlock, sites: &[SiteBlock], problems: &mut Problems) {
    let uses = port_uses(&options.options, sites.iter().map(|b| &b.site));
    let mut reported: Vec<u16> = Vec::new();
    for (k, a) in uses.iter().enumerate() {
        let Need::Bind(ip) = a.need else { continue };
        if reported.contains(&a.port) {
            continue;
        }
        let clash = uses[..k].iter().chain(&uses[k + 1..]).find(|b| {
            b.port == a.port && !matches!(b.need, Need::Bind(x) | Need::Address(x) if x == ip)
        });
        let Some(b) = clash else { continue };
        reported.push(a.port);
        let wants = match b.need {
            Need::Bind(x) | Need::Address(x) => format!("listens on {x}"),
            Need::Everywhere => "needs every interface (a host name)".to_string(),
        };
        let label = |u: &PortUse| {
            if u.redirect {
                format!("its redirects use port {} (http-port)", u.port)
            } else {
                format!("port {}", u.port)
            }
        };
        let span = |u: &PortUse| sites[u.site].address_spans[u.address];
        let address = |u: &PortUse| sites[u.site].site.addresses[u.address].to_string();
        problems.push(
            Problem::new(format!(
                "port {} is bound to {ip} for `{}`, but `{}` {wants}",
                a.port,
                address(a),
                address(b)
            ))
            .at(span(a), format!("bound to {ip}; {}", label(a)))
            .at(span(b), label(b))
            .help("one socket serves every site on a port: give these sites the same `bind`, or give one of them another port"),
        );
    }
}
