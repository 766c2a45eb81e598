//! Who sent a request, settled once per request.
//!
//! The TCP peer is a fact; `X-Forwarded-For` is a claim, believed only from a
//! peer in `trusted-proxies`, and `CF-Connecting-IP` only from a peer in
//! Cloudflare's ranges (`trusted-proxies cloudflare`). Reading the claim here, next to the code that
//! writes it for the upstream (`headers`), keeps its format in one module and
//! lets the rate limit, the upstream's `X-Forwarded-*` and the access log all
//! read the same value instead of each parsing the header again.

use std::net::IpAddr;

use http::HeaderMap;

use super::headers::{CF_CONNECTING_IP, X_FORWARDED_FOR};
use crate::config::Scheme;

/// The client side of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientInfo {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// Whether the peer is in `trusted-proxies`, so its `X-Forwarded-*` are kept.
    pub trusted: bool,
    /// The address held responsible for the request (rate limits, access
    /// lists, logs): the peer; from a Cloudflare peer its `CF-Connecting-IP`;
    /// else behind trusted proxies the right-most `X-Forwarded-For` entry
    /// that is not one of them.
    pub ip: IpAddr,
    /// How the client spoke to bellhop (`X-Forwarded-Proto` unless a trusted
    /// proxy already said).
    pub scheme: Scheme,
}

impl ClientInfo {
    /// Resolves the client of a request that arrived from `peer` over
    /// `scheme`; `is_trusted` says whether an address is a trusted proxy,
    /// `is_cloudflare` whether it is one of Cloudflare's.
    pub(crate) fn resolve(
        peer: IpAddr,
        scheme: Scheme,
        headers: &HeaderMap,
        is_trusted: impl Fn(IpAddr) -> bool,
        is_cloudflare: impl Fn(IpAddr) -> bool,
    ) -> ClientInfo {
        let trusted = is_trusted(peer);
        let ip = if !trusted {
            peer
        } else if let Some(ip) = is_cloudflare(peer)
            .then(|| cloudflare_client(headers))
            .flatten()
        {
            ip
        } else {
            forwarded_client(headers, &is_trusted).unwrap_or(peer)
        };
        ClientInfo {
            peer,
            trusted,
            ip,
            scheme,
        }
    }
}

/// `CF-Connecting-IP`: Cloudflare's one address for the client it connected
/// from (its `X-Forwarded-For` may carry the client's own claims in front).
fn cloudflare_client(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get(&CF_CONNECTING_IP)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The right-most `X-Forwarded-For` entry that is not a trusted proxy: each
/// proxy appends the address it saw, so entries left of the first untrusted one
/// (from the right) are the client's own claims.
fn forwarded_client(headers: &HeaderMap, is_trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let entries = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    entries.into_iter().rev().find(|ip| !is_trusted(*ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolve(peer: &str, xff: &[&str]) -> ClientInfo {
        resolve_cf(peer, xff, None)
    }

    /// 10.0.0.0/8 are the trusted proxies, 10.9.0.0/16 of them Cloudflare's.
    fn resolve_cf(peer: &str, xff: &[&str], cf: Option<&str>) -> ClientInfo {
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        if let Some(cf) = cf {
            headers.insert(&CF_CONNECTING_IP, HeaderValue::from_str(cf).unwrap());
        }
        let trusted = |ip: IpAddr| matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10);
        let cloudflare = |ip: IpAddr| matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [10, 9]);
        ClientInfo::resolve(
            peer.parse().unwrap(),
            Scheme::Http,
            &headers,
            trusted,
            cloudflare,
        )
    }

    #[test]
    fn cf_connecting_ip_is_believed_only_from_cloudflare() {
        let from_cf = resolve_cf("10.9.0.1", &["6.6.6.6, 198.51.100.4"], Some("203.0.113.5"));
        assert_eq!(from_cf.ip, ip("203.0.113.5"));
        // Another trusted proxy: X-Forwarded-For rules.
        let from_lb = resolve_cf("10.1.0.1", &["198.51.100.4"], Some("203.0.113.5"));
        assert_eq!(from_lb.ip, ip("198.51.100.4"));
        // An untrusted peer is the client, whatever it says.
        let direct = resolve_cf("192.0.2.1", &[], Some("203.0.113.5"));
        assert_eq!(direct.ip, ip("192.0.2.1"));
        // Cloudflare without the header (or with garbage): X-Forwarded-For rules.
        let bare = resolve_cf("10.9.0.1", &["198.51.100.4"], Some("nope"));
        assert_eq!(bare.ip, ip("198.51.100.4"));
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let client = resolve("192.0.2.1", &["203.0.113.9"]);
        assert!(!client.trusted);
        assert_eq!(client.ip, ip("192.0.2.1"));
    }

    #[test]
    fn trusted_peer_names_the_right_most_untrusted_entry() {
        let client = resolve("10.0.0.1", &["198.51.100.1, 203.0.113.9", "10.0.0.2"]);
        assert!(client.trusted);
        assert_eq!(client.peer, ip("10.0.0.1"));
        assert_eq!(client.ip, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_peer_without_a_usable_entry_is_the_client() {
        assert_eq!(resolve("10.0.0.1", &[]).ip, ip("10.0.0.1"));
        assert_eq!(
            resolve("10.0.0.1", &["unknown, 10.0.0.3"]).ip,
            ip("10.0.0.1")
        );
    }
}
