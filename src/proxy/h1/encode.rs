//! Writing a request head and chunk framing for an upstream.
//!
//! The head is encoded once, straight from the rewritten `http::request::Parts`,
//! into a buffer the connection reuses. Those bytes are also what the
//! stale-connection retry sends again, so nothing else of the request is kept.

use std::io::Write as _;

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum BodyKind {
    /// No body bytes (a `Content-Length` the client sent is passed on).
    Empty,
    /// Exactly this many bytes, announced in `Content-Length`.
    Length(u64),
    /// Unknown length: `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes the head of `parts` for a body of `kind` into `out` (cleared
/// first): request line in origin form and HTTP/1.1, every header as it is,
/// except the framing headers, which say what `kind` says.
pub(in crate::proxy) fn head(parts: &Parts, kind: BodyKind, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        let framing =
            name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && kind != BodyKind::Empty);
        if framing {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(len) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "content-length: {len}\r\n");
        }
        BodyKind::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn encoded(request: Request<()>, kind: BodyKind) -> String {
        let (parts, ()) = request.into_parts();
        let mut out = b"stale".to_vec();
        head(&parts, kind, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn bodiless_get_keeps_headers_in_order() {
        let request = Request::get("http://example.com/a/b?c=d")
            .header("host", "example.com")
            .header("x-b", "2")
            .header("x-b", "3")
            .body(())
            .unwrap();
        assert_eq!(
            encoded(request, BodyKind::Empty),
            "GET /a/b?c=d HTTP/1.1\r\nhost: example.com\r\nx-b: 2\r\nx-b: 3\r\n\r\n"
        );
    }

    #[test]
    fn framing_headers_say_what_the_body_is() {
        let request = || {
            Request::post("/up")
                .header("content-length", "0")
                .header("transfer-encoding", "chunked")
                .body(())
                .unwrap()
        };
        assert_eq!(
            encoded(request(), BodyKind::Empty),
            "POST /up HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            encoded(request(), BodyKind::Length(12)),
            "POST /up HTTP/1.1\r\ncontent-length: 12\r\n\r\n"
        );
        assert_eq!(
            encoded(request(), BodyKind::Chunked),
            "POST /up HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn asterisk_form_and_missing_path() {
        let options = Request::options("*").body(()).unwrap();
        assert!(encoded(options, BodyKind::Empty).starts_with("OPTIONS * HTTP/1.1\r\n"));
        let bare = Request::get("http://example.com").body(()).unwrap();
        assert!(encoded(bare, BodyKind::Empty).starts_with("GET / HTTP/1.1\r\n"));
    }
}
