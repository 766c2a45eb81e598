//! When bellhop ends a WebSocket itself (the drain-timeout after `bellhop
//! upgrade`, or SIGTERM), both ends get a Close frame with code 1001 (going
//! away), the client's unmasked and the backend's masked, and a frame that
//! is half-way through when the close starts is finished first.
//!
//! Another upgraded protocol is not parsed, and still ends with a FIN.
//!
//! The spawned binary where signals and the upgrade are process matters. The clients and backends are tokio-tungstenite; the in-flight
//! test reads and writes its frames by hand after tungstenite's handshakes,
//! to know how much of a frame bellhop has passed on.

use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::backends::upgrade::UpgradeBackend;
use crate::support::backends::ws::WsBackend;
use crate::support::binary::Bellhop;
use crate::support::client::{raw_upgrade, tls_connect};
use crate::support::config::{https_site, site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::ws::{connect, next_data, read_until_end, ws_config};
use crate::support::{bounded, internal_root, secs, spawn_task, wait_for, Task, TempDir};
use crate::upgrade::{pid_in, start, upgrade, KillOnDrop};

/// The reason bellhop gives in its Close frames.
const REASON: &[u8] = b"bellhop is going away";

/// A message to the backend's `/echo` and back: the tunnel is up.
async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    ws.send(Message::text("before")).await.expect("send");
    let echoed = next_data(ws).await;
    assert_eq!(echoed, Some(Ok(Message::text("before"))));
}

/// bellhop's goodbye reached both ends: the client's stream ends after a
/// Close with code 1001, and the backend got a Close 1001 as well.
async fn both_ends_got_going_away<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    backend: &WsBackend,
) {
    let close = bounded(secs(20), "the WebSocket to end", read_until_end(ws)).await;
    assert_eq!(close, Some(1001), "the client's Close code");
    wait_for("the backend to get a Close", secs(10), || {
        !backend.close_codes().is_empty()
    })
    .await;
    assert_eq!(backend.close_codes(), [1001]);
}

#[tokio::test]
async fn drain_timeout_sends_close_1001_to_both_ends_of_an_old_websocket() {
    bounded(secs(60), "test", async {
        let backend = WsBackend::start().await;
        let dir = TempDir::new("ws-close-drain");
        let file = dir.write(
            "Proxyfile",
            &format!(
                "options {{\n    drain-timeout \"1s\"\n}}\n\"http://127.0.0.1:0\" {{ proxy \"{}\" }}\n",
                backend.addr
            ),
        );
        let pid_file = dir.path().join("bellhop.pid");
        let mut old = start(&file, &pid_file, &[]).await;
        let mut ws = connect(old.addr(), "/push?ms=100").await;
        assert!(matches!(next_data(&mut ws).await, Some(Ok(_))));

        let (code, stdout, stderr) = upgrade(&pid_file).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let _new = KillOnDrop(pid_in(&pid_file));
        // Pushes go on through the old process until the drain-timeout
        // (1 s); then its goodbye.
        both_ends_got_going_away(&mut ws, &backend).await;
        let status = old.proc.wait_exit(secs(15)).await;
        assert!(status.success(), "{status}");
    })
    .await;
}

#[tokio::test]
async fn sigterm_sends_close_1001_to_both_ends_of_a_websocket() {
    bounded(secs(60), "test", async {
        let backend = WsBackend::start().await;
        let mut bellhop = Bellhop::proxy(&backend.addr.to_string(), &[]).await;
        let mut ws = connect(bellhop.addr(), "/echo").await;
        echo_once(&mut ws).await;

        bellhop.proc.signal(libc::SIGTERM);
        both_ends_got_going_away(&mut ws, &backend).await;
        let status = bellhop.proc.wait_exit(secs(15)).await;
        assert_eq!(status.code(), Some(0), "{status}");
    })
    .await;
}

/// Over TLS the Close frames go through the TLS stream like any bytes, and
/// the end is TLS's own (close_notify, then the FIN).
#[tokio::test]
async fn shutdown_sends_close_1001_over_tls_too() {
    bounded(secs(30), "test", async {
        let backend = WsBackend::start().await;
        let state = TempDir::new("ws-close-tls");
        let config = ConfigBuilder::new()
            .state_dir(state.path())
            .site(https_site("localhost").proxy(tcp(backend.addr)))
            .build();
        let server = TestServer::start(config).await;
        let root = internal_root(state.path()).await;
        let tls = tls_connect(server.addr(), "localhost", &root, &[b"http/1.1"]).await;
        let url = format!("wss://localhost:{}/echo", server.addr().port());
        let request = url.into_client_request().expect("request");
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, tls, Some(ws_config()))
                .await
                .expect("handshake over TLS");
        echo_once(&mut ws).await;

        server.shutdown();
        both_ends_got_going_away(&mut ws, &backend).await;
        let result = bounded(secs(10), "run() to return", server.finished()).await;
        assert_eq!(result, Ok(()));
    })
    .await;
}

/// The message of the in-flight test: large enough to cross several reads.
const LARGE: usize = 1 << 20;

/// A frame as read off the wire, unmasked.
#[derive(Debug)]
struct Frame {
    /// FIN, RSV and opcode.
    first: u8,
    masked: bool,
    payload: Vec<u8>,
}

/// Reads one frame (any length form, masked or not).
async fn read_frame(stream: &mut TcpStream) -> Frame {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.expect("frame header");
    let len = match head[1] & 0x7f {
        126 => u64::from(stream.read_u16().await.expect("16-bit length")),
        127 => stream.read_u64().await.expect("64-bit length"),
        len => u64::from(len),
    };
    let masked = head[1] & 0x80 != 0;
    let mut key = [0u8; 4];
    if masked {
        stream.read_exact(&mut key).await.expect("mask key");
    }
    let mut payload = vec![0u8; usize::try_from(len).expect("a length that fits")];
    stream.read_exact(&mut payload).await.expect("payload");
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Frame {
        first: head[0],
        masked,
        payload,
    }
}

/// Checks that `frame` is bellhop's Close: code 1001 and its reason.
fn assert_going_away(frame: &Frame, masked: bool) {
    assert_eq!(frame.first, 0x88, "a final Close frame: {frame:?}");
    assert_eq!(frame.masked, masked, "masked only towards the backend");
    assert_eq!(&frame.payload[..2], &1001u16.to_be_bytes());
    assert_eq!(&frame.payload[2..], REASON);
}

/// A Close frame with code 1001 of a peer's own, masked with `key` if given.
fn close_reply(key: Option<[u8; 4]>) -> Vec<u8> {
    let code = 1001u16.to_be_bytes();
    match key {
        None => vec![0x88, 2, code[0], code[1]],
        Some(k) => vec![
            0x88,
            0x82,
            k[0],
            k[1],
            k[2],
            k[3],
            code[0] ^ k[0],
            code[1] ^ k[1],
        ],
    }
}

/// A backend that, once the client says something, starts a binary frame
/// of [`LARGE`] bytes, sends half of it, and sends the rest only once
/// bellhop's Close has arrived: the close starts with the frame half-way.
/// Then it answers the Close and reports the Close it got. It lives as
/// long as the returned task.
async fn half_way_backend() -> (std::net::SocketAddr, oneshot::Receiver<Frame>, Task) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (got_close, close) = oneshot::channel();
    let task = spawn_task(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(sock)
            .await
            .expect("handshake");
        // From here on the frames go by hand, on tungstenite's socket.
        let stream = ws.get_mut();
        let hello = read_frame(stream).await;
        assert_eq!(hello.payload, b"go", "{hello:?}");
        let mut frame = vec![0x82, 127];
        frame.extend_from_slice(&(LARGE as u64).to_be_bytes());
        frame.extend(large_payload());
        let half = frame.len() / 2;
        stream.write_all(&frame[..half]).await.expect("first half");
        let close = read_frame(stream).await;
        for piece in frame[half..].chunks(64 * 1024) {
            stream.write_all(piece).await.expect("the rest");
        }
        stream.write_all(&close_reply(None)).await.expect("reply");
        let mut after = Vec::new();
        let _ = stream.read_to_end(&mut after).await;
        assert!(after.is_empty(), "nothing after the Close: {after:?}");
        let _ = got_close.send(close);
    });
    (addr, close, task)
}

fn large_payload() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_frame_under_way_is_finished_before_the_close() {
    bounded(secs(60), "test", async {
        let (backend, close_at_backend, _backend) = half_way_backend().await;
        let mut bellhop = Bellhop::proxy(&backend.to_string(), &[]).await;
        let mut ws = connect(bellhop.addr(), "/").await;
        ws.send(Message::text("go")).await.expect("send");
        let client = ws.get_mut();
        // The large frame's header has come through bellhop: the frame is
        // under way when the close starts.
        let mut header = [0u8; 10];
        client.read_exact(&mut header).await.expect("frame header");
        assert_eq!(header[..2], [0x82, 127]);
        assert_eq!(header[2..], (LARGE as u64).to_be_bytes());

        bellhop.proc.signal(libc::SIGTERM);
        let mut payload = vec![0u8; LARGE];
        client
            .read_exact(&mut payload)
            .await
            .expect("the whole frame");
        assert!(payload == large_payload(), "the frame arrived intact");
        let close = bounded(secs(10), "the Close frame", read_frame(client)).await;
        assert_going_away(&close, false);
        client
            .write_all(&close_reply(Some([7, 7, 7, 7])))
            .await
            .expect("reply");
        let mut after = Vec::new();
        client.read_to_end(&mut after).await.expect("EOF");
        assert!(after.is_empty(), "nothing after the Close: {after:?}");

        let close = bounded(secs(10), "the backend's Close", close_at_backend)
            .await
            .expect("the backend saw a Close");
        assert_going_away(&close, true);
        let status = bellhop.proc.wait_exit(secs(15)).await;
        assert_eq!(status.code(), Some(0), "{status}");
    })
    .await;
}

/// Only a WebSocket gets Close frames: another protocol behind a 101 is not
/// bellhop's to parse, and shutdown ends it with a FIN and no bytes.
#[tokio::test]
async fn shutdown_ends_another_upgraded_protocol_with_a_fin_alone() {
    bounded(secs(30), "test", async {
        let backend = UpgradeBackend::start().await;
        let config = ConfigBuilder::new()
            .site(site("127.0.0.1").proxy(tcp(backend.addr)))
            .build();
        let server = TestServer::start(config).await;
        let (mut stream, head) = raw_upgrade(server.addr(), "/echo-until-eof", "testproto").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");

        server.shutdown();
        let mut rest = Vec::new();
        let n = bounded(secs(5), "the tunnel to end", stream.read_to_end(&mut rest))
            .await
            .expect("a FIN, not a reset");
        assert_eq!(n, 0, "no bytes of bellhop's own: {rest:?}");
        let result = bounded(secs(10), "run() to return", server.finished()).await;
        assert_eq!(result, Ok(()));
    })
    .await;
}
