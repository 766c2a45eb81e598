//! `trusted-proxies`: peers whose forwarded-client headers are believed.
//!
//! ```kdl
//! options {
//!     trusted-proxies cloudflare "10.0.0.0/8"                 // Cloudflare's ranges + a network
//!     trusted-proxies cloudflare="/etc/bellhop/cf-ips.txt"    // the ranges from a file instead
//! }
//! ```
//!
//! `cloudflare` stands for Cloudflare's published ranges ([`CLOUDFLARE`]);
//! from those peers `CF-Connecting-IP` names the client (see
//! `proxy::ClientInfo`), from the other trusted peers `X-Forwarded-For` does.
//! The file form takes one address or network a line (`#` starts a comment),
//! e.g. the two lists Cloudflare publishes, concatenated; its path must be
//! absolute, since it is read while the Proxyfile is parsed.

use std::path::Path;

use super::error::{Problem, Problems};
use super::hosts::IpNet;
use super::model::Options;
use super::reader::Directive;
use super::values;

/// Cloudflare's IPv4 and IPv6 ranges as published at
/// <https://www.cloudflare.com/ips-v4> and <https://www.cloudflare.com/ips-v6>,
/// written down on 2026-12-02 from the lists as they have stood since 2023
/// (they change rarely). Written without network access, then checked the same
/// day against several independent copies of the published lists (the newest
/// fetched 2026-09-29): the 15 IPv4 and 7 IPv6 networks below, all equal.
/// Check them against those two pages when touching this file, or use
/// `cloudflare="file"` with a fresh download.
pub(crate) const CLOUDFLARE: &[&str] = &[
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

const USAGE: &str = "trusted-proxies cloudflare \"10.0.0.0/8\" \"192.168.1.7\"";

/// Reads `trusted-proxies …` into `o.trusted_proxies`, and Cloudflare's
/// ranges also into `o.cloudflare_proxies`.
pub(crate) fn read(d: &Directive<'_>, o: &mut Options, problems: &mut Problems) {
    d.check_props(&["cloudflare"], None, problems);
    d.check_no_children(problems);
    let file = d.prop("cloudflare");
    if file.is_none() && !d.check_arg_count(1, usize::MAX, USAGE, problems) {
        return;
    }
    let mut cloudflare = false;
    for arg in d.args() {
        if arg.value.as_string() == Some("cloudflare") {
            if file.is_some() {
                problems.push(
                    Problem::new("`cloudflare` is given twice")
                        .at(arg.span, "the built-in ranges")
                        .help("keep cloudflare=\"file\" to use the ranges in the file, or `cloudflare` for the built-in list"),
                );
            }
            cloudflare = true;
            continue;
        }
        if let Some(net) = super::access::network(&arg, USAGE, problems) {
            o.trusted_proxies.push(net);
        }
    }
    let ranges = match file {
        Some(v) => {
            let Some(path) = v.string(
                "a file path",
                "cloudflare=\"/etc/bellhop/cf-ips.txt\"",
                problems,
            ) else {
                return;
            };
            match read_file(Path::new(path)) {
                Ok(nets) => nets,
                Err(e) => {
                    let problem = Problem::new(format!(
                        "cannot use the Cloudflare ranges in `{path}`: {}",
                        e.message
                    ))
                    .at(v.span, "this file");
                    problems.push(match e.help {
                        Some(help) => problem.help(help),
                        None => problem,
                    });
                    return;
                }
            }
        }
        None if cloudflare => built_in(),
        None => return,
    };
    o.trusted_proxies.extend(&ranges);
    o.cloudflare_proxies.extend(ranges);
}

/// [`CLOUDFLARE`], parsed (a unit test checks every entry parses).
fn built_in() -> Vec<IpNet> {
    CLOUDFLARE
        .iter()
        .filter_map(|net| values::ip_net(net).ok())
        .collect()
}

/// One address or network a line; blank lines and `#` comments skipped.
fn read_file(path: &Path) -> Result<Vec<IpNet>, values::Invalid> {
    if path.is_relative() {
        return Err(values::Invalid::new("the path is relative")
            .help("write an absolute path, e.g. cloudflare=\"/etc/bellhop/cf-ips.txt\""));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        values::Invalid::new(e.to_string())
            .help("save Cloudflare's lists there, e.g. curl https://www.cloudflare.com/ips-v4 https://www.cloudflare.com/ips-v6 > cf-ips.txt")
    })?;
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let net = values::ip_net(line).map_err(|e| {
            values::Invalid::new(format!("line {}: {}", i + 1, e.message))
                .help("each line holds one address or network, e.g. 173.245.48.0/20")
        })?;
        nets.push(net);
    }
    if nets.is_empty() {
        return Err(values::Invalid::new("it lists no network")
            .help("each line holds one address or network, e.g. 173.245.48.0/20"));
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn covered(nets: &[IpNet], ip: &str) -> bool {
        let ip: IpAddr = ip.parse().unwrap();
        nets.iter().any(|n| n.contains(ip))
    }

    #[test]
    fn every_built_in_range_parses() {
        assert_eq!(built_in().len(), CLOUDFLARE.len());
        let nets = built_in();
        assert!(covered(&nets, "104.16.1.1"));
        assert!(covered(&nets, "2606:4700::6810:1"));
        assert!(!covered(&nets, "203.0.113.7"));
    }
}
