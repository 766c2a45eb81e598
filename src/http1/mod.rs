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
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Version};

pub(crate) use body::{BodyDecoder, Decoded};

/// Most header fields one head may carry (hyper's limit too).
pub(crate) const MAX_HEADERS: usize = 100;

/// Appends the header fields httparse parsed out of `parsed` to `into`,
/// each value cut from `head` (a copy of `parsed`'s first bytes, made while
/// httparse still borrowed them: no copy per value), and says which of the
/// fields that frame a message came.
pub(crate) fn fill_fields(
    parsed: &[u8],
    fields: &[httparse::Header<'_>],
    head: &Bytes,
    into: &mut HeaderMap,
) -> Result<FramingFields, &'static str> {
    let base = parsed.as_ptr() as usize;
    let mut seen = FramingFields::default();
    into.reserve(fields.len());
    for field in fields {
        let value_at = field.value.as_ptr() as usize - base;
        let value = (value_at, field.value.len());
        append_field(into, &mut seen, field.name.as_bytes(), head, value)?;
    }
    Ok(seen)
}

/// Where each header field of a parsed head sits in its bytes, for a head
/// split off its read buffer after parsing (httparse borrows the buffer
/// until then). Kept by its owner from head to head: no allocation once it
/// has held the most fields a peer sends.
#[derive(Debug, Default)]
pub(crate) struct FieldSpans {
    /// Name start, name length, value start, value length.
    spans: Vec<(u32, u32, u32, u32)>,
}

impl FieldSpans {
    /// Notes the spans of `fields`, which httparse parsed out of `parsed`.
    pub(crate) fn take(&mut self, parsed: &[u8], fields: &[httparse::Header<'_>]) {
        // A head is far below 4 GiB: the read buffers are bounded.
        let base = parsed.as_ptr() as usize;
        let offset = |field: &[u8]| (field.as_ptr() as usize - base) as u32;
        self.spans.clear();
        self.spans.extend(fields.iter().map(|field| {
            let (name, value) = (field.name.as_bytes(), field.value);
            (
                offset(name),
                name.len() as u32,
                offset(value),
                value.len() as u32,
            )
        }));
    }

    /// [`fill_fields`] for the fields of the last [`take`](Self::take), cut
    /// from `head` (the bytes they were taken from, split off and frozen).
    pub(crate) fn fill(
        &self,
        head: &Bytes,
        into: &mut HeaderMap,
    ) -> Result<FramingFields, &'static str> {
        let mut seen = FramingFields::default();
        into.reserve(self.spans.len());
        for &(name, name_len, value, value_len) in &self.spans {
            let name = &head[name as usize..][..name_len as usize];
            append_field(
                into,
                &mut seen,
                name,
                head,
                (value as usize, value_len as usize),
            )?;
        }
        Ok(seen)
    }
}

/// Appends one field, its value `head[at..at + len]` without a copy.
fn append_field(
    into: &mut HeaderMap,
    seen: &mut FramingFields,
    name: &[u8],
    head: &Bytes,
    (at, len): (usize, usize),
) -> Result<(), &'static str> {
    let name = HeaderName::from_bytes(name).map_err(|_| "invalid header name")?;
    // An empty value's slice may not point into the head at all.
    let value = if len == 0 {
        HeaderValue::from_static("")
    } else {
        HeaderValue::from_maybe_shared(head.slice(at..at + len))
            .map_err(|_| "invalid header value")?
    };
    seen.note(&name);
    into.append(name, value);
    Ok(())
}

/// Which of the header fields that say how a message is delimited and
/// whether its connection persists one head carries, noted as its fields
/// are filled in: most heads carry few of them (a GET none), and each
/// lookup of one that is not there costs a hashed probe of the map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FramingFields {
    pub connection: bool,
    pub content_length: bool,
    pub transfer_encoding: bool,
    pub expect: bool,
    pub upgrade: bool,
}

impl FramingFields {
    fn note(&mut self, name: &HeaderName) {
        if name == CONTENT_LENGTH {
            self.content_length = true;
        } else if name == CONNECTION {
            self.connection = true;
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == EXPECT {
            self.expect = true;
        } else if name == UPGRADE {
            self.upgrade = true;
        }
    }

    /// [`connection_persists`], with no lookup when there is no `Connection`.
    pub(crate) fn connection_persists(self, headers: &HeaderMap, version: Version) -> bool {
        if self.connection {
            connection_persists(headers, version)
        } else {
            version == Version::HTTP_11
        }
    }

    /// [`content_length`], with no lookup when there is no `Content-Length`.
    pub(crate) fn content_length(self, headers: &HeaderMap) -> Result<Option<u64>, FramingError> {
        if self.content_length {
            content_length(headers)
        } else {
            Ok(None)
        }
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
