//! The goodbye of a WebSocket splice: when bellhop must end the tunnel
//! (shutdown, the end of a drain), each direction finishes the frame under
//! way, gets bellhop's Close frame (1001, going away) where the next frame
//! would have started, then listens for its peer's Close or EOF; then both
//! sockets are shut. Frames that arrive after the boundary are dropped: the
//! conversation is over, and a Close inside a frame would corrupt it.
//!
//! "Don't close twice": a direction that already carried a Close frame gets
//! none from bellhop, and a peer that already sent its Close is not waited
//! for. Nothing here bounds the time; the tunnel does.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Copied, Direction, Splice, Way, BUDGET, CHUNK};
use crate::proxy::ws_frames::{CloseFrame, FrameTracker};

/// Which peer a direction writes to, for the form of bellhop's Close frame.
#[derive(Debug, Clone, Copy)]
pub(super) enum CloseTo {
    /// The client: unmasked, as a server's frames are.
    Client,
    /// The upstream: masked, as a client's frames must be.
    Upstream,
}

/// A WebSocket direction's frame position, and how far its goodbye is.
#[derive(Debug)]
pub(super) struct Frames {
    tracker: FrameTracker,
    to: CloseTo,
    stage: Stage,
}

/// The steps of one direction's goodbye, in order.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// No close asked: every byte is forwarded.
    Open,
    /// Close asked: only the rest of the frame under way is forwarded.
    Finishing,
    /// The frame under way has been read in full (what follows it is
    /// dropped); once the bytes still pending are written, bellhop's Close
    /// goes out, unless a Close went through this way already.
    Boundary { close_forwarded: bool },
    /// Writing bellhop's Close frame (masked with `key` towards the
    /// upstream); `written` bytes of it are out. The frame is rebuilt from
    /// these few bytes on each poll rather than kept: every open tunnel
    /// carries this state.
    Sending { key: [u8; 4], written: u8 },
    /// Nothing more goes out this way; the reader is read (and dropped)
    /// until its peer's Close frame or EOF.
    Listening,
    /// This direction has said and heard goodbye, or failed.
    Over,
}

impl Frames {
    /// A direction writing `to` that peer, between frames, nothing asked.
    pub(super) fn new(to: CloseTo) -> Frames {
        Frames {
            tracker: FrameTracker::default(),
            to,
            stage: Stage::Open,
        }
    }

    /// Follows a read's bytes and returns how many of them to forward: all
    /// while open; while finishing, up to the end of the frame under way.
    pub(super) fn forwardable(&mut self, data: &[u8]) -> usize {
        match self.stage {
            Stage::Open => {
                self.tracker.observe(data);
                data.len()
            }
            Stage::Finishing => {
                let n = self.tracker.until_boundary(data);
                if self.tracker.at_boundary() {
                    self.stage = Stage::Boundary {
                        close_forwarded: self.tracker.close_seen(),
                    };
                    self.tracker.observe(&data[n..]);
                }
                n
            }
            _ => {
                self.tracker.observe(data);
                0
            }
        }
    }

    /// Follows bytes that are forwarded as they are.
    pub(super) fn observe(&mut self, data: &[u8]) {
        self.tracker.observe(data);
    }

    /// bellhop's Close frame for this direction's writer.
    fn close_frame(&self, key: [u8; 4]) -> CloseFrame {
        match self.to {
            CloseTo::Client => CloseFrame::to_client(),
            CloseTo::Upstream => CloseFrame::to_server(key),
        }
    }
}

impl Direction {
    /// A closing WebSocket direction has read its last frame in full.
    pub(super) fn at_boundary(&self) -> bool {
        self.frames
            .as_ref()
            .is_some_and(|f| matches!(f.stage, Stage::Boundary { .. }))
    }

    /// The stage the goodbye starts at: right at the Close when the
    /// direction sits between frames, else finishing the frame under way.
    pub(super) fn begin_close(&mut self) {
        if let Some(frames) = &mut self.frames {
            frames.stage = if frames.tracker.at_boundary() {
                Stage::Boundary {
                    close_forwarded: frames.tracker.close_seen(),
                }
            } else {
                Stage::Finishing
            };
        }
    }

    /// Moves the goodbye on (a direction without frames has none).
    fn set_stage(&mut self, stage: Stage) {
        if let Some(frames) = &mut self.frames {
            frames.stage = stage;
        }
    }

    /// Drives this direction's goodbye (see [`Stage`]) to its end: first the
    /// frame under way (copied as usual, up to its end), then the rest. An
    /// error ends this direction's part only: the other still says goodbye.
    fn poll_goodbye<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        on_read: &mut impl FnMut(usize),
    ) -> Poll<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let finishing = self
            .frames
            .as_ref()
            .is_some_and(|f| matches!(f.stage, Stage::Finishing));
        let mut result = Poll::Ready(Ok(()));
        if finishing {
            result = self.poll_copy(cx, reader, writer, on_read);
        }
        if let Poll::Ready(Ok(())) = result {
            result = self.poll_farewell(cx, reader, writer);
        }
        match result {
            Poll::Ready(Err(_)) => {
                self.set_stage(Stage::Over);
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The goodbye once the frame under way is forwarded (or its reader
    /// ended): bellhop's Close, then listening for the peer's.
    fn poll_farewell<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            let Some(stage) = self.frames.as_ref().map(|f| f.stage) else {
                return Poll::Ready(Ok(()));
            };
            let next = match stage {
                // Copying ended before the frame did: the reader is at EOF
                // (the writer shut), so no Close can follow the frame.
                Stage::Open | Stage::Finishing => Stage::Over,
                Stage::Boundary { close_forwarded } => {
                    ready!(self.poll_write_pending(cx, writer))?;
                    if close_forwarded || self.done {
                        Stage::Listening
                    } else {
                        // A fresh mask key each time, from the CSPRNG
                        // (RFC 6455 5.3); unused towards the client.
                        let key = crate::crypto::random_u32().to_le_bytes();
                        Stage::Sending { key, written: 0 }
                    }
                }
                Stage::Sending { key, written } => {
                    let Some(frame) = self.frames.as_ref().map(|f| f.close_frame(key)) else {
                        return Poll::Ready(Ok(()));
                    };
                    let bytes = frame.as_bytes();
                    let mut written = usize::from(written);
                    while written < bytes.len() {
                        let n = match Pin::new(&mut *writer).poll_write(cx, &bytes[written..]) {
                            Poll::Ready(n) => n?,
                            Poll::Pending => {
                                // Under 30 bytes: fits the u8.
                                let written = written as u8;
                                self.set_stage(Stage::Sending { key, written });
                                return Poll::Pending;
                            }
                        };
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        written += n;
                    }
                    let written = written as u8;
                    self.set_stage(Stage::Sending { key, written });
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    Stage::Listening
                }
                Stage::Listening => {
                    ready!(self.poll_listen(cx, reader))?;
                    Stage::Over
                }
                Stage::Over => return Poll::Ready(Ok(())),
            };
            self.set_stage(next);
        }
    }

    /// Reads and drops what the reader's peer sends, watching the frames,
    /// until its Close frame (sent before or now) or EOF.
    fn poll_listen<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
    ) -> Poll<io::Result<()>> {
        for _ in 0..BUDGET {
            let Some(frames) = &mut self.frames else {
                return Poll::Ready(Ok(()));
            };
            if self.eof || frames.tracker.close_seen() {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut *reader).poll_read(cx, &mut buf))?;
            match buf.filled() {
                [] => self.eof = true,
                data => frames.tracker.observe(data),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Shuts the writer down unless that is done already; errors are
    /// ignored (the peer may have gone), the socket closes either way.
    fn poll_shut<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<()> {
        if !self.done {
            let _ = ready!(Pin::new(&mut *writer).poll_shutdown(cx));
            self.done = true;
        }
        Poll::Ready(())
    }
}

impl<A, B, F> Splice<'_, A, B, F>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Way, usize) + Unpin,
{
    /// After [`close_now`](Self::close_now): both goodbyes, then both
    /// sockets shut.
    pub(super) fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Copied>> {
        let on_read = &mut self.on_read;
        let forward = self
            .a_to_b
            .poll_goodbye(cx, &mut *self.a, &mut *self.b, &mut |n| {
                on_read(Way::AToB, n)
            });
        let backward = self
            .b_to_a
            .poll_goodbye(cx, &mut *self.b, &mut *self.a, &mut |n| {
                on_read(Way::BToA, n)
            });
        if forward.is_pending() || backward.is_pending() {
            return Poll::Pending;
        }
        let b = self.a_to_b.poll_shut(cx, &mut *self.b);
        let a = self.b_to_a.poll_shut(cx, &mut *self.a);
        if a.is_pending() || b.is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Ok(self.copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::splice;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::proxy::ws_frames::tests::frame;

    /// The Close frame's payload a peer reads: code 1001 and the reason.
    fn going_away(masked: bool, frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0], 0x88, "a final Close frame");
        assert_eq!(
            frame[1] & 0x80 != 0,
            masked,
            "masked only towards the upstream"
        );
        let (key, payload) = if masked {
            (&frame[2..6], &frame[6..])
        } else {
            (&[0u8; 4][..], &frame[2..])
        };
        assert_eq!(usize::from(frame[1] & 0x7f), payload.len());
        let plain: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(&plain[..2], &1001u16.to_be_bytes());
        plain
    }

    /// bellhop's Close frame takes this many bytes: header, code, reason
    /// (and the mask key towards the upstream).
    fn close_len(masked: bool) -> usize {
        crate::proxy::ws_frames::CloseFrame::to_client()
            .as_bytes()
            .len()
            + if masked { 4 } else { 0 }
    }

    /// One peer's end of the goodbye: reads `rest` (the end of its frame
    /// under way), then bellhop's Close (`masked` when the peer is the
    /// upstream), answers with a Close of its own (masked with `key` when
    /// it is the client), and gets nothing more before EOF.
    async fn answer_goodbye(
        peer: &mut tokio::io::DuplexStream,
        rest: &[u8],
        masked: bool,
        key: Option<[u8; 4]>,
    ) {
        let mut got = vec![0u8; rest.len() + close_len(masked)];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..rest.len()], rest);
        going_away(masked, &got[rest.len()..]);
        let reply = frame(0x8, &1001u16.to_be_bytes(), key);
        peer.write_all(&reply).await.unwrap();
        let mut after = Vec::new();
        peer.read_to_end(&mut after).await.unwrap();
        assert!(after.is_empty(), "nothing after the Close: {after:?}");
    }

    #[tokio::test]
    async fn close_now_finishes_the_frames_under_way_then_both_sides_get_a_close() {
        let (mut client, mut a) = tokio::io::duplex(64 * 1024);
        let (mut b, mut server) = tokio::io::duplex(64 * 1024);
        let key = Some([1, 2, 3, 4]);
        let up = frame(0x2, &[5u8; 3000], key);
        let down = frame(0x2, &[6u8; 3000], None);
        let mut copy = splice(&mut a, &mut b, |_, _| {}).websocket();

        // Half of a frame each way goes through before the close.
        client.write_all(&up[..1500]).await.unwrap();
        server.write_all(&down[..1500]).await.unwrap();
        let (mut got_up, mut got_down) = (vec![0u8; 1500], vec![0u8; 1500]);
        tokio::select! {
            _ = &mut copy => panic!("the splice ended"),
            _ = async {
                server.read_exact(&mut got_up).await.unwrap();
                client.read_exact(&mut got_down).await.unwrap();
            } => {}
        }
        assert!(copy.close_now());

        // The rest of each frame, then a frame that must not go through.
        client.write_all(&up[1500..]).await.unwrap();
        client.write_all(&frame(0x1, b"late", key)).await.unwrap();
        server.write_all(&down[1500..]).await.unwrap();
        server.write_all(&frame(0x1, b"late", None)).await.unwrap();
        let server_side = answer_goodbye(&mut server, &up[1500..], true, None);
        let client_side = answer_goodbye(&mut client, &down[1500..], false, key);
        let (copied, (), ()) = tokio::join!(copy, server_side, client_side);
        let copied = copied.unwrap();
        assert_eq!(
            copied.a_to_b,
            up.len() as u64,
            "the late frame was not counted"
        );
        assert_eq!(copied.b_to_a, down.len() as u64);
    }

    #[tokio::test]
    async fn a_side_that_got_a_close_already_gets_no_second_one() {
        let (mut client, mut a) = tokio::io::duplex(4096);
        let (mut b, mut server) = tokio::io::duplex(4096);
        let key = Some([9, 8, 7, 6]);
        // The upstream's Close, right behind its 101.
        let upstream_close = frame(0x8, &1000u16.to_be_bytes(), None);
        let mut copy = splice(&mut a, &mut b, |_, _| {})
            .websocket()
            .b_sent_first(&upstream_close);
        let mut got = vec![0u8; upstream_close.len()];
        tokio::select! {
            _ = &mut copy => panic!("the splice ended"),
            r = client.read_exact(&mut got) => { r.unwrap(); }
        }
        assert_eq!(got, upstream_close);
        assert!(copy.close_now());
        let server_side = answer_goodbye(&mut server, &[], true, None);
        let client_side = async {
            // The client answers the upstream's Close; bellhop has said its
            // own to the upstream, so this one stays with bellhop.
            client
                .write_all(&frame(0x8, &1000u16.to_be_bytes(), key))
                .await
                .unwrap();
            let mut after = Vec::new();
            client.read_to_end(&mut after).await.unwrap();
            assert!(after.is_empty(), "no second Close: {after:?}");
        };
        let (copied, (), ()) = tokio::join!(copy, server_side, client_side);
        assert_eq!(copied.unwrap().a_to_b, 0);

        // Without frame tracking there is no goodbye: the caller drops it.
        let (mut a, mut b) = (tokio::io::duplex(16).0, tokio::io::duplex(16).0);
        assert!(!splice(&mut a, &mut b, |_, _| {}).close_now());
    }
}
