//! Copies bytes both ways between two streams without a buffer per connection.
//!
//! `tokio::io::copy_bidirectional` keeps two buffers alive for the whole life of
//! a tunnel, 16 KiB per WebSocket even when it is idle for hours. Here a read
//! goes into a buffer on the stack and is written straight to the other side;
//! only bytes the other side cannot take yet are moved to the heap, and that
//! allocation is freed as soon as they are written. An idle tunnel holds no
//! buffer at all.
//!
//! EOF on one side becomes a write shutdown on the other while the opposite
//! direction keeps flowing (half-close); the splice ends when both directions
//! have ended.
//!
//! A WebSocket's splice ([`Splice::websocket`]) also follows the frame
//! headers each way (`ws_frames`: a few bytes of state, no buffer), so that
//! bellhop can end it the way WebSocket peers expect ([`Splice::close_now`]):
//! each direction finishes the frame under way, then gets bellhop's Close
//! frame (1001, going away) instead of whatever would come next; then what
//! the peers still send is read and dropped until each has sent its Close
//! (or EOF), and both sockets are shut.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::ws_frames::{CloseFrame, FrameTracker};

/// Size of the on-stack read buffer.
const CHUNK: usize = 16 * 1024;
/// Reads per direction per poll before yielding to other tasks.
const BUDGET: usize = 32;

/// Bytes copied each way when a splice ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Copied {
    /// From `a` to `b`.
    pub a_to_b: u64,
    /// From `b` to `a`.
    pub b_to_a: u64,
}

/// Which way a read's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// From `a` to `b`.
    AToB,
    /// From `b` to `a`.
    BToA,
}

/// Copies `a` ⇄ `b` until both directions reach EOF. `on_read` is called for
/// every read with its direction and the number of bytes forwarded (idle
/// tracking, and byte counts that outlive a splice cut short).
pub(crate) fn splice<'s, A, B, F>(a: &'s mut A, b: &'s mut B, on_read: F) -> Splice<'s, A, B, F>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Way, usize),
{
    Splice {
        a,
        b,
        a_to_b: Direction::default(),
        b_to_a: Direction::default(),
        on_read,
        closing: false,
    }
}

/// The future returned by [`splice`].
#[derive(Debug)]
pub(crate) struct Splice<'s, A, B, F> {
    a: &'s mut A,
    b: &'s mut B,
    a_to_b: Direction,
    b_to_a: Direction,
    on_read: F,
    /// [`Splice::close_now`] was called: the directions say goodbye.
    closing: bool,
}

impl<A, B, F> Splice<'_, A, B, F> {
    /// `early`: bytes `b` sent before the splice began (read by whoever set
    /// the streams up), written to `a` before anything else. Call it once.
    pub(crate) fn b_sent_first(mut self, early: &[u8]) -> Self {
        if !early.is_empty() {
            if let Some(frames) = &mut self.b_to_a.frames {
                frames.tracker.observe(early);
            }
            self.b_to_a.pending = Some(early.into());
            self.b_to_a.written = 0;
            self.b_to_a.copied += early.len() as u64;
        }
        self
    }

    /// Follows WebSocket frames both ways, `a` being the client and `b` the
    /// upstream, so that [`close_now`](Self::close_now) can close cleanly.
    pub(crate) fn websocket(mut self) -> Self {
        let mut back = Frames::new(CloseTo::Client);
        if let Some(pending) = &self.b_to_a.pending {
            back.tracker.observe(&pending[self.b_to_a.written..]);
        }
        self.a_to_b.frames = Some(Frames::new(CloseTo::Upstream));
        self.b_to_a.frames = Some(back);
        self
    }

    /// Starts a WebSocket's goodbye; polling the splice then finishes each
    /// frame under way, sends each side bellhop's Close (unless that side
    /// already got one through the tunnel), waits for the peers' Close or
    /// EOF and shuts both sockets before it resolves. Nothing bounds that
    /// wait here: the caller does. Returns `false` (and changes nothing)
    /// when the splice does not follow frames ([`websocket`](Self::websocket)).
    pub(crate) fn close_now(&mut self) -> bool {
        if self.a_to_b.frames.is_none() || self.b_to_a.frames.is_none() {
            return false;
        }
        self.a_to_b.begin_close();
        self.b_to_a.begin_close();
        self.closing = true;
        true
    }
}

/// Which peer a direction writes to, for the form of bellhop's Close frame.
#[derive(Debug, Clone, Copy)]
enum CloseTo {
    /// The client: unmasked, as a server's frames are.
    Client,
    /// The upstream: masked, as a client's frames must be.
    Upstream,
}

/// A WebSocket direction's frame position, and how far its goodbye is.
#[derive(Debug)]
struct Frames {
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
    /// Writing bellhop's Close frame; `written` bytes of it are out.
    Sending { frame: CloseFrame, written: usize },
    /// Nothing more goes out this way; the reader is read (and dropped)
    /// until its peer's Close frame or EOF.
    Listening,
    /// This direction has said and heard goodbye, or failed.
    Over,
}

impl Frames {
    fn new(to: CloseTo) -> Frames {
        Frames {
            tracker: FrameTracker::default(),
            to,
            stage: Stage::Open,
        }
    }

    /// Follows a read's bytes and returns how many of them to forward: all
    /// while open; while finishing, up to the end of the frame under way.
    fn forwardable(&mut self, data: &[u8]) -> usize {
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

    /// bellhop's Close frame for this direction's writer.
    fn close_frame(&self) -> CloseFrame {
        match self.to {
            CloseTo::Client => CloseFrame::to_client(),
            CloseTo::Upstream => CloseFrame::to_server(crate::crypto::random_u32().to_le_bytes()),
        }
    }
}

/// The state of one direction.
#[derive(Debug, Default)]
struct Direction {
    /// Bytes read but not yet written, only while the writer pushes back.
    pending: Option<Box<[u8]>>,
    /// How much of `pending` has been written.
    written: usize,
    /// Data was written since the last flush.
    unflushed: bool,
    /// The reader reached EOF.
    eof: bool,
    /// The writer has been shut down: this direction is over.
    done: bool,
    /// Total bytes copied.
    copied: u64,
    /// WebSocket frames, when the splice follows them.
    frames: Option<Frames>,
}

impl Direction {
    /// Copies until EOF (then shuts the writer down) or, while a WebSocket
    /// closes, until the frame under way has been forwarded.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        on_read: &mut impl FnMut(usize),
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        for _ in 0..BUDGET {
            ready!(self.poll_write_pending(cx, writer))?;
            if self.at_boundary() {
                return Poll::Ready(Ok(()));
            }
            if self.eof {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }

            let mut chunk = [0u8; CHUNK];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                Poll::Pending => {
                    // Nothing more to read right now: push out what we wrote.
                    if self.unflushed {
                        ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let data = buf.filled();
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            let data = match &mut self.frames {
                Some(frames) => &data[..frames.forwardable(data)],
                None => data,
            };
            if data.is_empty() {
                continue;
            }
            on_read(data.len());
            self.copied += data.len() as u64;
            ready!(self.poll_write_read(cx, writer, data))?;
        }
        // Budget spent with data still flowing: let other tasks run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes a read's `data`; what the writer does not take yet goes to
    /// `pending` (and the direction waits for the writer).
    fn poll_write_read<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
        data: &[u8],
    ) -> Poll<io::Result<()>> {
        let mut offset = 0;
        while offset < data.len() {
            match Pin::new(&mut *writer).poll_write(cx, &data[offset..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    offset += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // The writer pushes back; keep the rest until it drains.
                    self.pending = Some(data[offset..].into());
                    self.written = 0;
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out `pending`, freeing it once empty.
    fn poll_write_pending<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        if let Some(pending) = &self.pending {
            while self.written < pending.len() {
                let n = ready!(Pin::new(&mut *writer).poll_write(cx, &pending[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.unflushed = true;
            }
            self.pending = None;
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// A closing WebSocket direction has read its last frame in full.
    fn at_boundary(&self) -> bool {
        self.frames
            .as_ref()
            .is_some_and(|f| matches!(f.stage, Stage::Boundary { .. }))
    }

    /// The stage the goodbye starts at: right at the Close when the
    /// direction sits between frames, else finishing the frame under way.
    fn begin_close(&mut self) {
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

    fn set_stage(&mut self, stage: Stage) {
        if let Some(frames) = &mut self.frames {
            frames.stage = stage;
        }
    }

    /// Drives this direction's goodbye (see [`Stage`]) to its end. An error
    /// ends this direction's part only: the other still says goodbye.
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
        match self.poll_stages(cx, reader, writer, on_read) {
            Poll::Ready(Err(_)) => {
                self.set_stage(Stage::Over);
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_stages<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        on_read: &mut impl FnMut(usize),
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
                Stage::Open | Stage::Finishing => {
                    ready!(self.poll_copy(cx, reader, writer, on_read))?;
                    if !self.done {
                        // At the boundary now.
                        continue;
                    }
                    // The reader ended inside the frame: no Close can follow it.
                    Stage::Over
                }
                Stage::Boundary { close_forwarded } => {
                    ready!(self.poll_write_pending(cx, writer))?;
                    match self.frames.as_ref().map(Frames::close_frame) {
                        Some(frame) if !close_forwarded && !self.done => {
                            Stage::Sending { frame, written: 0 }
                        }
                        _ => Stage::Listening,
                    }
                }
                Stage::Sending { frame, mut written } => {
                    let bytes = frame.as_bytes();
                    while written < bytes.len() {
                        let n = match Pin::new(&mut *writer).poll_write(cx, &bytes[written..]) {
                            Poll::Ready(n) => n?,
                            Poll::Pending => {
                                self.set_stage(Stage::Sending { frame, written });
                                return Poll::Pending;
                            }
                        };
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        written += n;
                    }
                    self.set_stage(Stage::Sending { frame, written });
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
    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Copied>> {
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

    fn copied(&self) -> Copied {
        Copied {
            a_to_b: self.a_to_b.copied,
            b_to_a: self.b_to_a.copied,
        }
    }
}

impl<A, B, F> Future for Splice<'_, A, B, F>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Way, usize) + Unpin,
{
    type Output = io::Result<Copied>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.closing {
            return this.poll_closing(cx);
        }
        let on_read = &mut this.on_read;
        let forward = this
            .a_to_b
            .poll_copy(cx, &mut *this.a, &mut *this.b, &mut |n| {
                on_read(Way::AToB, n)
            })?;
        let backward = this
            .b_to_a
            .poll_copy(cx, &mut *this.b, &mut *this.a, &mut |n| {
                on_read(Way::BToA, n)
            })?;
        if forward.is_ready() && backward.is_ready() {
            Poll::Ready(Ok(this.copied()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_propagates_half_close() {
        // client <-> (a  splice  b) <-> server, over in-memory pipes small
        // enough that the writer pushes back and `pending` is exercised.
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut server) = tokio::io::duplex(1024);
        let mut reads = 0u32;
        let mut seen = Copied::default();
        let splicer = tokio::spawn(async move {
            let copied = splice(&mut a, &mut b, |way, n| {
                reads += 1;
                match way {
                    Way::AToB => seen.a_to_b += n as u64,
                    Way::BToA => seen.b_to_a += n as u64,
                }
            })
            .await;
            (copied, reads, seen)
        });

        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            received, payload,
            "client->server bytes, then EOF (half-close)"
        );
        // The other direction still works after the client's half-close.
        server.write_all(b"reply after half-close").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply after half-close");

        let (copied, reads, seen) = splicer.await.unwrap();
        let copied = copied.unwrap();
        assert_eq!(copied.a_to_b, payload.len() as u64);
        assert_eq!(copied.b_to_a, 22);
        assert!(reads > 0);
        assert_eq!(seen, copied, "on_read sees every byte, each way");
    }

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
        let server_side = async {
            let mut rest = vec![0u8; up.len() - 1500 + close_len(true)];
            server.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest[..up.len() - 1500], &up[1500..]);
            going_away(true, &rest[up.len() - 1500..]);
            server
                .write_all(&frame(0x8, &1001u16.to_be_bytes(), None))
                .await
                .unwrap();
            let mut after = Vec::new();
            server.read_to_end(&mut after).await.unwrap();
            assert!(after.is_empty(), "nothing after the Close");
        };
        let client_side = async {
            let mut rest = vec![0u8; down.len() - 1500 + close_len(false)];
            client.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest[..down.len() - 1500], &down[1500..]);
            going_away(false, &rest[down.len() - 1500..]);
            client
                .write_all(&frame(0x8, &1001u16.to_be_bytes(), key))
                .await
                .unwrap();
            let mut after = Vec::new();
            client.read_to_end(&mut after).await.unwrap();
            assert!(after.is_empty(), "nothing after the Close");
        };
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
        let server_side = async {
            let mut close = vec![0u8; close_len(true)];
            server.read_exact(&mut close).await.unwrap();
            going_away(true, &close);
            let mut after = Vec::new();
            server.read_to_end(&mut after).await.unwrap();
            assert!(after.is_empty());
        };
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
