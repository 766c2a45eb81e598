//! Attacks on bellhop itself, the quick in-process versions (the long ones, with
//! slowhttptest and testssl.sh, are in `bench/attack/`): clients that open a
//! connection and never finish their request head or their TLS handshake are cut
//! at the configured deadline while everyone else is served, and an HTTP/2 client
//! that resets every stream it opens (rapid reset, CVE-2023-44487) is sent away
//! without dragging the backend along.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bellhop::config::defaults::TLS_HANDSHAKE_TIMEOUT;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::backends::echo::Echo;
use crate::support::client::{collect, empty, get, h1, h2_tls, req, tls_connect};
use crate::support::config::{https_site, site, tcp, ConfigBuilder};
use crate::support::h2_frames;
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, millis, secs, spawn_task, wait_for, TempDir};

/// bellhop on 127.0.0.1 proxying to an echo backend, with `client-header-timeout`.
async fn front(header_timeout: Duration) -> (Echo, TestServer) {
    let echo = Echo::start("app").await;
    let server = TestServer::start(
        ConfigBuilder::new()
            .options(|o| o.client_header_timeout = header_timeout)
            .site(site("127.0.0.1").proxy(tcp(echo.addr())))
            .build(),
    )
    .await;
    (echo, server)
}

/// bellhop serving `https://localhost` (internal CA) in front of `echo`; returns
/// the server and the internal root to verify it with.
async fn tls_front(
    state: &TempDir,
    echo: &Echo,
    header_timeout: Duration,
) -> (TestServer, Vec<u8>) {
    let server = TestServer::start(
        ConfigBuilder::new()
            .state_dir(state.path())
            .options(|o| o.client_header_timeout = header_timeout)
            .site(https_site("localhost").proxy(tcp(echo.addr())))
            .build(),
    )
    .await;
    let root = internal_root(state.path()).await;
    (server, root)
}

/// What an attacking connection got before the server closed it, and when.
#[derive(Debug)]
struct Cut {
    /// Everything the server sent.
    bytes: Vec<u8>,
    /// From the connection being established to its end (EOF or reset).
    after: Duration,
}

/// Reads `stream` until the server closes it (EOF or reset); keeps `keep` alive
/// until then (e.g. a write half whose drop would send a FIN).
async fn until_closed<R: AsyncRead + Unpin, K>(mut stream: R, started: Instant, keep: K) -> Cut {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    drop(keep);
    Cut {
        bytes,
        after: started.elapsed(),
    }
}

/// Opens a connection, writes `first`, then (with `drip`) writes `drip` again
/// every 100 ms, the way slowloris keeps a head from ever ending. Returns once
/// `first` is written; the task ends when the server closes the connection.
async fn slow_client(
    addr: SocketAddr,
    first: Vec<u8>,
    drip: Option<&'static [u8]>,
) -> tokio::task::JoinHandle<Cut> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let (read, mut write) = stream.into_split();
    write
        .write_all(&first)
        .await
        .expect("write the first bytes");
    tokio::spawn(async move {
        let Some(drip) = drip else {
            return until_closed(read, started, write).await;
        };
        let dripping = spawn_task(async move {
            let mut tick = tokio::time::interval(millis(100));
            loop {
                tick.tick().await;
                if write.write_all(drip).await.is_err() {
                    break;
                }
            }
        });
        until_closed(read, started, dripping).await
    })
}

/// Connects and stays silent for `silence`, then writes `first` and `drip`
/// every 100 ms after it: a client whose first byte comes late.
async fn late_client(
    addr: SocketAddr,
    silence: Duration,
    first: &'static [u8],
    drip: &'static [u8],
) -> tokio::task::JoinHandle<Cut> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let (read, mut write) = stream.into_split();
    tokio::spawn(async move {
        let dripping = spawn_task(async move {
            // The attacker's own pace, not a wait for a condition.
            tokio::time::sleep(silence).await;
            let mut next = first;
            let mut tick = tokio::time::interval(millis(100));
            loop {
                tick.tick().await;
                if write.write_all(next).await.is_err() {
                    break;
                }
                next = drip;
            }
        });
        until_closed(read, started, dripping).await
    })
}

fn assert_cut_at(cut: &Cut, what: &str, deadline: Duration) {
    assert!(
        cut.after + millis(100) >= deadline && cut.after < deadline + secs(2),
        "{what}: closed after {:?}, the deadline is {deadline:?}",
        cut.after
    );
}

#[tokio::test]
async fn slow_request_heads_are_cut_at_the_client_header_timeout_while_others_are_served() {
    bounded(secs(20), "test", async {
        let timeout = secs(1);
        let (echo, server) = front(timeout).await;
        let addr = server.addr();
        let host = addr.to_string();
        let attackers = [
            ("silent", slow_client(addr, Vec::new(), None).await),
            (
                "half a head",
                slow_client(
                    addr,
                    format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Half: ").into_bytes(),
                    None,
                )
                .await,
            ),
            (
                "slowloris",
                slow_client(
                    addr,
                    format!("GET / HTTP/1.1\r\nHost: {host}\r\n").into_bytes(),
                    Some(b"X-Drip: 1\r\n"),
                )
                .await,
            ),
        ];

        // Meanwhile ordinary clients are answered at once, not after the timeout.
        for i in 0..5 {
            let started = Instant::now();
            let r = get(addr, &host, &format!("/during/{i}")).await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(
                started.elapsed() < millis(500),
                "took {:?}",
                started.elapsed()
            );
        }

        for (what, attacker) in attackers {
            let cut = attacker.await.expect("attacker task");
            assert_cut_at(&cut, what, timeout);
            // hyper closes without a 408: there is no request to answer yet.
            assert!(
                cut.bytes.is_empty(),
                "{what} got {:?}",
                String::from_utf8_lossy(&cut.bytes)
            );
        }
        assert_eq!(
            echo.http.stats.requests(),
            5,
            "an unfinished head reached the backend"
        );
        assert_eq!(get(addr, &host, "/after").await.status, 200);
    })
    .await
}

/// On plain HTTP the wait for a connection's first byte (nothing is built for
/// it before) takes its share of `client-header-timeout`: a client silent for
/// most of the timeout and then dripping its head is cut at the timeout after
/// accept, not one timeout after its first byte.
#[tokio::test]
async fn a_late_first_byte_does_not_extend_the_client_header_timeout() {
    bounded(secs(20), "test", async {
        let timeout = secs(2);
        let silence = millis(1500);
        let (echo, server) = front(timeout).await;
        let addr = server.addr();
        let attacker = late_client(addr, silence, b"GET / HTTP/1.1\r\n", b"X-Drip: 1\r\n").await;
        let cut = attacker.await.expect("attacker task");
        assert_cut_at(&cut, "late slowloris", timeout);
        // A timer restarted at the first byte would cut at 3.5 s.
        assert!(
            cut.after < timeout + secs(1),
            "cut after {:?}: the wait was not counted",
            cut.after
        );
        assert!(
            cut.bytes.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&cut.bytes)
        );
        assert_eq!(echo.http.stats.requests(), 0);
        let host = addr.to_string();
        assert_eq!(get(addr, &host, "/after").await.status, 200);
    })
    .await
}

/// The header timeout also closes idle keep-alive connections, but it restarts
/// with each request: a connection kept busy longer than the timeout, with idle
/// gaps shorter than it, is not cut; one idle past it is.
#[tokio::test]
async fn the_header_timeout_restarts_for_each_request_on_a_keep_alive_connection() {
    bounded(secs(20), "test", async {
        let timeout = secs(2);
        let (_echo, server) = front(timeout).await;
        let addr = server.addr();
        let host = addr.to_string();
        let mut client = h1(addr, None).await;
        let started = Instant::now();
        for i in 0..4 {
            if i > 0 {
                // Idle, for less than the timeout (the idleness is what is tested).
                tokio::time::sleep(millis(700)).await;
            }
            let request = req("GET", &host, &format!("/ka/{i}"))
                .body(empty())
                .unwrap();
            let r = collect(
                client
                    .send_request(request)
                    .await
                    .expect("kept-alive request"),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        assert!(started.elapsed() > timeout, "{:?}", started.elapsed());
        // Now idle past the timeout: closed.
        let idle = Instant::now();
        wait_for("the idle connection to be closed", secs(5), || {
            client.is_closed()
        })
        .await;
        assert!(
            idle.elapsed() + millis(100) >= timeout,
            "closed after {:?}",
            idle.elapsed()
        );
    })
    .await
}

#[tokio::test]
async fn silent_tls_clients_are_cut_at_the_handshake_timeout_while_others_are_served() {
    bounded(secs(30), "test", async {
        let state = TempDir::new("attack-tls");
        let echo = Echo::start("app").await;
        // A long header timeout, so the handshake timeout is what acts.
        let (server, root) = tls_front(&state, &echo, secs(60)).await;
        let addr = server.addr();
        let attackers = [
            ("silent", slow_client(addr, Vec::new(), None).await),
            (
                // A TLS record header announcing a 512-byte ClientHello, and 4 bytes of it.
                "half a ClientHello",
                slow_client(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc".to_vec(), None).await,
            ),
            (
                "a ClientHello byte every 100 ms",
                slow_client(addr, b"\x16\x03\x01\x02\x00".to_vec(), Some(b"\x00")).await,
            ),
            (
                // Waiting for the first byte and the handshake share one
                // deadline, counted from accept.
                "silent for half the timeout, then a ClientHello byte every 100 ms",
                late_client(
                    addr,
                    TLS_HANDSHAKE_TIMEOUT / 2,
                    b"\x16\x03\x01\x02\x00",
                    b"\x00",
                )
                .await,
            ),
        ];

        // Meanwhile real TLS clients get through, over h2 and HTTP/1.1.
        let mut h2 = h2_tls(addr, "localhost", &root).await;
        let uri = format!("https://localhost:{}/during", addr.port());
        let r = collect(
            h2.send_request(http::Request::get(&uri).body(empty()).unwrap())
                .await
                .expect("h2 request"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let tls = tls_connect(addr, "localhost", &root, &[b"http/1.1"]).await;
        let (mut h1, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("h1 handshake");
        let _conn = spawn_task(async move {
            let _ = conn.await;
        });
        let r = collect(
            h1.send_request(req("GET", "localhost", "/during").body(empty()).unwrap())
                .await
                .expect("h1 request"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());

        for (what, attacker) in attackers {
            let cut = attacker.await.expect("attacker task");
            assert_cut_at(&cut, what, TLS_HANDSHAKE_TIMEOUT);
        }
        assert_eq!(echo.http.stats.requests(), 2);
    })
    .await
}

/// After the handshake, a TLS client that says nothing is an idle connection like
/// any other. Over HTTP/1.1 it is cut at the client-header-timeout. Over h2 it
/// gets a GOAWAY at that timeout, and is dropped when it is still open one
/// timeout later: without its connection preface hyper would never close it, and
/// with the preface but no answer to the GOAWAY's ping neither.
#[tokio::test]
async fn tls_clients_silent_after_the_handshake_are_cut_at_the_client_header_timeout() {
    bounded(secs(20), "test", async {
        let state = TempDir::new("attack-tls-idle");
        let echo = Echo::start("app").await;
        let timeout = secs(1);
        let (server, root) = tls_front(&state, &echo, timeout).await;
        let addr = server.addr();
        let mut waiting = Vec::new();
        for (what, alpn, first, deadline) in [
            ("http/1.1, silent", &b"http/1.1"[..], &b""[..], timeout),
            ("h2, no preface", b"h2", b"", 2 * timeout),
            // The preface and an empty SETTINGS frame, then nothing: no request,
            // no SETTINGS ack, no PING answer.
            (
                "h2, preface and nothing else",
                b"h2",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                2 * timeout,
            ),
        ] {
            let mut tls = tls_connect(addr, "localhost", &root, &[alpn]).await;
            let started = Instant::now();
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
            tls.write_all(first).await.expect("write");
            tls.flush().await.expect("flush");
            waiting.push((what, deadline, tokio::spawn(until_closed(tls, started, ()))));
        }
        for (what, deadline, task) in waiting {
            let cut = task.await.expect("reader task");
            assert_cut_at(&cut, what, deadline);
        }
        assert_eq!(echo.http.stats.requests(), 0);
        // A client that does speak is served.
        let mut h2 = h2_tls(addr, "localhost", &root).await;
        let r = h2
            .send_request(
                http::Request::get(format!("https://localhost:{}/after", addr.port()))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .expect("h2 request");
        assert_eq!(r.status(), 200);
    })
    .await
}

const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Reads h2 frames until the connection ends; returns the last GOAWAY's last
/// stream id and error code, if one came.
async fn read_until_goaway<R: AsyncRead + Unpin>(mut read: R) -> Option<(u32, u32)> {
    let mut header = [0u8; 9];
    let mut goaway = None;
    while read.read_exact(&mut header).await.is_ok() {
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        if read.read_exact(&mut payload).await.is_err() {
            break;
        }
        if header[3] == h2_frames::GOAWAY && payload.len() >= 8 {
            let word = |at: usize| {
                u32::from_be_bytes([
                    payload[at],
                    payload[at + 1],
                    payload[at + 2],
                    payload[at + 3],
                ])
            };
            goaway = Some((word(0) & 0x7fff_ffff, word(4)));
        }
    }
    goaway
}

/// Rapid reset (CVE-2023-44487): a client opens stream after stream and cancels
/// each at once, so it never has more than one in flight while the server does
/// the work of all of them. bellhop (through h2's reset accounting) answers with
/// GOAWAY ENHANCE_YOUR_CALM after a few dozen, closes the connection, few of the
/// requests reach the backend, and other clients are served.
#[tokio::test]
async fn h2_rapid_reset_is_sent_away_and_others_are_served() {
    bounded(secs(30), "test", async {
        const STREAMS: u32 = 5_000;
        let state = TempDir::new("attack-h2");
        let echo = Echo::start("app").await;
        let (server, root) = tls_front(&state, &echo, secs(30)).await;
        let addr = server.addr();
        let authority = format!("localhost:{}", addr.port());

        let tls = tls_connect(addr, "localhost", &root, &[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (read, mut write) = tokio::io::split(tls);
        let reader = tokio::spawn(read_until_goaway(read));
        let block = h2_frames::get_block("/", &authority);
        let mut out = h2_frames::PREFACE.to_vec();
        out.extend(h2_frames::frame(h2_frames::SETTINGS, 0, 0, &[]));
        for batch in 0..STREAMS / 100 {
            for i in 0..100 {
                let stream = 2 * (batch * 100 + i) + 1;
                out.extend(h2_frames::frame(h2_frames::HEADERS, h2_frames::END_STREAM_AND_HEADERS, stream, &block));
                out.extend(h2_frames::frame(h2_frames::RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
            }
            if write.write_all(&out).await.is_err() {
                break; // the server closed the connection
            }
            out.clear();
        }
        let goaway = bounded(secs(10), "the attacked connection to end", reader)
            .await
            .expect("reader task");
        drop(write);
        let Some((last_stream, code)) = goaway else {
            panic!("the connection ended without a GOAWAY");
        };
        assert_eq!(code, ENHANCE_YOUR_CALM, "GOAWAY code");
        let processed = last_stream.div_ceil(2);
        assert!(processed < 500, "{processed} of {STREAMS} streams were processed");
        let reached = echo.http.stats.requests();
        assert!(
            reached <= u64::from(processed),
            "{reached} cancelled requests reached the backend"
        );

        // Others are served.
        let mut h2 = h2_tls(addr, "localhost", &root).await;
        let r = h2
            .send_request(
                http::Request::get(format!("https://{authority}/after"))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .expect("h2 request");
        assert_eq!(r.status(), 200);
        let body = r.into_body().collect().await.expect("body").to_bytes();
        assert!(!body.is_empty());
        eprintln!("rapid reset: GOAWAY ENHANCE_YOUR_CALM, last stream {last_stream} ({processed} streams), {reached} reached the backend");
    })
    .await
}
