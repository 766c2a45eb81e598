//! Who sent a request, settled once per request.
//!
//! The TCP peer is a fact; `X-Forwarded-For` is a claim, believed only from a
//! peer in `trusted-proxies`. Reading the claim here, next to the code that
//! writes it for the upstream (`headers`), keeps its format in one module and
//! lets the rate limit, the upstream's `X-Forwarded-*` and the access log all
//! read the same value instead of each parsing the header again.

use std::net::IpAddr;

use http::HeaderMap;

use super::headers::X_FORWARDED_FOR;
use crate::config::Scheme;

/// The client side of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientInfo {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// Whether the peer is in `trusted-proxies`, so its `X-Forwarded-*` are kept.
    pub trusted: bool,
    /// The address held responsible for the request (rate limits, logs): the
    /// peer, or behind trusted proxies the right-most `X-Forwarded-For` entry
    /// that is not one of them.
    pub ip: IpAddr,
    /// How the client spoke to bellhop (`X-Forwarded-Proto` unless a trusted
    /// proxy already said).
    pub scheme: Scheme,
}

impl ClientInfo {
    /// Resolves the client of a request that arrived from `peer` over
    /// `scheme`; `is_trusted` says whether an address is a trusted proxy.
    pub(crate) fn resolve(
        peer: IpAddr,
        scheme: Scheme,
        headers: &HeaderMap,
        is_trusted: impl Fn(IpAddr) -> bool,
    ) -> ClientInfo {
        let trusted = is_trusted(peer);
        let ip = if trusted {
            forwarded_client(headers, &is_trusted).unwrap_or(peer)
        } else {
            peer
        };
        ClientInfo {
            peer,
            trusted,
            ip,
            scheme,
        }
    }
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
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        // 10.0.0.0/8 are the trusted proxies.
        let trusted = |ip: IpAddr| matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10);
        ClientInfo::resolve(peer.parse().unwrap(), Scheme::Http, &headers, trusted)
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
