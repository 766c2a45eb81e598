//! Follows WebSocket (RFC 6455) frame headers in a byte stream as it is
//! forwarded, so a tunnel knows where one frame ends and the next begins.
//!
//! Why: a tunnel told to close (drain-timeout, shutdown) says goodbye with a
//! Close frame, and a frame may only go between two frames, never inside
//! one. The tracker reads only headers (2 to 14 bytes, possibly split over
//! reads) and skips each payload by its length, so its cost is per frame,
//! not per byte; it keeps no copy of the stream. It also notes a Close frame
//! passing by, since a side that has sent Close must not get a second one.
//!
//! It trusts the lengths it reads: a peer that does not speak WebSocket, or
//! announces a payload it never sends, only leaves the tracker mid-frame, and
//! the tunnel then ends without a Close frame, as it would without tracking.

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
const MAX_HEADER: usize = 14;
/// The Close frame's opcode.
const OPCODE_CLOSE: u8 = 0x8;
/// Close code 1001, "going away": a server shutting down (RFC 6455 7.4.1).
const GOING_AWAY: u16 = 1001;
/// The Close frame's reason, for the peer's logs.
const REASON: &[u8] = b"bellhop is going away";
/// Bytes of bellhop's Close frame: header (2), mask key (4), code (2), reason.
const CLOSE_FRAME_MAX: usize = 2 + 4 + 2 + REASON.len();

/// Where one direction of a WebSocket stands: inside a frame's header,
/// inside its payload, or between frames.
#[derive(Debug, Default, Clone)]
pub(crate) struct FrameTracker {
    /// The bytes so far of a header split over reads.
    header: [u8; MAX_HEADER],
    /// How many bytes of `header` are filled (0: no header under way).
    have: u8,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// A Close frame's header has gone by.
    close_seen: bool,
}

impl FrameTracker {
    /// Follows every byte of `data`.
    pub(crate) fn observe(&mut self, data: &[u8]) {
        self.advance(data, false);
    }

    /// Follows `data` up to the end of the frame under way (and no
    /// further) and returns how many bytes that is: `data.len()` when the
    /// frame does not end within it, 0 when already between frames.
    pub(crate) fn until_boundary(&mut self, data: &[u8]) -> usize {
        if self.at_boundary() {
            return 0;
        }
        self.advance(data, true)
    }

    /// Between two frames: a frame of bellhop's own may go here.
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// A Close frame has passed (its header, at least).
    pub(crate) fn close_seen(&self) -> bool {
        self.close_seen
    }

    /// Walks `data`: skips payload by count, reads a header in place when
    /// it is whole in `data`, else collects its bytes until it is (at most
    /// 13 kept). With `stop`, returns at the first frame end.
    fn advance(&mut self, data: &[u8], stop: bool) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            if self.payload_left == 0 {
                pos += self.read_header(&data[pos..]);
            }
            // In the same turn as its header: one check of `stop` a frame.
            let skip = self.payload_left.min((data.len() - pos) as u64);
            self.payload_left -= skip;
            // `skip` is at most what is left of `data`, a slice length.
            pos += skip as usize;
            if stop && self.at_boundary() {
                break;
            }
        }
        pos
    }

    /// Reads (the rest of) a header from the start of `data`, in place when
    /// it is all there, else into `header`; returns the bytes taken.
    fn read_header(&mut self, data: &[u8]) -> usize {
        if self.have == 0 {
            if let Some(header) = Header::parse(data) {
                self.begin(header);
                return header.len;
            }
            // Split over reads: shorter than a header, so it fits.
            self.header[..data.len()].copy_from_slice(data);
            self.have = data.len() as u8;
            return data.len();
        }
        let have = usize::from(self.have);
        self.header[have] = data[0];
        self.have += 1;
        if let Some(header) = Header::parse(&self.header[..=have]) {
            self.have = 0;
            self.begin(header);
        }
        1
    }

    /// A frame's header has been read: its payload comes next.
    fn begin(&mut self, header: Header) {
        self.payload_left = header.payload;
        self.close_seen |= header.close;
    }
}

/// What the tracker needs of a frame header.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Bytes of the header itself (2 to 14).
    len: usize,
    /// Bytes of payload that follow it.
    payload: u64,
    /// The frame is a Close frame.
    close: bool,
}

impl Header {
    /// The header at the start of `bytes`, if they hold all of it.
    fn parse(bytes: &[u8]) -> Option<Header> {
        let [first, second, ..] = *bytes else {
            return None;
        };
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        let len = 2 + extended + mask;
        if bytes.len() < len {
            return None;
        }
        let payload = match extended {
            0 => u64::from(second & 0x7f),
            2 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            _ => {
                let mut length = [0u8; 8];
                length.copy_from_slice(&bytes[2..10]);
                u64::from_be_bytes(length)
            }
        };
        Some(Header {
            len,
            payload,
            close: first & 0x0f == OPCODE_CLOSE,
        })
    }
}

/// bellhop's Close frame (code 1001, a short reason), built in place: no
/// allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseFrame {
    bytes: [u8; CLOSE_FRAME_MAX],
    len: usize,
}

impl CloseFrame {
    /// The frame as it goes to a client: unmasked, as a server's frames are.
    pub(crate) fn to_client() -> CloseFrame {
        CloseFrame::build(None)
    }

    /// The frame as it goes to an upstream: masked with `key`, as every
    /// frame a client sends must be (RFC 6455 5.3; the key must be
    /// unpredictable, so callers draw it from a CSPRNG).
    pub(crate) fn to_server(key: [u8; 4]) -> CloseFrame {
        CloseFrame::build(Some(key))
    }

    /// The bytes to write.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Header, then code and reason, masked with `mask` when given.
    fn build(mask: Option<[u8; 4]>) -> CloseFrame {
        let mut bytes = [0u8; CLOSE_FRAME_MAX];
        let payload_len = 2 + REASON.len();
        // FIN + Close; the payload is under 126 bytes, so its length fits
        // the 7-bit field.
        bytes[0] = 0x80 | OPCODE_CLOSE;
        bytes[1] = payload_len as u8;
        let mut at = 2;
        if let Some(key) = mask {
            bytes[1] |= 0x80;
            bytes[2..6].copy_from_slice(&key);
            at = 6;
        }
        let payload = &mut bytes[at..at + payload_len];
        payload[..2].copy_from_slice(&GOING_AWAY.to_be_bytes());
        payload[2..].copy_from_slice(REASON);
        if let Some(key) = mask {
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        CloseFrame {
            bytes,
            len: at + payload_len,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A frame header: `fin`, `opcode`, payload `len`, optional mask key.
    fn header(fin: bool, opcode: u8, len: u64, mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
        let masked = if mask.is_some() { 0x80 } else { 0 };
        match len {
            0..=125 => h.push(masked | len as u8),
            126..=0xffff => {
                h.push(masked | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(masked | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        if let Some(key) = mask {
            h.extend_from_slice(&key);
        }
        h
    }

    /// A whole frame (FIN set); the payload goes as given, masked or not.
    pub(crate) fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = header(true, opcode, payload.len() as u64, mask);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_header_split_over_reads_byte_by_byte() {
        let mask = Some([1, 2, 3, 4]);
        let bytes = frame(0x2, &[7u8; 300], mask);
        let mut t = FrameTracker::default();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(t.at_boundary(), i == 0, "byte {i}");
            t.observe(std::slice::from_ref(b));
        }
        assert!(t.at_boundary());
        assert!(!t.close_seen());
    }

    #[test]
    fn a_64_bit_length_is_skipped_by_count() {
        let len = (1u64 << 32) + 5;
        let mut t = FrameTracker::default();
        t.observe(&header(true, 0x2, len, None));
        assert!(!t.at_boundary());
        let chunk = vec![0u8; 1 << 20];
        let mut left = len;
        while left > chunk.len() as u64 {
            assert_eq!(t.until_boundary(&chunk), chunk.len());
            left -= chunk.len() as u64;
        }
        // The frame ends inside this read; what follows is not taken.
        let tail = vec![0u8; left as usize + 10];
        assert_eq!(t.until_boundary(&tail), left as usize);
        assert!(t.at_boundary());
        assert_eq!(t.until_boundary(&tail[left as usize..]), 0);
    }

    #[test]
    fn control_frames_between_fragments_and_until_boundary_stops_at_each_frame() {
        // A text message in two fragments with a ping between them, then a Close.
        let mut stream = header(false, 0x1, 3, None);
        stream.extend_from_slice(b"abc");
        let first = stream.len();
        stream.extend(frame(0x9, b"ping", None));
        let second = stream.len();
        stream.extend(header(true, 0x0, 2, None));
        stream.extend_from_slice(b"de");
        let third = stream.len();
        stream.extend(frame(0x8, &[0x03, 0xe8], None));

        let mut t = FrameTracker::default();
        // Start part-way into the first header: the frame still ends at `first`.
        t.observe(&stream[..1]);
        assert_eq!(t.until_boundary(&stream[1..]), first - 1);
        assert!(t.at_boundary());
        t.observe(&stream[first..first + 1]);
        assert_eq!(t.until_boundary(&stream[first + 1..]), second - first - 1);
        t.observe(&stream[second..third]);
        assert!(t.at_boundary());
        assert!(!t.close_seen(), "no Close yet");
        t.observe(&stream[third..]);
        assert!(t.at_boundary());
        assert!(t.close_seen());
    }

    #[test]
    fn a_16_bit_length_and_an_empty_frame() {
        let mut t = FrameTracker::default();
        let mut bytes = frame(0x2, &[1u8; 126], Some([9, 9, 9, 9]));
        bytes.extend(frame(0xA, b"", None));
        let first = bytes.len() - 2;
        assert_eq!(t.until_boundary(&bytes), 0, "between frames");
        t.observe(&bytes[..1]);
        assert_eq!(t.until_boundary(&bytes[1..]), first - 1);
        assert_eq!(t.until_boundary(&bytes[first..]), 0, "between frames");
        t.observe(&bytes[first..first + 1]);
        assert_eq!(t.until_boundary(&bytes[first + 1..]), 1, "a header alone");
        assert!(t.at_boundary());
    }

    /// Where each frame of `stream` ends, as the tracker finds them when
    /// the stream arrives in reads of the given sizes (cycled).
    fn frame_ends(stream: &[u8], reads: &[usize]) -> Vec<usize> {
        let mut t = FrameTracker::default();
        let (mut ends, mut at, mut sizes) = (Vec::new(), 0, reads.iter().cycle());
        while at < stream.len() {
            let read_end = (at + sizes.next().unwrap()).min(stream.len());
            // Consume one read frame by frame, as a closing splice would.
            while at < read_end {
                if t.at_boundary() {
                    t.observe(&stream[at..at + 1]);
                    at += 1;
                } else {
                    at += t.until_boundary(&stream[at..read_end]);
                }
                if t.at_boundary() {
                    ends.push(at);
                }
            }
        }
        ends
    }

    #[test]
    fn headers_whole_in_a_read_or_split_over_reads_give_the_same_frames() {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, len) in [0usize, 1, 125, 126, 127, 65535, 65536, 70000, 3]
            .into_iter()
            .enumerate()
        {
            let mask = (i % 2 == 0).then_some([i as u8, 1, 2, 3]);
            stream.extend(frame(0x2, &vec![0xAB; len], mask));
            expected.push(stream.len());
        }
        for reads in [
            &[1usize][..],
            &[2, 3, 5, 7, 11, 13],
            &[16 * 1024],
            &[1 << 20],
        ] {
            assert_eq!(frame_ends(&stream, reads), expected, "reads of {reads:?}");
        }
    }

    #[test]
    fn close_frames_are_well_formed_and_masked_only_for_servers() {
        let client = CloseFrame::to_client();
        let bytes = client.as_bytes();
        assert_eq!(bytes[0], 0x88);
        assert_eq!(usize::from(bytes[1]), 2 + REASON.len());
        assert_eq!(&bytes[2..4], &1001u16.to_be_bytes());
        assert_eq!(&bytes[4..], REASON);

        let key = [0x11, 0x22, 0x33, 0x44];
        let server = CloseFrame::to_server(key);
        let bytes = server.as_bytes();
        assert_eq!(bytes[1], 0x80 | (2 + REASON.len()) as u8);
        assert_eq!(&bytes[2..6], &key);
        let unmasked: Vec<u8> = bytes[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(&unmasked[..2], &1001u16.to_be_bytes());
        assert_eq!(&unmasked[2..], REASON);

        // The tracker reads both as one Close frame.
        for frame in [client, server] {
            let mut t = FrameTracker::default();
            t.observe(frame.as_bytes());
            assert!(t.at_boundary() && t.close_seen());
        }
    }
}
