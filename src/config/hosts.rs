//! Host and address rules, written once for every caller.
//!
//! The router (which site answers a Host), the SNI resolver (which certificate
//! answers a ClientHello), on-demand issuance (which names another site claims),
//! rate limits and forwarded headers all compare hosts and client addresses. If
//! each wrote its own rule they would drift apart (a wildcard matching two
//! labels in one place and one in another), so the rules live here:
//!
//! - [`normalize_host`]: a Host header, `:authority` or SNI name → the form
//!   patterns are stored in (lowercase, no port, no brackets, no trailing dot);
//! - [`HostPattern::matches`] and [`wildcard_suffix`]: `*.example.com` covers
//!   exactly one label;
//! - [`canonical_ip`]: IPv4 peers seen through a dual-stack socket as
//!   `::ffff:a.b.c.d` are IPv4;
//! - [`IpNet`]: CIDR networks (`trusted-proxies`).

use std::borrow::Cow;
use std::net::IpAddr;

/// Host part of a site address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// A DNS name, lowercased, without trailing dot.
    Name(String),
    /// `*.example.com`: any single label in front of the stored suffix `example.com`.
    Wildcard(String),
    /// An IP literal such as `127.0.0.1` or `::1`.
    Ip(IpAddr),
    /// No host (`":8080"`, `"http://:8080"`): every Host on that port.
    Any,
}

impl HostPattern {
    /// Whether this pattern answers `host`, given in [`normalize_host`] form.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Name(name) => name == host,
            HostPattern::Wildcard(suffix) => wildcard_suffix(host) == Some(suffix.as_str()),
            HostPattern::Ip(ip) => host
                .parse::<IpAddr>()
                .is_ok_and(|h| canonical_ip(h) == canonical_ip(*ip)),
            HostPattern::Any => true,
        }
    }
}

/// The suffix a `*.suffix` pattern must have to cover `host` (normalised):
/// everything after the first label. A wildcard stands for exactly one
/// non-empty label, so `a.example.com` is covered by `*.example.com` but
/// `a.b.example.com` and `example.com` are not. `None` for a single label.
///
/// Because one label is all a wildcard may take, at most one wildcard pattern
/// can cover a host: callers look this suffix up instead of scanning patterns.
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    match host.split_once('.') {
        Some((label, suffix)) if !label.is_empty() && !suffix.is_empty() => Some(suffix),
        _ => None,
    }
}

/// Normalises a Host header, `:authority`, SNI name or configured name for
/// lookup: port and IPv6 brackets removed, a trailing dot dropped, lowercased
/// (borrowed when already in that form).
///
/// A bare IPv6 address (`::1`, as written in configs) is kept whole: only a
/// single colon followed by digits is read as a port.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        // Bytes, not a char search: this runs on every request.
        match raw.bytes().position(|b| b == b':') {
            Some(colon) if raw.as_bytes()[colon + 1..].iter().all(u8::is_ascii_digit) => {
                &raw[..colon]
            }
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// A client reached over a dual-stack socket shows up as `::ffff:a.b.c.d`;
/// everything downstream (backends, access lists, rate-limit buckets, leaf
/// certificates for the local address) means the plain IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An IP network in CIDR form, e.g. `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// Network address (host bits may be set; they are ignored when matching).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 peers match IPv4 nets.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("App.Example.com:8443"), "app.example.com");
        assert_eq!(normalize_host("[::1]:8080"), "::1");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("fe80::1:8080"), "fe80::1:8080");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("Example.com.:80"), "example.com");
        assert_eq!(normalize_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(normalize_host("127.0.0.1:80"), "127.0.0.1");
        assert!(matches!(normalize_host("a.test"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        let wild = HostPattern::Wildcard("example.com".into());
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("shop.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("a.b.example.com"));
        assert!(!wild.matches("xexample.com"));
        assert!(!wild.matches(".example.com"));
        assert_eq!(wildcard_suffix("a.example.com"), Some("example.com"));
        assert_eq!(wildcard_suffix("localhost"), None);
        assert_eq!(wildcard_suffix("a."), None);
    }

    #[test]
    fn names_ips_and_any() {
        assert!(HostPattern::Name("app.test".into()).matches("app.test"));
        assert!(!HostPattern::Name("app.test".into()).matches("www.app.test"));
        let ip = HostPattern::Ip("127.0.0.1".parse().unwrap());
        assert!(ip.matches("127.0.0.1"));
        assert!(ip.matches("::ffff:127.0.0.1"));
        assert!(!ip.matches("127.0.0.2"));
        assert!(!ip.matches("localhost"));
        assert!(HostPattern::Any.matches("anything.test"));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical_ip(v6), v6);
        let net = IpNet {
            addr: "192.0.2.0".parse().unwrap(),
            prefix: 24,
        };
        assert!(net.contains(mapped));
    }
}
