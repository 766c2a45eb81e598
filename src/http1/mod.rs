//! The HTTP/1.1 wire format both of bellhop's HTTP/1.1 sides share: the
//! server that reads clients' requests (`server/h1`) and the client that
//! talks to upstreams (`proxy/h1`). How a message body is delimited
//! (RFC 9112 section 6), cutting it out of the bytes read (`body`), and
//! writing chunk framing.
//!
//! Strict on purpose: anything ambiguous about the framing (several lengths,
//! chunked applied twice, a length that is not a number) is an error, so a
//! peer cannot make bellhop and the next hop read a different message.

pub(crate) mod body;

use std::io::Write as _;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

pub(crate) use body::{BodyDecoder, Decoded};

/// Most header fields one head may carry (hyper's limit too).
pub(crate) const MAX_HEADERS: usize = 100;

/// Where each header field of a parsed head sits in the head's bytes: taken
/// while httparse still borrows the read buffer, so that once the head is
/// split off and frozen, names and values are cut from it without a copy.
pub(crate) struct FieldSpans {
    /// Name start, name length, value start, value length.
    spans: [(u32, u32, u32, u32); MAX_HEADERS],
    count: usize,
}

impl FieldSpans {
    /// The spans of `fields`, which httparse parsed out of `head`.
    pub(crate) fn of(head: &[u8], fields: &[httparse::Header<'_>]) -> Self {
        // A head is far below 4 GiB: the read buffers are bounded.
        let base = head.as_ptr() as usize;
        let offset = |field: &[u8]| (field.as_ptr() as usize - base) as u32;
        let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        for (span, field) in spans.iter_mut().zip(fields) {
            let (name, value) = (field.name.as_bytes(), field.value);
            *span = (
                offset(name),
                name.len() as u32,
                offset(value),
                value.len() as u32,
            );
        }
        FieldSpans {
            spans,
            count: fields.len().min(MAX_HEADERS),
        }
    }

    /// Appends the fields, cut from `head` (the bytes the spans were taken
    /// from, frozen), to `into`.
    pub(crate) fn fill(&self, head: &Bytes, into: &mut HeaderMap) -> Result<(), &'static str> {
        into.reserve(self.count);
        for &(name, name_len, value, value_len) in &self.spans[..self.count] {
            let (name, value) = (name as usize, value as usize);
            let name = HeaderName::from_bytes(&head[name..name + name_len as usize])
                .map_err(|_| "invalid header name")?;
            let value =
                HeaderValue::from_maybe_shared(head.slice(value..value + value_len as usize))
                    .map_err(|_| "invalid header value")?;
            into.append(name, value);
        }
        Ok(())
    }
}

/// Why a message's framing could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    /// The framing headers or the chunked encoding are invalid.
    #[error("{0}")]
    Malformed(&'static str),
    /// The peer closed the connection before the body's end.
    #[error("connection closed before the end of the body")]
    Incomplete,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the upstream closes the connection.
    Close,
}

/// The transfer codings of `headers`, in order, across repeated fields.
pub(crate) fn transfer_codings(headers: &HeaderMap) -> impl DoubleEndedIterator<Item = &[u8]> {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
}

/// Whether `Transfer-Encoding` ends in `chunked`; chunked anywhere else, or
/// twice, is an error.
pub(crate) fn chunked_is_final(headers: &HeaderMap) -> Result<bool, FramingError> {
    let mut codings = transfer_codings(headers).peekable();
    let mut chunked_final = false;
    while let Some(coding) = codings.next() {
        if coding.eq_ignore_ascii_case(b"chunked") {
            if codings.peek().is_some() {
                return Err(FramingError::Malformed(
                    "chunked is not the final transfer coding",
                ));
            }
            chunked_final = true;
        }
    }
    Ok(chunked_final)
}

/// The one `Content-Length` of `headers`: repeated fields or list members
/// must agree, and be plain decimal digits.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, FramingError> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for member in value.as_bytes().split(|&b| b == b',') {
            let parsed = parse_decimal(member.trim_ascii())
                .ok_or(FramingError::Malformed("invalid content-length"))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(FramingError::Malformed("several different content-lengths"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// Digits only (no sign, no spaces), without overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether the peer keeps the connection open after this message: not
/// when it says `Connection: close`, and HTTP/1.0 only with `keep-alive`.
pub(crate) fn connection_persists(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &[u8]| {
        headers.get_all(CONNECTION).iter().any(|value| {
            value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    if has(b"close") {
        return false;
    }
    version == Version::HTTP_11 || has(b"keep-alive")
}

/// The end of a chunked body (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// What follows each chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The size line of a chunk of `len` bytes (`len` in hex, then CRLF).
#[derive(Debug)]
pub(crate) struct ChunkSize {
    bytes: [u8; 18],
    len: usize,
}

impl ChunkSize {
    /// The size line for `len` bytes.
    pub(crate) fn new(len: usize) -> Self {
        let mut bytes = [0u8; 18];
        let mut cursor = &mut bytes[..];
        // 16 hex digits and CRLF always fit.
        let _ = write!(cursor, "{len:x}\r\n");
        let left = cursor.len();
        ChunkSize {
            bytes,
            len: 18 - left,
        }
    }

    /// The line's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_hex() {
        assert_eq!(ChunkSize::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkSize::new(255).as_bytes(), b"ff\r\n");
        assert_eq!(
            ChunkSize::new(usize::MAX).as_bytes(),
            b"ffffffffffffffff\r\n"
        );
    }
}
