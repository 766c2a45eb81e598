//! A client's request head: httparse into `http` types, and what the head
//! says about its body and its connection (RFC 9112 sections 3, 6 and 9).
//!
//! Header values are slices of one copy of the head (no copy per value). A head
//! bellhop cannot read one way only is refused here with the status hyper
//! gave the same head before this server replaced it: 431 past
//! [`MAX_REQUEST_HEAD`](super::MAX_REQUEST_HEAD) or [`MAX_HEADERS`] fields,
//! 414 for a target `http::Uri` cannot hold, 400 for everything else.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};

use crate::http1::{fill_fields, transfer_codings, Framing, FramingFields, MAX_HEADERS};

/// A request head, parsed.
#[derive(Debug)]
pub(super) struct Head {
    /// The request, without its body.
    pub request: Request<()>,
    /// How its body is delimited: `Empty`, `Length` or `Chunked`.
    pub framing: Framing,
    /// Whether the client keeps the connection open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a 100 before its body.
    pub expects_continue: bool,
    /// It asks to switch protocols (`Upgrade`, HTTP/1.1 only).
    pub upgrade: bool,
}

/// A head refused before it is a request: the status to answer with, and
/// why (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub why: &'static str,
}

impl Refusal {
    fn bad(why: &'static str) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            why,
        }
    }

    fn too_large(why: &'static str) -> Self {
        Refusal {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            why,
        }
    }
}

/// Parses a complete request head at the start of `buf` (at most `limit`
/// bytes) and removes it from `buf`; `Ok(None)` while it is incomplete and
/// still within `limit` (nothing removed). The headers go into `into`'s map
/// (taken, with its capacity).
pub(super) fn parse(
    buf: &mut BytesMut,
    limit: usize,
    into: &mut HeaderMap,
) -> Result<Option<Head>, Refusal> {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut fields,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= limit => len,
        Ok(httparse::Status::Partial) if buf.len() <= limit => return Ok(None),
        Ok(_) => return Err(Refusal::too_large("request head too large")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::too_large("too many header fields"))
        }
        Err(_) => return Err(Refusal::bad("malformed request head")),
    };
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Refusal::bad("malformed request line"));
    };
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| Refusal::bad("invalid method"))?;
    if target.len() > MAX_TARGET {
        return Err(Refusal {
            status: StatusCode::URI_TOO_LONG,
            why: "request target too long",
        });
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let target_at = target.as_ptr() as usize - buf.as_ptr() as usize;
    let target_end = target_at + target.len();
    // A copy of its own: what keeps the request's target and headers alive
    // (a log line waiting for a long response, say) then pins the head's
    // few hundred bytes, not the connection's read buffer, which stays the
    // connection's alone (reused, or given back while the client stalls).
    let head = Bytes::copy_from_slice(&buf[..len]);
    let mut headers = std::mem::take(into);
    let filled = fill_fields(buf, parsed.headers, &head, &mut headers);
    buf.advance(len);
    let seen = filled.map_err(Refusal::bad)?;
    let uri = Uri::from_maybe_shared(head.slice(target_at..target_end))
        .map_err(|_| Refusal::bad("invalid request target"))?;
    let mut keep_alive = seen.connection_persists(&headers, version);
    let framing = framing(&mut headers, seen, version, &mut keep_alive)?;
    let expects_continue = version == Version::HTTP_11
        && framing != Framing::Empty
        && seen.expect
        && headers
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let upgrade = version == Version::HTTP_11 && seen.upgrade;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(Head {
        request,
        framing,
        keep_alive,
        expects_continue,
        upgrade,
    }))
}

/// The longest request target `http::Uri` holds; a longer one is 414.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// How a request's body is delimited (RFC 9112 section 6.3): chunked when
/// `Transfer-Encoding` ends in it (else 400; codings before it are refused
/// with 501 by the `frame` phase, which sees the whole request), else
/// `Content-Length`, else no body. With both, chunked wins, the length is
/// removed (the upstream never sees both) and the connection closes after
/// this request, as it would behind hyper.
fn framing(
    headers: &mut HeaderMap,
    seen: FramingFields,
    version: Version,
    keep_alive: &mut bool,
) -> Result<Framing, Refusal> {
    if seen.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(Refusal::bad("transfer-encoding in an HTTP/1.0 request"));
        }
        if !ends_in_chunked(headers) {
            return Err(Refusal::bad("transfer coding does not end in chunked"));
        }
        if headers.remove(CONTENT_LENGTH).is_some() {
            *keep_alive = false;
        }
        return Ok(Framing::Chunked);
    }
    match seen.content_length(headers) {
        Ok(Some(len)) => Ok(Framing::Length(len)),
        Ok(None) => Ok(Framing::Empty),
        Err(_) => Err(Refusal::bad("invalid content-length")),
    }
}

/// Whether the last transfer coding is `chunked`.
fn ends_in_chunked(headers: &HeaderMap) -> bool {
    transfer_codings(headers)
        .next_back()
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Result<Option<Head>, Refusal> {
        parse(
            &mut BytesMut::from(text.as_bytes()),
            64 * 1024,
            &mut HeaderMap::new(),
        )
    }

    fn head(text: &str) -> Head {
        parse_all(text).unwrap().expect("a complete head")
    }

    fn status(text: &str) -> StatusCode {
        parse_all(text).unwrap_err().status
    }

    #[test]
    fn a_head_split_anywhere_is_partial_until_its_end() {
        let text = b"GET /a?b=1 HTTP/1.1\r\nhost: x.test\r\nx-a: 1\r\n\r\nnext";
        let end = text.len() - 4;
        for cut in 0..end {
            let mut buf = BytesMut::from(&text[..cut]);
            assert!(
                parse(&mut buf, 1024, &mut HeaderMap::new())
                    .unwrap()
                    .is_none(),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed at {cut}");
        }
        let mut buf = BytesMut::from(&text[..]);
        let head = parse(&mut buf, 1024, &mut HeaderMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..], b"next", "the next request's bytes stay");
        let req = &head.request;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "x.test");
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive && !head.expects_continue && !head.upgrade);
    }

    #[test]
    fn the_head_limit_is_exact() {
        let text = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut buf = BytesMut::from(text.as_bytes());
        assert!(parse(&mut buf, text.len(), &mut HeaderMap::new())
            .unwrap()
            .is_some());
        let mut buf = BytesMut::from(text.as_bytes());
        assert_eq!(
            parse(&mut buf, text.len() - 1, &mut HeaderMap::new())
                .unwrap_err()
                .status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        // Incomplete, and already past the limit.
        let mut buf = BytesMut::from(&text.as_bytes()[..20]);
        assert!(parse(&mut buf, 20, &mut HeaderMap::new())
            .unwrap()
            .is_none());
        let mut buf = BytesMut::from(&text.as_bytes()[..20]);
        assert_eq!(
            parse(&mut buf, 19, &mut HeaderMap::new())
                .unwrap_err()
                .status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }

    #[test]
    fn body_framing() {
        let h = head("POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(h.framing, Framing::Length(5));
        let h = head("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        // Both: chunked wins, the length goes, and so does the connection.
        let h = head("POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.request.headers().contains_key(CONTENT_LENGTH));
        assert!(!h.keep_alive);
        // Codings bellhop does not decode are refused later (501), not here.
        let h = head("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        for bad in [
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: -5\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5 5\r\n\r\n",
        ] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn fields_keep_their_values_empty_ones_too_and_frame_in_any_case() {
        let h = head("POST / HTTP/1.1\r\nX-Empty:\r\nCONTENT-Length: 2\r\nx-b:  b \r\nConnection: Close\r\n\r\n");
        let headers = h.request.headers();
        assert_eq!(headers.get("x-empty").unwrap(), "");
        assert_eq!(headers.get("x-b").unwrap(), "b");
        assert_eq!(headers.get(CONTENT_LENGTH).unwrap(), "2");
        assert_eq!(h.framing, Framing::Length(2));
        assert!(!h.keep_alive);
    }

    #[test]
    fn keep_alive_expect_and_upgrade() {
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nconnection: close\r\n\r\n").keep_alive);
        let h = head("PUT / HTTP/1.1\r\nexpect: 100-Continue\r\ncontent-length: 3\r\n\r\n");
        assert!(h.expects_continue);
        let h = head("GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n");
        assert!(!h.expects_continue, "no body to wait for");
        let h = head("GET / HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n");
        assert!(h.upgrade);
        assert!(!head("GET / HTTP/1.0\r\nupgrade: websocket\r\n\r\n").upgrade);
    }

    #[test]
    fn malformed_heads_are_400() {
        for bad in [
            "GET / HTTP/1.1\r\nbad header\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nx: a\r\n folded\r\n\r\n",
            "GET /\x7f HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
