//! Header rewriting between client and upstream.
//!
//! Hop-by-hop headers describe one TCP connection and must not travel past the
//! proxy (RFC 9110 §7.6.1); `X-Forwarded-*` tell the backend who the client is.
//! Forwarded headers from peers we do not trust are dropped, not appended to,
//! so a client cannot forge its address to the backend.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::ClientInfo;
use crate::config::{canonical_ip, Scheme};

/// `X-Forwarded-For`: the chain of client addresses.
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: `http` or `https` as the client spoke to us.
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the Host the client asked for.
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `CF-Connecting-IP`: the client's address, as Cloudflare saw it.
pub(crate) static CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");
/// `X-Forwarded-Prefix`: the path prefix a `strip-prefix` route took off.
pub(crate) static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Whether `name` only concerns one hop: such headers are removed in both
/// directions. `Connection` and `Upgrade` are put back by the caller on
/// upgrade requests. A match on the name's text, not a list of
/// `HeaderName`s: every name of every message is checked, and this is one
/// length switch and a compare, where nine `HeaderName` comparisons were
/// ~400 instructions per request (callgrind).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names (no hashing)
    // spares the lookups.
    if headers.keys().any(is_hop_by_hop) {
        remove_present_hop_by_hop(headers);
    }
}

/// [`remove_hop_by_hop`] for a message known to carry some.
fn remove_present_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in Connection are hop-by-hop too. Collect them only when the
    // header lists something beyond the usual keep-alive/close/upgrade tokens.
    let mut extra: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("close")
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                extra.push(name);
            }
        }
    }
    for name in extra {
        headers.remove(name);
    }
    // `TE: trailers` is the one TE value that must reach gRPC-style backends.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n)).cloned() {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Whether a request asks to switch protocols (WebSocket and friends):
/// `Connection` carries the `upgrade` token and an `Upgrade` header is present.
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_upgrade(headers)
}

fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    })
}

/// Rewrites a client request's headers for the upstream.
///
/// `host` is what the client asked for (Host, or `:authority` on h2); it is kept
/// as the Host the backend sees and reported in `X-Forwarded-Host`.
pub(crate) fn rewrite_request(
    headers: &mut HeaderMap,
    client: &ClientInfo,
    host: Option<&HeaderValue>,
    upgrade: bool,
) {
    // One pass over the names says which of the lookups below can be
    // skipped: most requests carry no hop-by-hop and no forwarding header,
    // and each hashed lookup of the map costs ~100 instructions.
    let mut present = Present::in_names(headers);
    if present.hop_by_hop {
        let upgrade_value = if upgrade {
            headers.get(header::UPGRADE).cloned()
        } else {
            None
        };
        remove_present_hop_by_hop(headers);
        if let Some(value) = upgrade_value {
            headers.insert(header::UPGRADE, value);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        // `Connection` may have named forwarding headers too.
        present = Present::in_names(headers);
    }

    if !client.trusted && present.forwarding {
        remove_forwarded(headers);
        present = Present::default();
    }

    let peer = canonical_ip(client.peer);
    let previous = if present.for_ {
        headers.get(&X_FORWARDED_FOR)
    } else {
        None
    };
    let chain = match previous {
        Some(previous) => appended(previous, peer),
        None => peer_value(peer),
    };
    if let Some(value) = chain {
        headers.insert(&X_FORWARDED_FOR, value);
    }

    if !present.proto {
        let proto = match client.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if let Some(host) = host {
        if !present.host {
            headers.insert(&X_FORWARDED_HOST, host.clone());
        }
        headers.insert(header::HOST, host.clone());
    }
}

/// Which of the headers `rewrite_request` handles a request carries.
#[derive(Debug, Default)]
struct Present {
    /// Any hop-by-hop header ([`is_hop_by_hop`]).
    hop_by_hop: bool,
    /// Any header [`is_forwarding`] names.
    forwarding: bool,
    /// `X-Forwarded-For`.
    for_: bool,
    /// `X-Forwarded-Proto`.
    proto: bool,
    /// `X-Forwarded-Host`.
    host: bool,
}

impl Present {
    fn in_names(headers: &HeaderMap) -> Self {
        let mut present = Present::default();
        for name in headers.keys() {
            let text = name.as_str();
            if let Some(which) = text.strip_prefix(X_FORWARDED) {
                present.forwarding = true;
                match which {
                    "for" => present.for_ = true,
                    "proto" => present.proto = true,
                    "host" => present.host = true,
                    _ => {}
                }
            } else if is_forwarding(name) {
                present.forwarding = true;
            } else if is_hop_by_hop(name) {
                present.hop_by_hop = true;
            }
        }
        present
    }
}

/// `previous, peer` for a request that already passed trusted proxies.
fn appended(previous: &HeaderValue, peer: IpAddr) -> Option<HeaderValue> {
    let previous = previous.to_str().ok()?;
    let mut chain = String::with_capacity(previous.len() + 2 + 39);
    // Writing into a String cannot fail.
    let _ = write!(chain, "{previous}, {peer}");
    HeaderValue::from_str(&chain).ok()
}

/// `X-Forwarded-For` for a request with no earlier entries: the peer's
/// address. Rendering it costs two allocations; each thread keeps the last
/// one, and consecutive requests on a thread (a keep-alive connection's, a
/// benchmark's) mostly come from the same peer, so they share it.
fn peer_value(peer: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
    }
    let render = || HeaderValue::from_str(&peer.to_string()).ok();
    LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some((ip, value)) if *ip == peer => Some(value.clone()),
            _ => {
                let value = render()?;
                *last = Some((peer, value.clone()));
                Some(value)
            }
        }
    })
    .unwrap_or_else(|_| render())
}

/// Drops `Forwarded`, `CF-Connecting-IP` and every `X-Forwarded-*` (For,
/// Proto, Host, Port, Prefix, ...): from an untrusted peer they are claims,
/// not facts, and a backend behind Cloudflare may believe `CF-Connecting-IP`.
fn remove_forwarded(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_forwarding(n))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// The prefix of every `X-Forwarded-*` name.
const X_FORWARDED: &str = "x-forwarded-";

/// `Forwarded`, `CF-Connecting-IP` or any `X-Forwarded-*`: what
/// [`remove_forwarded`] drops.
fn is_forwarding(name: &HeaderName) -> bool {
    name == header::FORWARDED || name == CF_CONNECTING_IP || name.as_str().starts_with(X_FORWARDED)
}

/// Rewrites an upstream response's headers for the client. A `101 Switching
/// Protocols` keeps `Upgrade`/`Connection`, which the client needs to switch.
pub(crate) fn rewrite_response(headers: &mut HeaderMap, switching_protocols: bool) {
    if switching_protocols {
        return;
    }
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(trusted: bool) -> ClientInfo {
        let peer = "::ffff:192.0.2.7".parse().unwrap();
        ClientInfo {
            peer,
            trusted,
            ip: peer,
            scheme: Scheme::Https,
        }
    }

    #[test]
    fn connection_named_headers_and_fixed_list_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key(header::CONNECTION));
        assert!(!h.contains_key("keep-alive"));
        assert!(!h.contains_key(header::TRANSFER_ENCODING));
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("x-kept").unwrap(), "yes");
    }

    #[test]
    fn untrusted_forwarded_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, "6.6.6.6".parse().unwrap());
        h.insert(&X_FORWARDED_PROTO, "gopher".parse().unwrap());
        h.insert("x-forwarded-port", "443".parse().unwrap());
        h.insert(header::FORWARDED, "for=6.6.6.6".parse().unwrap());
        h.insert(&CF_CONNECTING_IP, "6.6.6.6".parse().unwrap());
        let host = HeaderValue::from_static("app.example.com");
        rewrite_request(&mut h, &client(false), Some(&host), false);
        assert_eq!(h.get(&X_FORWARDED_FOR).unwrap(), "192.0.2.7");
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(h.get(&X_FORWARDED_HOST).unwrap(), "app.example.com");
        assert_eq!(h.get(header::HOST).unwrap(), "app.example.com");
        assert!(!h.contains_key("x-forwarded-port"));
        assert!(!h.contains_key(header::FORWARDED));
        assert!(!h.contains_key(&CF_CONNECTING_IP));
    }

    #[test]
    fn forwarded_for_follows_the_peer_across_requests() {
        for peer in ["192.0.2.7", "192.0.2.7", "2001:db8::1", "192.0.2.7"] {
            let ip: IpAddr = peer.parse().unwrap();
            let info = ClientInfo {
                peer: ip,
                trusted: false,
                ip,
                scheme: Scheme::Http,
            };
            let mut h = HeaderMap::new();
            rewrite_request(&mut h, &info, None, false);
            assert_eq!(h.get(&X_FORWARDED_FOR).unwrap(), peer);
        }
    }

    #[test]
    fn trusted_forwarded_for_is_appended_to() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, "203.0.113.9".parse().unwrap());
        h.insert(&X_FORWARDED_PROTO, "http".parse().unwrap());
        rewrite_request(&mut h, &client(true), None, false);
        assert_eq!(h.get(&X_FORWARDED_FOR).unwrap(), "203.0.113.9, 192.0.2.7");
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "http");
    }

    #[test]
    fn forwarding_headers_named_in_connection_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "x-forwarded-proto".parse().unwrap());
        h.insert(&X_FORWARDED_PROTO, "gopher".parse().unwrap());
        rewrite_request(&mut h, &client(true), None, false);
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "https");
        assert!(!h.contains_key(header::CONNECTION));
    }

    #[test]
    fn a_trusted_peer_keeps_its_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_HOST, "outer.example".parse().unwrap());
        h.insert(&CF_CONNECTING_IP, "198.51.100.4".parse().unwrap());
        h.insert(header::FORWARDED, "for=198.51.100.4".parse().unwrap());
        let host = HeaderValue::from_static("inner.example");
        rewrite_request(&mut h, &client(true), Some(&host), false);
        assert_eq!(h.get(&X_FORWARDED_HOST).unwrap(), "outer.example");
        assert_eq!(h.get(&CF_CONNECTING_IP).unwrap(), "198.51.100.4");
        assert_eq!(h.get(header::FORWARDED).unwrap(), "for=198.51.100.4");
        assert_eq!(h.get(&X_FORWARDED_FOR).unwrap(), "192.0.2.7");
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "https");
        assert_eq!(h.get(header::HOST).unwrap(), "inner.example");
    }

    #[test]
    fn an_untrusted_peer_loses_each_forwarding_header_alone() {
        for (name, value) in [
            (header::FORWARDED, "for=6.6.6.6"),
            (CF_CONNECTING_IP.clone(), "6.6.6.6"),
            (X_FORWARDED_PREFIX.clone(), "/evil"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), value.parse().unwrap());
            h.insert(header::CONNECTION, "close".parse().unwrap());
            rewrite_request(&mut h, &client(false), None, false);
            assert!(!h.contains_key(&name), "{name} reached the upstream");
            assert!(!h.contains_key(header::CONNECTION));
            assert_eq!(h.get(&X_FORWARDED_FOR).unwrap(), "192.0.2.7");
        }
    }

    #[test]
    fn upgrade_headers_survive_only_on_upgrades() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade_request(&h));
        let mut plain = h.clone();
        rewrite_request(&mut h, &client(false), None, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        rewrite_request(&mut plain, &client(false), None, false);
        assert!(!plain.contains_key(header::UPGRADE));
    }
}
