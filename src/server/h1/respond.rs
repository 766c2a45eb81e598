//! Writing a response head for an HTTP/1.1 client: the status line, the
//! service's headers, and the framing bellhop chooses for the body.
//!
//! The framing headers are this module's alone: a `Transfer-Encoding` from
//! the service is dropped (bellhop frames the body itself), a valid
//! `Content-Length` is kept and held to, a body of known size gets one, and
//! any other body is chunked (or, for an HTTP/1.0 client, ends with the
//! connection). `Date` is added when missing, as hyper did.

use std::io::Write as _;

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};
use http_body::SizeHint;

use crate::http1::content_length;
use crate::server::date::write_http_date;

/// How the body after a response head goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sending {
    /// No body (HEAD, 1xx, 204, 304).
    Nothing,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunks, then the last chunk.
    Chunked,
    /// Bytes until the connection closes (HTTP/1.0 clients only).
    UntilClose,
}

/// What the head depends on besides the response itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked<'a> {
    pub method: &'a Method,
    pub version: Version,
}

/// Encodes the head of a `status` response with `headers` (framing headers
/// changed in place to match) into `out`; returns how its body is sent.
/// `close`: the connection closes after this response (forced for a body
/// sent until close).
pub(super) fn head(
    status: StatusCode,
    headers: &mut HeaderMap,
    hint: &SizeHint,
    asked: Asked<'_>,
    close: &mut bool,
    out: &mut Vec<u8>,
) -> Sending {
    let sending = framing(status, headers, hint, asked);
    if sending == Sending::UntilClose {
        *close = true;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Noted on the way, not looked up after: two hashed probes less.
    let (mut has_length, mut has_date) = (false, false);
    for (name, value) in headers.iter() {
        if name == CONNECTION && *close && status != StatusCode::SWITCHING_PROTOCOLS {
            // Replaced by `connection: close` below.
            continue;
        }
        has_length |= name == CONTENT_LENGTH;
        has_date |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match sending {
        Sending::Length(len) if !has_length => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "content-length: {len}\r\n");
        }
        Sending::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if *close {
            if asked.version == Version::HTTP_11 {
                out.extend_from_slice(b"connection: close\r\n");
            }
        } else if asked.version == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        write_http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    sending
}

/// The framing of a response body (RFC 9112 section 6.3), with the
/// service's framing headers made to match it.
fn framing(
    status: StatusCode,
    headers: &mut HeaderMap,
    hint: &SizeHint,
    asked: Asked<'_>,
) -> Sending {
    headers.remove(TRANSFER_ENCODING);
    let code = status.as_u16();
    if code < 200 || code == 204 {
        headers.remove(CONTENT_LENGTH);
        return Sending::Nothing;
    }
    if asked.method == Method::HEAD || code == 304 {
        // Their Content-Length describes the body a GET would get.
        return Sending::Nothing;
    }
    match content_length(headers) {
        Ok(Some(len)) => return Sending::Length(len),
        Ok(None) => {}
        Err(_) => {
            headers.remove(CONTENT_LENGTH);
        }
    }
    if let Some(len) = hint.exact() {
        return Sending::Length(len);
    }
    if asked.version == Version::HTTP_11 {
        Sending::Chunked
    } else {
        Sending::UntilClose
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn encode(
        status: u16,
        headers: &[(&'static str, &'static str)],
        hint: SizeHint,
        method: Method,
        version: Version,
        close: bool,
    ) -> (String, Sending, bool) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        let mut close = close;
        let mut out = Vec::new();
        let asked = Asked {
            method: &method,
            version,
        };
        let status = StatusCode::from_u16(status).unwrap();
        let sending = head(status, &mut map, &hint, asked, &mut close, &mut out);
        let text = String::from_utf8(out).unwrap();
        // The date changes; the rest is checked.
        let text = text
            .lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n");
        (text, sending, close)
    }

    #[test]
    fn known_lengths_unknown_lengths_and_no_body() {
        let (text, sending, _) = encode(
            200,
            &[("x-a", "1")],
            SizeHint::with_exact(5),
            Method::GET,
            Version::HTTP_11,
            false,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\nx-a: 1\ncontent-length: 5\n");
        assert_eq!(sending, Sending::Length(5));

        let (text, sending, _) = encode(
            200,
            &[("content-length", "7"), ("transfer-encoding", "chunked")],
            SizeHint::default(),
            Method::GET,
            Version::HTTP_11,
            false,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 7\n");
        assert_eq!(sending, Sending::Length(7));

        let (text, sending, _) = encode(
            200,
            &[],
            SizeHint::default(),
            Method::GET,
            Version::HTTP_11,
            false,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ntransfer-encoding: chunked\n");
        assert_eq!(sending, Sending::Chunked);

        let (text, sending, close) = encode(
            200,
            &[],
            SizeHint::default(),
            Method::GET,
            Version::HTTP_10,
            false,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\n");
        assert_eq!((sending, close), (Sending::UntilClose, true));

        let (text, sending, _) = encode(
            204,
            &[("content-length", "0")],
            SizeHint::with_exact(0),
            Method::GET,
            Version::HTTP_11,
            false,
        );
        assert_eq!(text, "HTTP/1.1 204 No Content\n");
        assert_eq!(sending, Sending::Nothing);

        let (text, sending, _) = encode(
            200,
            &[("content-length", "9")],
            SizeHint::with_exact(0),
            Method::HEAD,
            Version::HTTP_11,
            false,
        );
        assert_eq!(text, "HTTP/1.1 200 OK\ncontent-length: 9\n");
        assert_eq!(sending, Sending::Nothing);
    }

    #[test]
    fn connection_says_what_happens_next() {
        let (text, _, _) = encode(
            200,
            &[("connection", "keep-alive")],
            SizeHint::with_exact(0),
            Method::GET,
            Version::HTTP_11,
            true,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\ncontent-length: 0\nconnection: close\n"
        );
        let (text, _, _) = encode(
            200,
            &[],
            SizeHint::with_exact(0),
            Method::GET,
            Version::HTTP_10,
            false,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\ncontent-length: 0\nconnection: keep-alive\n"
        );
        let (text, sending, _) = encode(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            SizeHint::with_exact(0),
            Method::GET,
            Version::HTTP_11,
            false,
        );
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\nconnection: upgrade\nupgrade: websocket\n"
        );
        assert_eq!(sending, Sending::Nothing);
    }

    #[test]
    fn every_head_has_a_date() {
        let mut out = Vec::new();
        write_http_date(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
    }
}
