//! A client that stops reading stops bellhop reading its upstream (issue 16,
//! item 6): what such a client costs then waits in the kernel's socket
//! buffers (and the backend blocks on its write), not in bellhop's memory;
//! once the client reads again the download completes intact.
//!
//! Observable: the bytes a backend managed to write before its write blocked.
//! The backend sits on a unix socket with a small send buffer, and the client
//! asks for a small MSS and receive buffer, so the kernel's share on both
//! sides is small and what bellhop itself pulled off the upstream decides the
//! count.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

use crate::support::config::{https_site, proxy_with, unix, ConfigBuilder};
use crate::support::h2_frames;
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, secs, spawn_task, wait_for, Task, TempDir};

/// Size of the response the backend sends.
const LEN: u64 = 4 << 20;
/// The most a backend may have written while its client reads nothing: the
/// kernel's share (about 4 KiB in the backend's socket, 45 KiB in bellhop's
/// socket to the client and the client's receive buffer, all made small
/// here) plus the one piece bellhop's HTTP/1.1 writer holds (16 KiB, one
/// upstream read: the next is asked for once it has left for the kernel,
/// `server/h1`). Measured: 51,520–64,960 bytes with backpressure; 114,240
/// when the writer took a piece as soon as rustls had taken the last one
/// (rustls then held up to its 64 KiB of records); 118,720 with hyper's
/// server and no pacing.
const BOUND: u64 = 80 * 1024;

/// [`BOUND`] for an h2 reader: the kernel's share as there, and h2's own
/// buffers: the stream's send buffer (16 KiB), the frames the connection
/// encoded and rustls' records of them (16 KiB each at most). Measured:
/// 78,400 bytes; 91,840 while rustls took writes up to its h2 limit (16 KiB)
/// after the socket had filled, instead of 4 KiB (`tls/backlog.rs`);
/// 488,320 with hyper's default send buffer.
const H2_BOUND: u64 = 128 * 1024;

/// [`BOUND`] for a WebSocket client: the kernel's share as there, the
/// splice's copy of a read the TLS stream did not take (16 KiB at most), and
/// rustls' records: the read that found the socket full (16 KiB at most),
/// and at most 4 KiB more once it did (`tls/backlog.rs`). Measured: 51,520
/// bytes; 114,240 while rustls went on taking reads up to its 64 KiB.
const WS_BOUND: u64 = 80 * 1024;

/// The backend's byte at body position `i`: a pattern the client can check.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// A backend on a unix socket that answers one request with a head, then
/// `LEN` bytes of [`pattern`], counting what its socket took.
struct Pusher {
    /// Body bytes the kernel took so far.
    written: Arc<AtomicU64>,
    /// The last write found the socket full.
    blocked: Arc<AtomicBool>,
    /// The connection ended (all written, or bellhop closed it).
    ended: Arc<AtomicBool>,
    _task: Task,
}

impl Pusher {
    /// Answers with `head` (the response head, and for a WebSocket the
    /// frame header of the body).
    fn start(path: &Path, head: Vec<u8>) -> Pusher {
        let listener = UnixListener::bind(path).expect("bind the backend's socket");
        let written = Arc::new(AtomicU64::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let ended = Arc::new(AtomicBool::new(false));
        let (w, b, e) = (written.clone(), blocked.clone(), ended.clone());
        let task = spawn_task(async move {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            push(stream, &head, &w, &b).await;
            e.store(true, Ordering::SeqCst);
        });
        Pusher {
            written,
            blocked,
            ended,
            _task: task,
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

/// The head of an HTTP/1.1 download of `LEN` bytes.
fn download_head() -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {LEN}\r\n\r\n").into_bytes()
}

/// The 101 answer to [`WS_REQUEST`], then the header of one binary frame
/// of `LEN` bytes (server frames are not masked).
fn websocket_head() -> Vec<u8> {
    let mut head = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
        connection: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        .to_vec();
    head.extend_from_slice(&[0x82, 127]);
    head.extend_from_slice(&LEN.to_be_bytes());
    head
}

/// The length of [`websocket_head`]'s frame header.
const FRAME_HEADER: usize = 10;

/// Reads the request head, then writes `answer` (the response head) and the
/// body as fast as the socket takes them.
async fn push(mut stream: UnixStream, answer: &[u8], written: &AtomicU64, blocked: &AtomicBool) {
    socket2::SockRef::from(&stream)
        .set_send_buffer_size(1)
        .expect("SO_SNDBUF");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if stream.write_all(answer).await.is_err() {
        return;
    }
    let block: Vec<u8> = (0..251 * 64).map(pattern).collect();
    let mut sent = 0u64;
    while sent < LEN {
        let from = (sent % 251) as usize;
        let want = (LEN - sent).min((block.len() - from) as u64) as usize;
        if stream.writable().await.is_err() {
            return;
        }
        match stream.try_write(&block[from..from + want]) {
            Ok(n) => {
                sent += n as u64;
                written.store(sent, Ordering::SeqCst);
                blocked.store(false, Ordering::SeqCst);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked.store(true, Ordering::SeqCst);
            }
            Err(_) => return,
        }
    }
}

/// bellhop serving `https://localhost` in front of the backend at `sock`,
/// with `client-write-timeout` and the tunnels' `idle-timeout` at `timeout`;
/// returns the server and the internal root to verify it with.
async fn front(state: &TempDir, sock: &Path, timeout: Duration) -> (TestServer, Vec<u8>) {
    let handler = proxy_with(vec![unix(sock)], |p| p.idle_timeout = timeout);
    let server = TestServer::start(
        ConfigBuilder::new()
            .state_dir(state.path())
            .options(|o| o.client_write_timeout = timeout)
            .site(https_site("localhost").handle(handler))
            .build(),
    )
    .await;
    let root = internal_root(state.path()).await;
    (server, root)
}

/// A loopback address unlikely to have met bellhop's port before:
/// 127.x.y.z picked from the clock and the process id.
fn fresh_loopback() -> std::net::Ipv4Addr {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = nanos ^ std::process::id().rotate_left(16);
    let [_, x, y, z] = n.to_be_bytes();
    std::net::Ipv4Addr::new(127, x.max(1), y, z.clamp(1, 254))
}

/// A TLS client that asks for the download over `alpn` with `request` (its
/// first bytes), with a small MSS and receive buffer so the kernel takes
/// little of the response off bellhop.
async fn ask(
    server: &TestServer,
    root: &[u8],
    alpn: &[u8],
    request: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(1).expect("SO_RCVBUF");
    socket.set_tcp_mss(536).expect("TCP_MAXSEG");
    // From a loopback address of its own: the kernel keeps congestion
    // figures per peer address (tcp_metrics) from earlier connections, and
    // with them bellhop's socket to this client takes more at once (seen:
    // 91,840 bytes written instead of 64,960 after a run of slow readers).
    socket
        .bind(&std::net::SocketAddr::from((fresh_loopback(), 0)).into())
        .expect("bind a loopback source");
    socket.set_nonblocking(true).expect("non-blocking");
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into());
    let tcp: TcpStream = socket.connect(server.addr()).await.expect("connect");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(root).expect("root PEM"))
        .expect("add root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn), "ALPN");
    tls.write_all(request).await.expect("send the request");
    tls
}

/// `GET /download` over HTTP/1.1.
const H1_REQUEST: &[u8] = b"GET /download HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// A WebSocket upgrade of `/feed` (the key of RFC 6455's example).
const WS_REQUEST: &[u8] = b"GET /feed HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// `GET /download` over h2, written by hand so that nothing reads the
/// response: the connection preface, SETTINGS with the largest stream window
/// and a WINDOW_UPDATE to the largest connection window (so flow control
/// never stops bellhop; only the full socket does), then HEADERS
/// (END_STREAM, END_HEADERS) for stream 1 with an HPACK block of `:method
/// GET`, `:scheme https` (static table), `:path` and `:authority` (literals).
fn h2_request() -> Vec<u8> {
    let mut out = h2_frames::PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 2^31 - 1.
    out.extend(h2_frames::frame(
        h2_frames::SETTINGS,
        0,
        0,
        &[0, 4, 0x7f, 0xff, 0xff, 0xff],
    ));
    // The connection window from 65,535 to 2^31 - 1.
    out.extend(h2_frames::frame(
        h2_frames::WINDOW_UPDATE,
        0,
        0,
        &0x7fff_0000u32.to_be_bytes(),
    ));
    let block = h2_frames::get_block("/download", "localhost");
    out.extend(h2_frames::frame(
        h2_frames::HEADERS,
        h2_frames::END_STREAM_AND_HEADERS,
        1,
        &block,
    ));
    out
}

/// A download in progress: the backend, bellhop in front of it (with
/// `client-write-timeout` and `idle-timeout` at `timeout`), and the client
/// that asked.
struct Download {
    backend: Pusher,
    reader: tokio_rustls::client::TlsStream<TcpStream>,
    _server: TestServer,
    _dir: TempDir,
}

async fn download(tag: &str, timeout: Duration) -> Download {
    download_over(tag, timeout, b"http/1.1", H1_REQUEST, download_head()).await
}

/// [`download`] over `alpn` with `request`, the backend answering `head`.
async fn download_over(
    tag: &str,
    timeout: Duration,
    alpn: &[u8],
    request: &[u8],
    head: Vec<u8>,
) -> Download {
    let dir = TempDir::new(tag);
    let sock = dir.path().join("backend.sock");
    let backend = Pusher::start(&sock, head);
    let (server, root) = front(&dir, &sock, timeout).await;
    let reader = ask(&server, &root, alpn, request).await;
    Download {
        backend,
        reader,
        _server: server,
        _dir: dir,
    }
}

/// With `client-write-timeout 1s` bellhop closes the reader once its writes
/// have been blocked that long; the backend's connection ends with it, and
/// by then the backend wrote no more than [`BOUND`].
#[tokio::test]
async fn a_reader_that_reads_nothing_stops_the_upstream_reads() {
    bounded(secs(60), "test", async {
        let download = download("slow-reader-stop", secs(1)).await;
        assert_upstream_stopped(&download, BOUND, "a client").await;
    })
    .await
}

/// Waits for bellhop to close `download`'s reader and upstream (its write
/// timeout), then checks the backend wrote something, and at most `bound`.
async fn assert_upstream_stopped(download: &Download, bound: u64, client: &str) {
    let backend = &download.backend;
    wait_for(
        "bellhop to close the reader and the upstream",
        secs(30),
        || backend.ended.load(Ordering::SeqCst),
    )
    .await;
    let written = backend.written();
    eprintln!("the backend wrote {written} bytes");
    assert!(written > 0, "the request never reached the backend");
    assert!(
        written <= bound,
        "the backend wrote {written} bytes for {client} that read nothing (at most {bound})"
    );
}

/// The same over h2, whose streams are not paced by bellhop's writer but by h2's
/// send buffer per stream (`H2_SEND_BUFFER`, 16 KiB): with hyper's default
/// of about 400 KiB the backend wrote that much more for a client that read
/// nothing.
#[tokio::test]
async fn an_h2_reader_that_reads_nothing_stops_the_upstream_reads() {
    bounded(secs(60), "test", async {
        let request = h2_request();
        let download =
            download_over("slow-reader-h2", secs(1), b"h2", &request, download_head()).await;
        assert_upstream_stopped(&download, H2_BOUND, "an h2 client").await;
    })
    .await
}

/// A reader that pauses until the backend is blocked, then reads: the
/// download completes, every byte in place.
#[tokio::test]
async fn a_paused_reader_then_gets_the_whole_download() {
    bounded(secs(60), "test", async {
        let download = &mut download("slow-reader-resume", secs(30)).await;
        pause_then_read(download, BOUND, b"HTTP/1.1 200", 0).await;
    })
    .await
}

/// A WebSocket client that reads nothing while the upstream streams one
/// large frame: the tunnel stops reading the upstream once rustls holds the
/// read that found the socket full, and the tunnel's `idle-timeout` then
/// closes it.
#[tokio::test]
async fn a_websocket_reader_that_reads_nothing_stops_the_upstream_reads() {
    bounded(secs(60), "test", async {
        let download = download_over(
            "slow-reader-ws",
            secs(1),
            b"http/1.1",
            WS_REQUEST,
            websocket_head(),
        )
        .await;
        assert_upstream_stopped(&download, WS_BOUND, "a WebSocket client").await;
    })
    .await
}

/// The same WebSocket client pausing until the backend is blocked, then
/// reading: the whole frame arrives, every byte in place.
#[tokio::test]
async fn a_paused_websocket_reader_then_gets_the_whole_frame() {
    bounded(secs(60), "test", async {
        let download = &mut download_over(
            "slow-reader-ws-resume",
            secs(30),
            b"http/1.1",
            WS_REQUEST,
            websocket_head(),
        )
        .await;
        pause_then_read(download, WS_BOUND, b"HTTP/1.1 101", FRAME_HEADER).await;
    })
    .await
}

/// Waits for `download`'s backend to block on a client that reads nothing,
/// checks it wrote at most `bound` by then, then reads: a head starting
/// with `status`, `skip` bytes, then the whole body in [`pattern`]; and the
/// backend's connection ends.
async fn pause_then_read(download: &mut Download, bound: u64, status: &[u8], skip: usize) {
    let Download {
        backend, reader, ..
    } = download;
    wait_for("the backend to block", secs(30), || {
        backend.blocked.load(Ordering::SeqCst)
    })
    .await;
    let paused_at = backend.written();
    eprintln!("the backend wrote {paused_at} bytes before it blocked");
    assert!(
        paused_at <= bound,
        "the backend wrote {paused_at} bytes for a client that read nothing (at most {bound})"
    );
    let mut got = Vec::with_capacity(LEN as usize + 1024);
    let mut buf = vec![0u8; 64 * 1024];
    let head_len = loop {
        let n = reader.read(&mut buf).await.expect("read the response");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    assert!(got.starts_with(status), "{:?}", &got[..head_len]);
    let body_at = head_len + skip;
    while got.len() < body_at || ((got.len() - body_at) as u64) < LEN {
        let n = reader.read(&mut buf).await.expect("read the body");
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    let body = &got[body_at..];
    assert_eq!(body.len() as u64, LEN);
    if let Some(i) = (0..LEN).find(|&i| body[i as usize] != pattern(i)) {
        panic!("body byte {i} is {}, not {}", body[i as usize], pattern(i));
    }
    wait_for("the backend to finish", secs(10), || {
        backend.ended.load(Ordering::SeqCst)
    })
    .await;
}
