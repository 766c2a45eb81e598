//! An upstream's response head: httparse into `http` types, and the body
//! framing it announces (RFC 9112 section 6.3).
//!
//! The head is parsed once, straight into the one `HeaderMap` the server side
//! sends on; header values are slices of the bytes read (no copy per value).
//! Anything ambiguous about the framing (several lengths, chunked applied
//! twice, a length that is not a number) is an error: the response becomes a
//! 502 and its connection is closed, so a backend cannot smuggle a second
//! response past bellhop.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode, Version};

use super::Error;
use crate::http1::{chunked_is_final, FieldSpans, Framing, FramingFields};

use crate::http1::MAX_HEADERS;

/// A parsed response head.
#[derive(Debug)]
pub(in crate::proxy) struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// Which framing fields `headers` has.
    pub framing_fields: FramingFields,
}

/// What a head says about its body and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) struct Delimited {
    pub framing: Framing,
    /// Whether the connection may carry another request after this body.
    pub keep_alive: bool,
}

/// Parses a complete response head at the start of `buf` and removes it from
/// `buf`; `Ok(None)` while the head is still incomplete (nothing removed).
/// The head's headers are put in `into`'s map (taken, with its capacity);
/// `spans` is scratch space kept from head to head.
pub(in crate::proxy) fn parse_head(
    buf: &mut BytesMut,
    into: &mut HeaderMap,
    spans: &mut FieldSpans,
) -> Result<Option<Head>, Error> {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Parse(e)),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(Error::Malformed("invalid status code"))?;
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Split off, not copied: a copy costs two allocations (measured), and
    // the values pin the read buffer only until the response head is
    // written to the client (`server/h1` clears them then).
    spans.take(buf, response.headers);
    let head = buf.split_to(len).freeze();
    let mut headers = std::mem::take(into);
    let framing_fields = spans.fill(&head, &mut headers).map_err(Error::Malformed)?;
    Ok(Some(Head {
        status,
        version,
        headers,
        framing_fields,
    }))
}

/// The framing of `head`'s body (RFC 9112 section 6.3) and whether its
/// connection stays open. `head_request`: the request was a HEAD. A
/// `Content-Length` that `Transfer-Encoding` overrides is removed from the
/// headers, so the client never sees both.
pub(in crate::proxy) fn delimit(head: &mut Head, head_request: bool) -> Result<Delimited, Error> {
    let seen = head.framing_fields;
    let mut keep_alive = seen.connection_persists(&head.headers, head.version);
    let status = head.status.as_u16();
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Delimited {
            framing: Framing::Empty,
            keep_alive,
        });
    }
    if seen.transfer_encoding {
        let chunked = chunked_is_final(&head.headers)?;
        if head.headers.remove(CONTENT_LENGTH).is_some() || head.version == Version::HTTP_10 {
            // Both (or chunked from an HTTP/1.0 server): a smuggling shape;
            // chunked wins, and nothing after this response is trusted.
            keep_alive = false;
        }
        let framing = if chunked {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        };
        return Ok(Delimited {
            framing,
            keep_alive,
        });
    }
    match seen.content_length(&head.headers)? {
        Some(len) => Ok(Delimited {
            framing: Framing::Length(len),
            keep_alive,
        }),
        None => Ok(Delimited {
            framing: Framing::Close,
            keep_alive: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Head>, Error> {
        parse_head(
            &mut BytesMut::from(text.as_bytes()),
            &mut HeaderMap::new(),
            &mut FieldSpans::default(),
        )
    }

    fn delimited(text: &str, head_request: bool) -> Result<(Delimited, Head), Error> {
        let mut head = parse(text)?.expect("complete head");
        Ok((delimit(&mut head, head_request)?, head))
    }

    fn framing(text: &str) -> Result<(Framing, bool), Error> {
        delimited(text, false).map(|(d, _)| (d.framing, d.keep_alive))
    }

    #[test]
    fn a_head_split_at_every_byte_is_partial_until_its_end() {
        let text = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\n\r\nbody";
        let end = text.len() - 4;
        for cut in 0..end {
            let mut buf = BytesMut::from(&text[..cut]);
            assert!(
                parse_head(&mut buf, &mut HeaderMap::new(), &mut FieldSpans::default())
                    .unwrap()
                    .is_none(),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed at {cut}");
        }
        let mut buf = BytesMut::from(&text[..]);
        let head = parse_head(&mut buf, &mut HeaderMap::new(), &mut FieldSpans::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers["content-type"], "text/plain");
        assert_eq!(head.headers["x-a"], "1");
        assert_eq!(&buf[..], b"body");
    }

    #[test]
    fn repeated_fields_are_kept_in_order() {
        let head = parse("HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n")
            .unwrap()
            .unwrap();
        let cookies: Vec<_> = head.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn garbage_and_bad_fields_are_errors() {
        assert!(parse("HTTX/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n").is_err());
    }

    #[test]
    fn bodiless_statuses_and_head_requests_have_no_body() {
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let text = format!("HTTP/1.1 {status}\r\ncontent-length: 10\r\n\r\n");
            assert_eq!(framing(&text).unwrap(), (Framing::Empty, true));
        }
        let (d, head) = delimited("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", true).unwrap();
        assert_eq!(d.framing, Framing::Empty);
        assert_eq!(head.headers["content-length"], "10");
    }

    #[test]
    fn content_length_must_be_one_number() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap(),
            (Framing::Length(5), true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n")
                .unwrap(),
            (Framing::Length(5), true)
        );
        for bad in ["5, 6", "+5", "-1", "5a", "", "0x5", "99999999999999999999"] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(framing(&text).is_err(), "{bad:?} accepted");
        }
        assert!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n").is_err()
        );
    }

    #[test]
    fn chunked_wins_over_content_length_and_ends_the_connection() {
        let (d, head) = delimited(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(d.framing, Framing::Chunked);
        assert!(!d.keep_alive);
        assert!(!head.headers.contains_key("content-length"));
    }

    #[test]
    fn transfer_codings_other_than_final_chunked() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n").unwrap(),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n").unwrap(),
            (Framing::Close, false)
        );
        assert!(framing("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n").is_err());
        assert!(framing(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .is_err());
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n").unwrap(),
            (Framing::Close, false)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n").unwrap(),
            (Framing::Length(0), false)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap(),
            (Framing::Length(0), false)
        );
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n")
                .unwrap(),
            (Framing::Length(0), true)
        );
    }
}
