//! bellhop drives the h2 crate's server itself, each stream in its
//! connection's own task (server/h2): streams must still run side by side,
//! end on their own and finish at shutdown, bodies larger than the
//! flow-control windows must cross whole both ways, and answers carry what
//! hyper's server used to add (`Date`, `Content-Length`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::Response;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::support::backends::echo::Echo;
use crate::support::backends::slow::Slow;
use crate::support::backends::{full, handler, HttpBackend};
use crate::support::client::{collect, empty, h2_tls, tls_connect, ReqBody};
use crate::support::config::{https_site, respond, tcp, ConfigBuilder, SiteBuilder};
use crate::support::h2_frames;
use crate::support::pattern::{PatternBody, Verifier};
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, millis, secs, wait_for, TempDir};

/// A TLS site `app.localhost` in front of `backend`, with its internal CA's
/// root, and an h2 connection to it.
async fn h2_front(
    state: &TempDir,
    backend: std::net::SocketAddr,
    grace: std::time::Duration,
) -> (TestServer, hyper::client::conn::http2::SendRequest<ReqBody>) {
    h2_site(
        state,
        https_site("app.localhost").proxy(tcp(backend)),
        grace,
    )
    .await
}

/// `site` (named `app.localhost`) served with its internal CA's root, and an
/// h2 connection to it.
async fn h2_site(
    state: &TempDir,
    site: SiteBuilder,
    grace: std::time::Duration,
) -> (TestServer, hyper::client::conn::http2::SendRequest<ReqBody>) {
    let cfg = ConfigBuilder::new()
        .state_dir(state.path())
        .grace_period(grace)
        .site(site)
        .build();
    let server = TestServer::start(cfg).await;
    let root = internal_root(state.path()).await;
    let sender = h2_tls(server.addr(), "app.localhost", &root).await;
    (server, sender)
}

fn get(server: &TestServer, path: &str) -> http::Request<ReqBody> {
    let uri = format!("https://app.localhost:{}{path}", server.addr().port());
    http::Request::get(uri).body(empty()).expect("request")
}

/// Twenty requests on one connection, and a backend that answers none of
/// them until all twenty have reached it: only streams that run side by side
/// get past it (one at a time, the first would wait forever).
#[tokio::test]
async fn streams_of_one_connection_run_side_by_side() {
    bounded(secs(30), "test", async {
        const STREAMS: usize = 20;
        let barrier = Arc::new(Barrier::new(STREAMS));
        let backend = HttpBackend::tcp(handler(move |req, _info| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                Response::new(full(req.uri().path().to_owned()))
            }
        }))
        .await;
        let state = TempDir::new("h2-side-by-side");
        let (server, sender) = h2_front(&state, backend.addr(), secs(5)).await;
        let mut answers = tokio::task::JoinSet::new();
        for i in 0..STREAMS {
            let mut sender = sender.clone();
            let request = get(&server, &format!("/stream/{i}"));
            answers.spawn(async move {
                (
                    i,
                    collect(sender.send_request(request).await.expect("h2 request")).await,
                )
            });
        }
        let mut seen = 0;
        while let Some(done) = answers.join_next().await {
            let (i, reply) = done.expect("request task");
            assert_eq!(reply.status, 200, "stream {i}: {}", reply.text());
            assert_eq!(reply.text(), format!("/stream/{i}"));
            seen += 1;
        }
        assert_eq!(seen, STREAMS);
        assert_eq!(backend.stats.requests(), STREAMS as u64);
    })
    .await
}

/// A client that resets one stream (it stops reading an endless response)
/// ends that stream's upstream request, and the connection's other streams
/// go on being served.
#[tokio::test]
async fn a_reset_stream_ends_its_upstream_request_and_the_connection_serves_on() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("app").await;
        let state = TempDir::new("h2-reset");
        let (server, mut sender) = h2_front(&state, echo.http.addr(), secs(5)).await;
        let endless = sender
            .send_request(get(&server, "/stream-forever"))
            .await
            .expect("h2 request");
        assert_eq!(endless.status(), 200);
        let mut body = endless.into_body();
        let first = body.frame().await.expect("a first chunk").expect("chunk");
        assert!(first.is_data());
        wait_for("the backend to be streaming", secs(5), || {
            echo.stats.streams_open.load(Ordering::SeqCst) == 1
        })
        .await;
        // Dropping the body resets the stream (RST_STREAM CANCEL).
        drop(body);
        wait_for("the backend's stream to end", secs(5), || {
            echo.stats.streams_open.load(Ordering::SeqCst) == 0
        })
        .await;
        let reply = collect(
            sender
                .send_request(get(&server, "/after"))
                .await
                .expect("h2 request"),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["uri"], "/after");
    })
    .await
}

/// Shutdown sends the GOAWAY and still finishes the stream in flight.
#[tokio::test]
async fn shutdown_finishes_the_h2_stream_in_flight() {
    bounded(secs(30), "test", async {
        let slow = Slow::start(millis(800)).await;
        let state = TempDir::new("h2-shutdown");
        let (server, mut sender) = h2_front(&state, slow.http.addr(), secs(10)).await;
        let request = get(&server, "/in-flight");
        let in_flight = tokio::spawn(async move {
            collect(sender.send_request(request).await.expect("h2 request")).await
        });
        slow.wait_received(1).await;
        server.shutdown();
        let reply = bounded(secs(10), "the in-flight response", in_flight)
            .await
            .expect("request task");
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.text(), "slow done\n");
        assert_eq!(slow.answered(), 1);
        let result = bounded(secs(12), "run() to return", server.finished()).await;
        assert_eq!(result, Ok(()));
    })
    .await
}

/// Bodies of 8 MiB, four times the connection's window and more than the
/// client's, both ways: a request body whose DATA bellhop did not hand back
/// to the client's window would stop at 2 MiB, and a response body sent
/// past the client's window would be refused.
#[tokio::test]
async fn bodies_larger_than_the_flow_control_windows_cross_whole() {
    bounded(secs(60), "test", async {
        const LEN: u64 = 8 << 20;
        let echo = Echo::start("app").await;
        let state = TempDir::new("h2-windows");
        let (server, mut sender) = h2_front(&state, echo.http.addr(), secs(5)).await;
        let uri = format!("https://app.localhost:{}/upload", server.addr().port());
        let upload = http::Request::post(uri)
            .body(PatternBody::new(LEN).boxed())
            .expect("request");
        let reply = collect(sender.send_request(upload).await.expect("h2 upload")).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let j = reply.json();
        assert_eq!(j["body_len"], LEN, "{j}");
        assert_eq!(j["body_pattern_ok"], true, "upload corrupted on the way");

        let download = sender
            .send_request(get(&server, &format!("/download?bytes={LEN}")))
            .await
            .expect("h2 download");
        assert_eq!(download.status(), 200);
        let mut body = download.into_body();
        let mut seen = Verifier::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("download frame").into_data() {
                seen.update(&data);
            }
        }
        assert_eq!(seen.len, LEN);
        assert!(seen.ok, "download corrupted on the way");
    })
    .await
}

/// An answer bellhop makes itself has a `Date` and, its length known, a
/// `Content-Length` over h2 too (h2 adds neither).
#[tokio::test]
async fn h2_answers_carry_date_and_content_length() {
    bounded(secs(30), "test", async {
        let state = TempDir::new("h2-head-fields");
        let site = https_site("app.localhost").handle(respond(200, "hello"));
        let (server, mut sender) = h2_site(&state, site, secs(5)).await;
        let reply = collect(
            sender
                .send_request(get(&server, "/"))
                .await
                .expect("h2 request"),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.version, http::Version::HTTP_2);
        assert_eq!(reply.text(), "hello");
        assert_eq!(reply.header("content-length").as_deref(), Some("5"));
        let date = reply.header("date").expect("a Date field");
        httpdate::parse_http_date(&date).expect("an HTTP date");
    })
    .await
}

/// bellhop sends a PING every 30 s; a client that has not answered one by
/// the next (vanished without a FIN, or stuck) is dropped then, 60 s in,
/// even with a request in flight, and that request's upstream request ends
/// with it. A client that answers (hyper's does) keeps its connection.
#[tokio::test]
async fn a_client_that_answers_no_ping_is_dropped_at_the_next_one() {
    bounded(secs(90), "test", async {
        let echo = Echo::start("app").await;
        let state = TempDir::new("h2-ping");
        let (server, mut answering) = h2_front(&state, echo.http.addr(), secs(5)).await;
        // An endless response, read all along.
        let endless = answering
            .send_request(get(&server, "/stream-forever"))
            .await
            .expect("h2 request");
        let reading = tokio::spawn(async move {
            let mut body = endless.into_body();
            while let Some(Ok(_)) = body.frame().await {}
        });

        let root = internal_root(state.path()).await;
        let mut silent = tls_connect(server.addr(), "app.localhost", &root, &[b"h2"]).await;
        let authority = format!("app.localhost:{}", server.addr().port());
        let mut hello = h2_frames::PREFACE.to_vec();
        hello.extend(h2_frames::frame(h2_frames::SETTINGS, 0, 0, &[]));
        let block = h2_frames::get_block("/stream-forever", &authority);
        let flags = h2_frames::END_STREAM_AND_HEADERS;
        hello.extend(h2_frames::frame(h2_frames::HEADERS, flags, 1, &block));
        silent.write_all(&hello).await.expect("write");
        silent.flush().await.expect("flush");
        let started = Instant::now();
        wait_for("both responses streaming", secs(10), || {
            echo.stats.streams_open.load(Ordering::SeqCst) == 2
        })
        .await;

        // Read (and never answer, nor open the window) until bellhop closes
        // the connection.
        let mut pings = 0;
        let mut header = [0u8; 9];
        while silent.read_exact(&mut header).await.is_ok() {
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if silent.read_exact(&mut payload).await.is_err() {
                break;
            }
            // A PING, not the ACK of one.
            if header[3] == h2_frames::PING && header[4] & 0x1 == 0 {
                pings += 1;
            }
        }
        let after = started.elapsed();
        assert!(
            after > secs(59) && after < secs(63),
            "the silent client was dropped after {after:?}, not at the second PING (60 s)"
        );
        assert_eq!(pings, 1, "PINGs before the drop");
        // Its upstream response ended with it; the answering client's did not.
        wait_for(
            "the silent client's upstream response to end",
            secs(5),
            || echo.stats.streams_open.load(Ordering::SeqCst) == 1,
        )
        .await;
        assert!(
            !reading.is_finished(),
            "the answering client's response ended"
        );
    })
    .await
}
