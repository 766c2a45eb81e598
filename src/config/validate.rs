//! Checks across sites: every address belongs to one site, every port speaks
//! one protocol, and the admin listener doesn't take a site's port.
//!
//! These need the whole file (and the options' default ports), so they run after
//! each site has been read on its own.

use std::collections::HashMap;

use miette::SourceSpan;

use super::error::{Problem, Problems};
use super::hosts::HostPattern;
use super::model::Scheme;
use super::options::OptionsBlock;
use super::site::SiteBlock;

/// Runs every cross-site check, recording problems.
pub(crate) fn check(options: &OptionsBlock, sites: &[SiteBlock], problems: &mut Problems) {
    duplicate_addresses(options, sites, problems);
    port_protocols(options, sites, problems);
    admin_port(options, sites, problems);
    super::bind::check(options, sites, problems);
    super::storage::check_shared_limits(options, sites, problems);
}

/// Each (scheme, host, port) may appear only once in the whole file.
fn duplicate_addresses(options: &OptionsBlock, sites: &[SiteBlock], problems: &mut Problems) {
    let mut seen: Vec<((Scheme, HostPattern, u16), SourceSpan)> = Vec::new();
    for block in sites {
        for (address, span) in block.site.addresses.iter().zip(&block.address_spans) {
            let key = (
                address.scheme,
                address.host.clone(),
                address.effective_port(&options.options),
            );
            match seen.iter().find(|(k, _)| *k == key).map(|(_, s)| s) {
                Some(first) => problems.push(
                    Problem::new(format!("address `{address}` is given twice"))
                        .at(*span, "given again here")
                        .at(*first, "first given here")
                        .help("each address belongs to one site; merge the two, or remove one"),
                ),
                None => seen.push((key, *span)),
            }
        }
    }
}

/// A port is either plain HTTP or HTTPS. `http-port` is always plain HTTP when
/// any site serves HTTPS, because it carries the redirects and ACME challenges.
/// Port 0 asks the OS for a free port per listener, so it never collides.
fn port_protocols(options: &OptionsBlock, sites: &[SiteBlock], problems: &mut Problems) {
    let http_port = options.options.http_port;
    if http_port == options.options.https_port {
        // Already reported with the options; every HTTPS address would repeat it.
        return;
    }
    let mut first_http: HashMap<u16, SourceSpan> = HashMap::new();
    let mut first_https: HashMap<u16, SourceSpan> = HashMap::new();
    let mut reported: Vec<u16> = Vec::new();
    let addresses = sites
        .iter()
        .flat_map(|b| b.site.addresses.iter().zip(b.address_spans.iter()));
    for (address, span) in addresses {
        let port = address.effective_port(&options.options);
        if port == 0 {
            continue;
        }
        match address.scheme {
            Scheme::Https if port == http_port => {
                let mut problem = Problem::new(format!(
                    "HTTPS address `{address}` uses port {port}, bellhop's plain-HTTP port"
                ))
                .at(*span, "HTTPS on the http-port");
                if let Some(http_span) = options.span_of("http-port") {
                    problem = problem.at(http_span, "http-port set here");
                }
                problems.push(problem.help(format!(
                    "port {port} (http-port) carries redirects to HTTPS and ACME challenges; give this address another port, or change http-port in options"
                )));
            }
            Scheme::Https => {
                first_https.entry(port).or_insert(*span);
                if let Some(http) = first_http.get(&port) {
                    if !reported.contains(&port) {
                        reported.push(port);
                        problems.push(mixed_port(port, *span, *http));
                    }
                }
            }
            Scheme::Http => {
                first_http.entry(port).or_insert(*span);
                if let Some(https) = first_https.get(&port) {
                    if !reported.contains(&port) {
                        reported.push(port);
                        problems.push(mixed_port(port, *span, *https));
                    }
                }
            }
        }
    }
}

fn mixed_port(port: u16, span: SourceSpan, other: SourceSpan) -> Problem {
    Problem::new(format!("port {port} is used for both plain HTTP and HTTPS"))
        .at(span, "this address")
        .at(other, "and this one")
        .help("a port speaks one protocol; give one of the two addresses another port (no scheme means HTTPS on https-port; http:// means plain HTTP on http-port)")
}

/// The admin listener needs a port of its own.
fn admin_port(options: &OptionsBlock, sites: &[SiteBlock], problems: &mut Problems) {
    let Some(admin) = options.options.admin else {
        return;
    };
    if admin.port() == 0 {
        return;
    }
    let clash = sites
        .iter()
        .flat_map(|b| b.site.addresses.iter().zip(b.address_spans.iter()))
        .find(|(a, _)| a.effective_port(&options.options) == admin.port());
    if let Some((address, span)) = clash {
        let mut problem = Problem::new(format!(
            "the admin listener and site `{address}` both use port {}",
            admin.port()
        ))
        .at(*span, "site address");
        if let Some(admin_span) = options.span_of("admin") {
            problem = problem.at(admin_span, "admin listener");
        }
        problems.push(
            problem
                .help("give the admin listener a port of its own, e.g. admin \"127.0.0.1:2019\""),
        );
    }
}
