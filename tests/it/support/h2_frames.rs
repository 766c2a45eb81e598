//! HTTP/2 written by hand, for clients that misbehave on purpose: frames,
//! the connection preface, and a GET's header block.

/// The client's connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;

/// An HTTP/2 frame: 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The HPACK block of `GET https://{authority}{path}`: `:method GET` and
/// `:scheme https` from the static table, `:path` and `:authority` as
/// literals without indexing (short ones: each length fits the 7-bit prefix).
pub fn get_block(path: &str, authority: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87];
    for (index, value) in [(0x04, path), (0x01, authority)] {
        let len = u8::try_from(value.len())
            .ok()
            .filter(|&n| n < 127)
            .expect("a short value");
        block.extend_from_slice(&[index, len]);
        block.extend_from_slice(value.as_bytes());
    }
    block
}
