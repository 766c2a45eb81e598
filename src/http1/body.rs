//! Cutting a message body out of the bytes read from a peer (a client's
//! request, an upstream's response), by the framing its head announced: a
//! length, chunks, or everything until close.
//!
//! Data is handed on as it arrives (an SSE event is one chunk, forwarded at
//! once), as `Bytes` split off the read buffer: no copy. Chunk sizes are
//! strict hexadecimal; extensions are skipped and trailers dropped, both held
//! to [`MAX_CHUNK_META`] bytes per body so a peer cannot drip them forever.

use bytes::{Buf, Bytes, BytesMut};

use super::{Framing, FramingError};

/// Most bytes of chunk extensions and trailers one body may carry in all.
const MAX_CHUNK_META: usize = 16 * 1024;

/// What the bytes at hand gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// The next piece of the body.
    Data(Bytes),
    /// The body is complete.
    End,
    /// More bytes must be read first.
    NeedMore,
}

/// Where a body stands.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    /// Bytes still to come of a `Content-Length` body.
    Length(u64),
    /// A chunked body.
    Chunked(Chunked),
    /// Everything until the upstream closes.
    Close,
    /// Complete.
    Done,
}

/// Position in a chunked body.
#[derive(Debug)]
pub(crate) struct Chunked {
    state: State,
    /// Extension and trailer bytes seen so far.
    meta: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the hex digits of a chunk size (`digits` read so far).
    Size {
        size: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeSpace {
        size: u64,
    },
    /// In a chunk extension, skipped up to CR.
    Extension {
        size: u64,
    },
    /// CR seen after a size line; LF must follow.
    SizeLf {
        size: u64,
    },
    /// Bytes of chunk data still to come.
    Data(u64),
    /// After chunk data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field, skipped up to CR.
    Trailer,
    /// CR seen at the end of a trailer line.
    TrailerLf,
    /// CR of the final empty line seen.
    EndLf,
}

impl BodyDecoder {
    /// The decoder for a body framed as `framing`.
    pub(crate) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunked(Chunked {
                state: State::Size { size: 0, digits: 0 },
                meta: 0,
            }),
            Framing::Close => BodyDecoder::Close,
        }
    }

    /// Whether the body is complete.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// Bytes still to come, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self {
            BodyDecoder::Length(n) => Some(*n),
            BodyDecoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body from the front of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FramingError> {
        match self {
            BodyDecoder::Done => Ok(Decoded::End),
            BodyDecoder::Length(left) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            BodyDecoder::Close if buf.is_empty() => Ok(Decoded::NeedMore),
            BodyDecoder::Close => Ok(Decoded::Data(buf.split().freeze())),
            BodyDecoder::Chunked(chunked) => {
                let decoded = chunked.decode(buf)?;
                if decoded == Decoded::End {
                    *self = BodyDecoder::Done;
                }
                Ok(decoded)
            }
        }
    }

    /// The peer closed the connection: the end of a read-to-close body,
    /// an error for any other unfinished one.
    pub(crate) fn eof(&mut self) -> Result<Decoded, FramingError> {
        match self {
            BodyDecoder::Close | BodyDecoder::Done => {
                *self = BodyDecoder::Done;
                Ok(Decoded::End)
            }
            _ => Err(FramingError::Incomplete),
        }
    }
}

impl Chunked {
    /// Consumes size lines, extensions and trailers from `buf` until data,
    /// the end, or the end of `buf`.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FramingError> {
        loop {
            if let State::Data(left) = self.state {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                self.state = match left - n as u64 {
                    0 => State::DataCr,
                    rest => State::Data(rest),
                };
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            let Some(&byte) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            if let Some(end) = self.step(byte)? {
                return Ok(end);
            }
        }
    }

    /// One byte outside chunk data; `Some(End)` after the final CRLF.
    fn step(&mut self, byte: u8) -> Result<Option<Decoded>, FramingError> {
        self.state = match (self.state, byte) {
            (State::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits >= 16 {
                    return Err(FramingError::Malformed("chunk size too large"));
                }
                let digit = u64::from(hex_value(byte));
                State::Size {
                    size: (size << 4) | digit,
                    digits: digits + 1,
                }
            }
            (State::Size { digits: 0, .. }, _) => {
                return Err(FramingError::Malformed("chunk size is not hexadecimal"))
            }
            (State::Size { size, .. } | State::SizeSpace { size }, b' ' | b'\t') => {
                State::SizeSpace { size }
            }
            (State::Size { size, .. } | State::SizeSpace { size }, b';') => {
                State::Extension { size }
            }
            (
                State::Size { size, .. } | State::SizeSpace { size } | State::Extension { size },
                b'\r',
            ) => State::SizeLf { size },
            (State::Extension { size }, _) if byte != b'\n' => {
                self.count_meta()?;
                State::Extension { size }
            }
            (State::SizeLf { size: 0 }, b'\n') => State::TrailerStart,
            (State::SizeLf { size }, b'\n') => State::Data(size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size { size: 0, digits: 0 },
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::EndLf, b'\n') => return Ok(Some(Decoded::End)),
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, _) if byte != b'\n' => {
                self.count_meta()?;
                State::Trailer
            }
            (State::TrailerLf, b'\n') => State::TrailerStart,
            _ => return Err(FramingError::Malformed("invalid chunked framing")),
        };
        Ok(None)
    }

    fn count_meta(&mut self) -> Result<(), FramingError> {
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return Err(FramingError::Malformed(
                "chunk extensions or trailers too long",
            ));
        }
        Ok(())
    }
}

fn hex_value(byte: u8) -> u8 {
    match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        _ => byte - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of at most `step` bytes; returns the body, or
    /// the error, and what was left after the end.
    fn run(framing: Framing, wire: &[u8], step: usize) -> Result<(Vec<u8>, Vec<u8>), FramingError> {
        let mut decoder = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => {
                    assert!(!data.is_empty(), "empty data frame");
                    body.extend_from_slice(&data);
                }
                Decoded::End => return Ok((body, buf.to_vec())),
                Decoded::NeedMore if fed == wire.len() => {
                    decoder.eof()?;
                    return Ok((body, buf.to_vec()));
                }
                Decoded::NeedMore => {
                    let next = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
            }
        }
    }

    /// Runs `wire` fed whole and fed in pieces of every size: the body (or
    /// error) must be the same. Returns the whole run (with what followed
    /// the body; split runs stop feeding at the end, so theirs is shorter).
    fn every_split(framing: Framing, wire: &[u8]) -> Result<(Vec<u8>, Vec<u8>), FramingError> {
        let whole = run(framing, wire, wire.len().max(1));
        let body = |r: &Result<(Vec<u8>, Vec<u8>), FramingError>| match r {
            Ok((body, _)) => format!("{body:?}"),
            Err(e) => format!("{e:?}"),
        };
        for step in 1..wire.len() {
            let split = run(framing, wire, step);
            assert_eq!(body(&split), body(&whole), "step {step} differs");
        }
        whole
    }

    #[test]
    fn chunked_body_at_every_split() {
        let wire = b"5\r\nhello\r\n1;ext=\"a b\"\r\n \r\nA \t;x\r\n0123456789\r\n0\r\n\r\nNEXT";
        let (body, rest) = every_split(Framing::Chunked, wire).unwrap();
        assert_eq!(body, b"hello 0123456789");
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn trailers_are_dropped() {
        let wire = b"3\r\nabc\r\n0\r\nx-check: 1\r\nx-more: 2\r\n\r\n";
        let (body, rest) = every_split(Framing::Chunked, wire).unwrap();
        assert_eq!(body, b"abc");
        assert!(rest.is_empty());
    }

    #[test]
    fn malformed_chunked_shapes_are_errors() {
        for wire in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nx\n\r\n",
        ] {
            assert!(
                run(Framing::Chunked, wire, wire.len()).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn a_chunked_body_cut_short_is_an_error() {
        for wire in [&b""[..], b"5\r\nhel", b"5\r\nhello\r\n", b"0\r\n\r"] {
            assert!(matches!(
                run(Framing::Chunked, wire, 1),
                Err(FramingError::Incomplete)
            ));
        }
    }

    #[test]
    fn endless_extensions_are_cut_off() {
        let mut wire = b"1;".to_vec();
        wire.resize(MAX_CHUNK_META + 10, b'a');
        assert!(run(Framing::Chunked, &wire, 4096).is_err());
    }

    #[test]
    fn largest_chunk_size_is_accepted_as_a_size() {
        let mut decoder = BodyDecoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"ab"))
        );
    }

    #[test]
    fn length_body_stops_at_its_length() {
        let (body, rest) = every_split(Framing::Length(5), b"helloHTTP/1.1").unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(rest, b"HTTP/1.1");
        assert!(matches!(
            run(Framing::Length(5), b"hel", 1),
            Err(FramingError::Incomplete)
        ));
    }

    #[test]
    fn close_body_is_everything_until_eof() {
        let (body, _) = every_split(Framing::Close, b"all of it").unwrap();
        assert_eq!(body, b"all of it");
    }

    #[test]
    fn empty_bodies_are_done_at_once() {
        assert!(BodyDecoder::new(Framing::Empty).is_done());
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
        assert_eq!(BodyDecoder::new(Framing::Length(7)).remaining(), Some(7));
    }
}
