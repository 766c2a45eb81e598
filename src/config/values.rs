//! Parsers for the string values inside a Proxyfile: site addresses, upstreams,
//! durations, rates, networks and listen addresses.
//!
//! They know nothing about KDL or spans, so the CLI can use them for flags too
//! (`bellhop proxy --from app.example.com --to localhost:8000`). Each failure says
//! what is wrong and, separately, how to write it instead; the Proxyfile parser
//! turns the two halves into a diagnostic's message and help.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::hosts::{HostPattern, IpNet};
use super::model::{PathPattern, Scheme, SiteAddress, Upstream};

/// Why a value was rejected, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// What is wrong, e.g. "`localhost` has no port".
    pub message: String,
    /// The fix, e.g. "write host:port, e.g. localhost:8000".
    pub help: Option<String>,
}

impl Invalid {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
            help: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the help unless a more specific one is already there.
    fn or_help(mut self, help: &str) -> Self {
        self.help.get_or_insert_with(|| help.to_string());
        self
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.help {
            Some(help) => write!(f, "{} ({help})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// The help shown for every malformed duration.
pub(crate) const DURATION_HELP: &str =
    "write a whole number and a unit (ms, s, m, h, d), e.g. \"500ms\", \"90s\", \"5m\", \"24h\", \"7d\" or \"1h30m\"";

/// Parses a duration such as `"500ms"`, `"90s"`, `"5m"`, `"24h"`, `"7d"` or `"1h30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration(s).map_err(|e| e.to_string())
}

pub(crate) fn duration(s: &str) -> Result<Duration, Invalid> {
    let bad = |message: String| Err(Invalid::new(message).help(DURATION_HELP));
    if s.is_empty() {
        return bad("the duration is empty".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return bad(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, after) = after.split_at(unit_len);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if after.is_empty() => return bad(format!("`{s}` has no unit")),
            "" => return bad(format!("`{s}` is not a duration: unexpected `{after}`")),
            other => return bad(format!("`{other}` is not a duration unit in `{s}`")),
        };
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .map(Duration::from_millis);
        total = match part.and_then(|p| total.checked_add(p)) {
            Some(t) => t,
            None => return bad(format!("`{s}` is too long")),
        };
        rest = after;
    }
    Ok(total)
}

/// Parses an upstream: `localhost:8000`, `8000` (= 127.0.0.1:8000), `127.0.0.1:8000`,
/// `[::1]:8000`, `host:port`, `unix:/path.sock` or `http://host:port`.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    upstream(s).map_err(|e| e.to_string())
}

pub(crate) fn upstream(s: &str) -> Result<Upstream, Invalid> {
    const FORMS: &str = "write host:port (localhost:8000), a port (8000), \"[::1]:8000\", \"unix:/run/app.sock\" or \"http://host:port\"";
    if s.is_empty() {
        return Err(Invalid::new("the upstream is empty").help(FORMS));
    }
    if let Some(unix) = unix_upstream(s) {
        return unix;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let port = upstream_port(s, s)?;
        return Ok(Upstream::Tcp {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port,
        });
    }
    let lower = s.to_ascii_lowercase();
    let (authority, default_port) = if lower.starts_with("https://") {
        return Err(Invalid::new(format!("`{s}`: HTTPS upstreams are not supported yet"))
            .help(format!(
                "bellhop talks plain HTTP to backends on the same machine; write \"http://{}\" or use a unix socket",
                &s["https://".len()..]
            )));
    } else if let Some(rest) = lower.strip_prefix("http://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !(path.is_empty() || path == "/") {
            return Err(
                Invalid::new(format!("`{s}`: an upstream can't have a path (`{path}`)")).help(
                    format!("requests keep their own path; write \"http://{authority}\""),
                ),
            );
        }
        (authority.to_string(), Some(80))
    } else if let Some((scheme, _)) = lower.split_once("://") {
        return Err(Invalid::new(format!("`{s}`: unknown scheme `{scheme}://`")).help(FORMS));
    } else {
        (lower, None)
    };
    let (host, port) = split_host_port(&authority).map_err(|e| e.or_help(FORMS))?;
    let port = match (port, default_port) {
        (Some(p), _) => upstream_port(p, s)?,
        (None, Some(d)) => d,
        (None, None) => {
            return Err(
                Invalid::new(format!("upstream `{s}` has no port")).help(format!(
                    "write {}:PORT, e.g. {}:8000",
                    display_host(&host),
                    display_host(&host)
                )),
            )
        }
    };
    let host = match host {
        Host::Empty => Ipv4Addr::LOCALHOST.to_string(),
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => {
            check_dns_name(&name, s)?;
            name
        }
    };
    Ok(Upstream::Tcp { host, port })
}

/// `unix:/run/a.sock`, `unix:///run/a.sock` (URL style) or Caddy's
/// `unix//run/a.sock`; `None` when `s` is not a unix socket upstream.
fn unix_upstream(s: &str) -> Option<Result<Upstream, Invalid>> {
    let path = if let Some(path) = s.strip_prefix("unix:") {
        let path = path
            .strip_prefix("//")
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path);
        if path.is_empty() {
            return Some(Err(
                Invalid::new("the unix socket path is empty").help("write \"unix:/run/app.sock\"")
            ));
        }
        path
    } else {
        // Caddy spells sockets `unix//run/a.sock`; people migrating will write it.
        s.strip_prefix("unix/").filter(|p| p.starts_with('/'))?
    };
    Some(Ok(Upstream::Unix {
        path: PathBuf::from(path),
    }))
}

fn upstream_port(p: &str, whole: &str) -> Result<u16, Invalid> {
    match port(p) {
        Ok(0) => Err(
            Invalid::new(format!("`{whole}`: port 0 is not a backend port"))
                .help("give the port your backend listens on, e.g. 8000"),
        ),
        Ok(n) => Ok(n),
        Err(e) => Err(e),
    }
}

/// A port number 0–65535 written as decimal digits.
pub(crate) fn port(p: &str) -> Result<u16, Invalid> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(format!("`{p}` is not a port number"))
            .help("ports are whole numbers from 1 to 65535"));
    }
    p.parse::<u16>().map_err(|_| {
        Invalid::new(format!("port {p} is out of range"))
            .help("ports are whole numbers from 1 to 65535")
    })
}

/// The host part of `host:port`, before validation as a DNS name.
#[derive(Debug, PartialEq)]
enum Host {
    Empty,
    Ip(IpAddr),
    Name(String),
}

fn display_host(h: &Host) -> String {
    match h {
        Host::Empty => "localhost".into(),
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        Host::Ip(ip) => ip.to_string(),
        Host::Name(n) => n.clone(),
    }
}

/// Splits `host[:port]`, `[v6][:port]`; a bare IPv6 literal is ambiguous and rejected.
fn split_host_port(s: &str) -> Result<(Host, Option<&str>), Invalid> {
    if let Some(rest) = s.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(Invalid::new(format!("`{s}`: `[` without a closing `]`")));
        };
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| Invalid::new(format!("`{inside}` is not an IPv6 address")))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| Invalid::new(format!("`{s}`: expected `:port` after `]`")))?,
            ),
        };
        return Ok((Host::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if host.contains(':') {
        let hint = match s.parse::<Ipv6Addr>() {
            Ok(ip) => format!("put IPv6 addresses in brackets: \"[{ip}]:PORT\""),
            Err(_) => format!(
                "put IPv6 addresses in brackets: \"[{host}]:{}\"",
                port.unwrap_or("PORT")
            ),
        };
        return Err(Invalid::new(format!("`{s}` has too many `:`")).help(hint));
    }
    let host = if host.is_empty() {
        Host::Empty
    } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
        Host::Ip(IpAddr::V4(ip))
    } else {
        Host::Name(host.to_string())
    };
    Ok((host, port))
}

/// Checks a lowercased DNS name (without trailing dot): labels of letters, digits,
/// `-` and `_`, none empty or longer than 63 bytes.
fn check_dns_name(name: &str, whole: &str) -> Result<(), Invalid> {
    if !name.is_ascii() {
        return Err(Invalid::new(format!("`{whole}`: `{name}` is not ASCII"))
            .help("write internationalized names in their punycode form (xn--…)"));
    }
    if name.len() > 253 {
        return Err(Invalid::new(format!(
            "`{whole}`: the name is longer than 253 bytes"
        )));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(
                Invalid::new(format!("`{whole}`: `{name}` has an empty label"))
                    .help("remove the extra `.`"),
            );
        }
        if label.len() > 63 {
            return Err(Invalid::new(format!(
                "`{whole}`: `{label}` is longer than 63 bytes"
            )));
        }
        if let Some(c) = label
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(
                Invalid::new(format!("`{whole}`: `{c}` is not allowed in a host name"))
                    .help("host names use letters, digits, `-` and `.`"),
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Invalid::new(format!(
                "`{whole}`: a label can't start or end with `-`"
            )));
        }
    }
    Ok(())
}

/// Parses a site address: `app.example.com`, `*.example.com`, `localhost:8443`,
/// `http://127.0.0.1:18080`, `https://127.0.0.1:8443`, `[::1]:8443`, `:8080` or
/// `http://:8080`.
///
/// Without a scheme an address is HTTPS, except a bare port (`:8080`): with no
/// host name there is nothing to get a certificate for, so it is plain HTTP,
/// as in Caddy. Write `https://:8443` (with `tls`) for HTTPS on any host.
pub fn parse_site_address(s: &str) -> Result<SiteAddress, String> {
    site_address(s).map_err(|e| e.to_string())
}

pub(crate) fn site_address(s: &str) -> Result<SiteAddress, Invalid> {
    const FORMS: &str = "write a host name (app.example.com), \"*.example.com\", \"http://127.0.0.1:8080\", \"https://[::1]:8443\" or \":8080\"";
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = if let Some(rest) = lower.strip_prefix("http://") {
        (Some(Scheme::Http), rest)
    } else if let Some(rest) = lower.strip_prefix("https://") {
        (Some(Scheme::Https), rest)
    } else if let Some((scheme, _)) = lower.split_once("://") {
        return Err(Invalid::new(format!("`{s}`: unknown scheme `{scheme}://`"))
            .help("site addresses are http:// or https:// (the default)"));
    } else {
        (None, lower.as_str())
    };
    // A trailing `/` is harmless (`https://example.com/`); any other path is not.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(at) = rest.find('/') {
        return Err(Invalid::new(format!(
            "`{s}`: a site address can't have a path (`{}`)",
            &rest[at..]
        ))
        .help(format!(
            "use a route inside the site: {} {{ route \"{}/*\" {{ … }} }}",
            &rest[..at],
            rest[at..].trim_end_matches(['/', '*'])
        )));
    }
    if rest.is_empty() && scheme.is_none() {
        return Err(Invalid::new("the site address is empty").help(FORMS));
    }
    let (host, port) = split_host_port(rest).map_err(|e| e.or_help(FORMS))?;
    let port = port.map(port_in_address).transpose()?;
    let host = match host {
        Host::Empty => HostPattern::Any,
        Host::Ip(ip) => HostPattern::Ip(ip),
        Host::Name(name) => {
            let name = name.strip_suffix('.').unwrap_or(&name);
            if let Some(suffix) = name.strip_prefix("*.") {
                check_dns_name(suffix, s)?;
                HostPattern::Wildcard(suffix.to_string())
            } else if name.contains('*') {
                return Err(Invalid::new(format!(
                    "`{s}`: `*` may only stand for the whole first label"
                ))
                .help("write \"*.example.com\""));
            } else {
                check_dns_name(name, s)?;
                HostPattern::Name(name.to_string())
            }
        }
    };
    if host == HostPattern::Any && port.is_none() && scheme.is_none() {
        return Err(Invalid::new(format!("`{s}` has neither host nor port")).help(FORMS));
    }
    let scheme = scheme.unwrap_or(if host == HostPattern::Any {
        Scheme::Http
    } else {
        Scheme::Https
    });
    Ok(SiteAddress { scheme, host, port })
}

fn port_in_address(p: &str) -> Result<u16, Invalid> {
    port(p).map_err(|e| Invalid {
        help: Some("ports are whole numbers from 0 to 65535 (0 picks a free port)".into()),
        ..e
    })
}

/// Parses a network in CIDR form (`10.0.0.0/8`, `fd00::/8`) or a single address.
pub(crate) fn ip_net(s: &str) -> Result<IpNet, Invalid> {
    const HELP: &str =
        "write a network like \"10.0.0.0/8\" or \"fd00::/8\", or one address like \"192.0.2.7\"";
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| Invalid::new(format!("`{s}` is not an IP address or network")).help(HELP))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && !p.starts_with('+') => n,
            _ => {
                return Err(
                    Invalid::new(format!("`{s}`: the prefix length must be 0 to {max}")).help(HELP),
                )
            }
        },
    };
    Ok(IpNet { addr, prefix })
}

/// Parses a rate such as `20/s`, `100/m` or `1000/h` into requests per second.
pub(crate) fn rate(s: &str) -> Result<f64, Invalid> {
    const HELP: &str =
        "write requests per second, minute or hour: \"20/s\", \"100/m\" or \"1000/h\"";
    let Some((count, unit)) = s.split_once('/') else {
        return Err(Invalid::new(format!("`{s}` is not a rate")).help(HELP));
    };
    let seconds = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(Invalid::new(format!("`{unit}` is not a rate unit in `{s}`")).help(HELP)),
    };
    match count.parse::<u32>() {
        Ok(0) => Err(Invalid::new(format!("`{s}` allows no requests at all"))
            .help("to block a path, use respond \"Forbidden\" status=403")),
        Ok(n) if count.bytes().all(|b| b.is_ascii_digit()) => Ok(f64::from(n) / seconds),
        _ => Err(Invalid::new(format!("`{count}` is not a whole number in `{s}`")).help(HELP)),
    }
}

/// Parses the admin listener address: `127.0.0.1:2019`, `[::1]:2019` or
/// `localhost:2019`. It must be a loopback address: the admin API is unauthenticated.
pub(crate) fn admin_address(s: &str) -> Result<SocketAddr, Invalid> {
    const HELP: &str = "write a loopback address and port, e.g. \"127.0.0.1:2019\"";
    let (host, port) = split_host_port(s).map_err(|e| e.or_help(HELP))?;
    let Some(port) = port else {
        return Err(Invalid::new(format!("`{s}` has no port")).help(HELP));
    };
    let port = port_in_address(port)?;
    let ip = match host {
        Host::Ip(ip) => ip,
        Host::Name(n) if n == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Host::Empty | Host::Name(_) => {
            return Err(Invalid::new(format!("`{s}` is not an IP address and port")).help(HELP))
        }
    };
    if !ip.is_loopback() {
        return Err(
            Invalid::new(format!("`{ip}` is not a loopback address")).help(
                "the admin listener has no authentication, so it only listens on 127.0.0.1 or [::1]",
            ),
        );
    }
    Ok(SocketAddr::new(ip, port))
}

/// What a path pattern is for, as its errors name it: a route's pattern, or a
/// `rewrite=` target (written the same way, and in the same normal form).
#[derive(Clone, Copy)]
enum PatternUse {
    Route,
    RewriteTarget,
}

impl PatternUse {
    fn noun(self) -> &'static str {
        match self {
            PatternUse::Route => "route path",
            PatternUse::RewriteTarget => "rewrite target",
        }
    }

    /// Why a pattern not in normal form is wrong, after "is not in normal form".
    fn unnormal_because(self) -> &'static str {
        match self {
            PatternUse::Route => ", so no request path would match it",
            PatternUse::RewriteTarget => "",
        }
    }
}

/// Parses a route pattern: `/exact` or `/prefix/*` (which also matches `/prefix`).
pub(crate) fn path_pattern(s: &str) -> Result<PathPattern, Invalid> {
    pattern(s, PatternUse::Route)
}

/// Parses a `rewrite=` target: `/one/path` or `/prefix/*`, like a route pattern.
pub(crate) fn rewrite_target(s: &str) -> Result<PathPattern, Invalid> {
    pattern(s, PatternUse::RewriteTarget)
}

fn pattern(s: &str, used: PatternUse) -> Result<PathPattern, Invalid> {
    let noun = used.noun();
    const HELP: &str =
        "write \"/exact\" for one path or \"/prefix/*\" for a path and everything below it";
    if s.is_empty() {
        return Err(Invalid::new(format!("the {noun} is empty")).help(HELP));
    }
    if !s.starts_with('/') {
        let fixed = if s == "*" {
            "/*".to_string()
        } else {
            format!("/{s}")
        };
        return Err(
            Invalid::new(format!("{noun} `{s}` does not start with `/`"))
                .help(format!("write \"{fixed}\"")),
        );
    }
    if s.contains(['?', '#']) {
        return Err(Invalid::new(format!(
            "{noun} `{s}` has a query or fragment, which never takes part in matching"
        ))
        .help(HELP));
    }
    if let Some(prefix) = s.strip_suffix("/*") {
        if !prefix.contains('*') {
            normal_pattern(s, prefix, used)?;
            return Ok(PathPattern::Prefix(prefix.to_string()));
        }
    }
    if s.contains('*') {
        let base = s.split('*').next().unwrap_or("").trim_end_matches('/');
        return Err(
            Invalid::new(format!("{noun} `{s}`: `*` is only allowed as a final `/*`")).help(
                format!(
                    "write \"{base}/*\" to match {} and everything below it",
                    if base.is_empty() { "/" } else { base }
                ),
            ),
        );
    }
    normal_pattern(s, s, used)?;
    Ok(PathPattern::Exact(s.to_string()))
}

/// Requests are matched after their path is normalized (`http_path`), so a
/// pattern that is not in normal form (`/a/../b`, `/a//b`, `/%41`) could
/// never match what it seems to say: refused with the form that would.
fn normal_pattern(pattern: &str, path: &str, used: PatternUse) -> Result<(), Invalid> {
    let noun = used.noun();
    if path.is_empty() {
        return Ok(());
    }
    match crate::http_path::normalize(path) {
        Ok(normal) if normal == path => Ok(()),
        Ok(normal) => Err(Invalid::new(format!(
            "{noun} `{pattern}` is not in normal form{}",
            used.unnormal_because()
        ))
        .help(format!(
            "request paths are matched with dot segments removed, `//` merged and escapes of letters, digits and -._~ decoded; write \"{}\"",
            pattern.replacen(path, &normal, 1)
        ))),
        Err(refused) => Err(Invalid::new(format!("{noun} `{pattern}`: {refused}"))
            .help("such request paths are refused with 400, so no route can take them")),
    }
}
