//! Requests hyper accepts but bellhop refuses before any phase looks at them,
//! because the next hop could read their framing, target or Host differently.

use std::net::Ipv6Addr;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};

use crate::body::{text_response, Body};

/// What hyper parses but leaves to us to refuse (RFC 9112), answered before any
/// routing, with the connection closed afterwards since the request may not be
/// framed the way the next hop would read it:
/// - a transfer coding other than a single `chunked` gets 501, like nginx: hyper
///   decodes only chunked, so `gzip, chunked` would reach the backend still
///   compressed and re-framed as plain bytes (codings that don't end in chunked
///   never get here, hyper answers 400);
/// - an HTTP/1.1 request without Host (and no absolute-form target), or any
///   request with more than one Host or a Host that is not `host[:port]`, gets
///   400 (§3.2), instead of reaching a catch-all site with a Host the backend
///   may read differently;
/// - `CONNECT` gets 405: bellhop is a reverse proxy, not a tunnel to any
///   `host:port` (and h2's extended CONNECT is not offered); any other method
///   with an authority-form target (`GET host:443`) gets 400, as there is no
///   path to route or forward. Neither reaches a backend.
pub(super) fn refuse_malformed<B>(req: &Request<B>) -> Option<Response<Body>> {
    // h2 has no Connection header (hyper would drop it): the stream just ends.
    let closing = |mut response: Response<Body>| {
        if req.version() < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    };
    if req.method() == Method::CONNECT {
        let mut refusal = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: this is a reverse proxy",
        );
        refusal
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(ALLOWED));
        return Some(closing(refusal));
    }
    let uri = req.uri();
    if uri.authority().is_some() && uri.scheme().is_none() {
        return Some(closing(text_response(
            StatusCode::BAD_REQUEST,
            "an authority-form target is only valid for CONNECT",
        )));
    }
    let mut codings = req.headers().get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !chunked || codings.next().is_some() {
            return Some(closing(text_response(
                StatusCode::NOT_IMPLEMENTED,
                "transfer codings other than chunked are not supported",
            )));
        }
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let problem = match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == Version::HTTP_11 && req.uri().authority().is_none() => {
            "missing Host header"
        }
        (Some(_), Some(_)) => "more than one Host header",
        (Some(host), None) if !valid_host(host) => "invalid Host header",
        _ => return None,
    };
    Some(closing(text_response(StatusCode::BAD_REQUEST, problem)))
}

/// The methods bellhop forwards, for the `Allow` header of a 405.
const ALLOWED: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// The bytes of an RFC 3986 reg-name: one lookup per byte (this runs on
/// every request).
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        b += 1;
    }
    table
};

/// `host[:port]` with a registered name or IPv4 address (RFC 3986 reg-name
/// characters) or a bracketed IPv6 address, and a numeric port. Empty is valid
/// (a target without authority).
fn valid_host(value: &HeaderValue) -> bool {
    // Bytes, not `str`: this runs on every request, and a char search
    // costs more than the byte loop on a Host this short.
    let host = value.as_bytes();
    let (host_ok, port) = match host.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => (
                std::str::from_utf8(&rest[..end]).is_ok_and(|ip| ip.parse::<Ipv6Addr>().is_ok()),
                &rest[end + 1..],
            ),
            None => return false,
        },
        None => {
            let colon = host.iter().position(|&b| b == b':').unwrap_or(host.len());
            let (name, port) = host.split_at(colon);
            (name.iter().all(|&b| REG_NAME[usize::from(b)]), port)
        }
    };
    host_ok
        && match port.strip_prefix(b":") {
            Some(digits) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
            None => port.is_empty(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_syntax() {
        for ok in [
            "",
            "a.test",
            "A.Test.",
            "a.test:8080",
            "a.test:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "xn--bcher-kva.example",
            "under_score.test",
        ] {
            assert!(valid_host(&HeaderValue::from_static(ok)), "{ok:?}");
        }
        for bad in [
            "a b.test",
            "a.test/x",
            "user@a.test",
            "a.test:http",
            "a.test:123456",
            "[::1",
            "[::1]x",
            "[not-ip]:80",
            "a.test:80:80",
            "a\\b",
        ] {
            assert!(!valid_host(&HeaderValue::from_static(bad)), "{bad:?}");
        }
        assert!(!valid_host(
            &HeaderValue::from_bytes(b"\xc3\xa9.test").unwrap()
        ));
    }
}
