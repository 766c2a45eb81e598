//! WebSocket and raw HTTP/1.1 Upgrade forwarding: messages of every kind and size,
//! many sockets at once, the idle timeout (expiry and non-expiry), close and
//! half-close in both directions, and every socket released afterwards.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::support::backends::upgrade::UpgradeBackend;
use crate::support::backends::ws::WsBackend;
use crate::support::binary::Bellhop;
use crate::support::client::raw_upgrade;
use crate::support::config::{proxy_with, site, tcp, ConfigBuilder};
use crate::support::pattern;
use crate::support::server::TestServer;
use crate::support::ws::{connect, next_data, read_until_end};
use crate::support::{bounded, millis, raise_fd_limit, secs, wait_for, TempDir};

/// bellhop in front of `backend`, with the upgraded-stream idle timeout given.
async fn front(backend: std::net::SocketAddr, idle: Option<Duration>) -> TestServer {
    let handler = proxy_with(vec![tcp(backend)], |p| {
        if let Some(idle) = idle {
            p.idle_timeout = idle;
        }
    });
    TestServer::start(
        ConfigBuilder::new()
            .site(site("127.0.0.1").handle(handler))
            .build(),
    )
    .await
}

async fn expect_text(ws: &mut crate::support::ws::Ws, want: &str) {
    match bounded(secs(5), want, next_data(ws)).await {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), want),
        other => panic!("expected text {want:?}, got {other:?}"),
    }
}

/// A WebSocket backend with bellhop in front of it.
async fn ws_front(idle: Option<Duration>) -> (WsBackend, TestServer) {
    let backend = WsBackend::start().await;
    let server = front(backend.addr, idle).await;
    (backend, server)
}

/// A raw Upgrade backend with bellhop in front, and a stream upgraded on `path`
/// (the `101` response already checked).
async fn upgraded(path: &str) -> (UpgradeBackend, TestServer, TcpStream, String) {
    let backend = UpgradeBackend::start().await;
    let server = front(backend.addr, None).await;
    let (s, head) = raw_upgrade(server.addr(), path, "testproto").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (backend, server, s, head)
}

async fn upgrade_backend_released(backend: &UpgradeBackend) {
    wait_for("backend connection released", secs(5), || {
        backend.stats.conns.open() == 0
    })
    .await;
}

/// Sends `text` and expects the echo back.
async fn round_trip(ws: &mut crate::support::ws::Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    expect_text(ws, text).await;
}

#[tokio::test]
async fn websocket_text_and_binary_round_trip() {
    bounded(secs(20), "test", async {
        let (backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/echo").await;
        ws.send(Message::text("hello bellhop")).await.unwrap();
        expect_text(&mut ws, "hello bellhop").await;
        let bin = vec![0u8, 1, 2, 0xff, 0xfe, b'\n', 0];
        ws.send(Message::binary(bin.clone())).await.unwrap();
        match next_data(&mut ws).await {
            Some(Ok(Message::Binary(b))) => assert_eq!(&b[..], &bin[..]),
            other => panic!("expected binary, got {other:?}"),
        }
        // The backend got a real upgrade request, with forwarding headers.
        assert_eq!(
            backend
                .last_header("upgrade")
                .map(|v| v.to_ascii_lowercase())
                .as_deref(),
            Some("websocket")
        );
        let conn = backend
            .last_header("connection")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(conn.contains("upgrade"), "Connection: {conn:?}");
        assert_eq!(
            backend.last_header("x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(backend.last_header("host"), Some(server.addr().to_string()));
    })
    .await
}

#[tokio::test]
async fn websocket_16_mib_messages_both_kinds() {
    bounded(secs(120), "test", async {
        let (_backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/echo").await;
        let size = 16 << 20;
        let mut bin = Vec::with_capacity(size);
        while bin.len() < size {
            let n = (size - bin.len()).min(pattern::CHUNK);
            bin.extend_from_slice(&pattern::slice(bin.len() as u64, n));
        }
        ws.send(Message::binary(bin.clone())).await.unwrap();
        match bounded(secs(60), "16 MiB binary echo", next_data(&mut ws)).await {
            Some(Ok(Message::Binary(b))) => {
                assert_eq!(b.len(), size);
                assert!(b[..] == bin[..], "16 MiB binary message corrupted");
            }
            other => panic!(
                "expected binary, got {:?}",
                other.map(|m| m.map(|m| m.len()))
            ),
        }
        let text: String = "bellhop! ".repeat(size / 9 + 1)[..size].to_string();
        ws.send(Message::text(text.clone())).await.unwrap();
        match bounded(secs(60), "16 MiB text echo", next_data(&mut ws)).await {
            Some(Ok(Message::Text(t))) => {
                assert!(t.as_str() == text, "16 MiB text message corrupted")
            }
            other => panic!("expected text, got {:?}", other.map(|m| m.map(|m| m.len()))),
        }
    })
    .await
}

#[tokio::test]
async fn websocket_server_pushes_arrive_in_order() {
    bounded(secs(20), "test", async {
        let (_backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/push?ms=100").await;
        for i in 0..10 {
            expect_text(&mut ws, &i.to_string()).await;
        }
    })
    .await
}

/// 1,000 sockets open at once through the binary; every one echoes; after they
/// close, bellhop's file descriptors return to where they were.
#[tokio::test]
async fn thousand_concurrent_websockets_then_all_released() {
    bounded(secs(180), "test", async {
        raise_fd_limit();
        const N: usize = 1000;
        let backend = WsBackend::start().await;
        // Every socket comes from 127.0.0.1: lift the per-IP cap (default 256) above N.
        let dir = TempDir::new("thousand-ws");
        let file = dir.write(
            "Proxyfile",
            &format!(
                "options {{ max-connections-per-ip {} }}\n\"http://127.0.0.1:0\" {{ proxy \"{}\" }}\n",
                N + 24,
                backend.addr
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let fds_before = bellhop.proc.fd_count();
        let mut sockets = Vec::with_capacity(N);
        for i in 0..N {
            let ws = bounded(secs(10), "handshake", connect(bellhop.addr(), "/echo")).await;
            sockets.push(ws);
            if i % 250 == 249 {
                eprintln!("{} sockets open", i + 1);
            }
        }
        wait_for("backend to see 1000 open sockets", secs(20), || {
            backend.open() == N as i64
        })
        .await;
        // All of them at once, each with its own message.
        let tasks: Vec<_> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, mut ws)| {
                tokio::spawn(async move {
                    let msg = format!("socket {i}");
                    ws.send(Message::text(msg.clone())).await.expect("send");
                    match next_data(&mut ws).await {
                        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), msg),
                        other => panic!("socket {i}: {other:?}"),
                    }
                    ws
                })
            })
            .collect();
        let mut sockets = Vec::with_capacity(N);
        for t in tasks {
            sockets.push(
                bounded(secs(60), "echo on every socket", t)
                    .await
                    .expect("socket task"),
            );
        }
        let fds_open = bellhop.proc.fd_count();
        eprintln!(
            "bellhop fds: {fds_before} before, {fds_open} with {N} sockets; RSS {} KiB",
            bellhop.proc.rss_kib()
        );
        assert!(
            fds_open >= fds_before + 2 * N,
            "expected two fds per proxied socket"
        );
        // Close them all properly.
        for mut ws in sockets {
            let _ = ws.close(None).await;
            tokio::spawn(async move { while ws.next().await.is_some() {} });
        }
        wait_for("backend to see every socket closed", secs(30), || {
            backend.open() == 0
        })
        .await;
        wait_for(
            &format!("bellhop fds back to {fds_before} (+4)"),
            secs(30),
            || bellhop.proc.fd_count() <= fds_before + 4,
        )
        .await;
    })
    .await
}

#[tokio::test]
async fn idle_websocket_is_closed_after_the_idle_timeout() {
    bounded(secs(20), "test", async {
        let (backend, server) = ws_front(Some(secs(1))).await;
        let mut ws = connect(server.addr(), "/echo").await;
        round_trip(&mut ws, "one").await;
        let quiet_since = Instant::now();
        bounded(
            secs(10),
            "idle websocket to be closed",
            read_until_end(&mut ws),
        )
        .await;
        let after = quiet_since.elapsed();
        assert!(
            after >= millis(900),
            "closed after {after:?}, before the 1 s idle timeout"
        );
        assert!(after < secs(5), "closed only after {after:?}");
        wait_for("backend socket released", secs(5), || backend.open() == 0).await;
    })
    .await
}

#[tokio::test]
async fn websocket_with_traffic_outlives_the_idle_timeout() {
    bounded(secs(30), "test", async {
        let (backend, server) = ws_front(Some(secs(1))).await;
        // Server-to-client traffic only: a push every 400 ms for 3.2 s (>3 idle timeouts).
        let mut push = connect(server.addr(), "/push?ms=400").await;
        // Client-to-server traffic only: a message every 400 ms, never answered.
        let mut sink = connect(server.addr(), "/sink").await;
        for i in 0..9 {
            expect_text(&mut push, &i.to_string()).await;
            sink.send(Message::text(format!("m{i}")))
                .await
                .expect("sink still open");
        }
        sink.send(Message::text("count?"))
            .await
            .expect("sink still open");
        expect_text(&mut sink, "9").await;
        assert_eq!(backend.open(), 2);
    })
    .await
}

#[tokio::test]
async fn client_close_frame_reaches_the_backend() {
    bounded(secs(20), "test", async {
        let (backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/echo").await;
        round_trip(&mut ws, "x").await;
        ws.close(Some(CloseFrame {
            code: CloseCode::from(4002),
            reason: "client done".into(),
        }))
        .await
        .unwrap();
        let echoed = bounded(secs(5), "close handshake", read_until_end(&mut ws)).await;
        assert_eq!(echoed, Some(4002), "backend's close reply");
        wait_for("backend to record the close", secs(5), || {
            backend.close_codes() == vec![4002]
        })
        .await;
        wait_for("backend socket released", secs(5), || backend.open() == 0).await;
    })
    .await
}

#[tokio::test]
async fn backend_close_frame_reaches_the_client() {
    bounded(secs(20), "test", async {
        let (backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/close-after-first").await;
        ws.send(Message::text("bye?")).await.unwrap();
        match bounded(secs(5), "close frame", ws.next()).await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(u16::from(f.code), 4001);
                assert_eq!(f.reason.as_str(), "server done");
            }
            other => panic!("expected the backend's Close frame, got {other:?}"),
        }
        bounded(secs(5), "end of stream", read_until_end(&mut ws)).await;
        wait_for("backend socket released", secs(5), || backend.open() == 0).await;
    })
    .await
}

#[tokio::test]
async fn client_vanishing_releases_the_backend_socket() {
    bounded(secs(20), "test", async {
        let (backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/echo").await;
        round_trip(&mut ws, "x").await;
        assert_eq!(backend.open(), 1);
        drop(ws); // TCP close without a Close frame
        wait_for("backend socket released", secs(5), || backend.open() == 0).await;
    })
    .await
}

#[tokio::test]
async fn backend_vanishing_closes_the_client_socket() {
    bounded(secs(20), "test", async {
        let (_backend, server) = ws_front(None).await;
        let mut ws = connect(server.addr(), "/drop-after-first").await;
        ws.send(Message::text("x")).await.unwrap();
        bounded(secs(5), "client socket to end", read_until_end(&mut ws)).await;
    })
    .await
}

#[tokio::test]
async fn upgrade_carries_upgrade_and_connection_headers() {
    bounded(secs(20), "test", async {
        let (backend, _server, _s, head) = upgraded("/echo-until-eof").await;
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: testproto"), "{head}");
        let sent = backend.last_head();
        assert!(sent.contains("upgrade: testproto"), "{sent}");
        assert!(
            sent.lines()
                .any(|l| l.starts_with("connection:") && l.contains("upgrade")),
            "{sent}"
        );
    })
    .await
}

#[tokio::test]
async fn client_half_close_reaches_the_backend_and_the_reply_still_flows() {
    bounded(secs(20), "test", async {
        let (backend, _server, mut s, _head) = upgraded("/echo-until-eof").await;
        s.write_all(b"half-closed data").await.unwrap();
        s.shutdown().await.unwrap(); // FIN: our write side only
        let mut reply = Vec::new();
        bounded(secs(5), "reply after half-close", s.read_to_end(&mut reply))
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&reply), "echo:half-closed data");
        wait_for("backend saw EOF then closed", secs(5), || {
            backend.events() == vec!["eof".to_string(), "closed".to_string()]
        })
        .await;
        upgrade_backend_released(&backend).await;
    })
    .await
}

#[tokio::test]
async fn backend_half_close_reaches_the_client_and_the_client_can_still_send() {
    bounded(secs(20), "test", async {
        let (backend, _server, mut s, _head) = upgraded("/server-half-close").await;
        let mut got = Vec::new();
        bounded(secs(5), "backend's data then EOF", s.read_to_end(&mut got))
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&got), "hello from server");
        // Our direction is still open after the backend's FIN.
        s.write_all(b"still talking").await.unwrap();
        s.shutdown().await.unwrap();
        wait_for("backend to receive after its half-close", secs(5), || {
            backend.events() == vec!["received:still talking".to_string(), "eof".to_string()]
        })
        .await;
        upgrade_backend_released(&backend).await;
    })
    .await
}

/// `idle-timeout` written in a Proxyfile reaches the running proxy.
#[tokio::test]
async fn idle_timeout_from_the_proxyfile_applies() {
    bounded(secs(30), "test", async {
        let backend = WsBackend::start().await;
        let dir = crate::support::TempDir::new("idle");
        let file = dir.write(
            "Proxyfile",
            &format!(
                "\"http://127.0.0.1:0\" {{\n    proxy \"{}\" {{\n        idle-timeout \"1s\"\n    }}\n}}\n",
                backend.addr
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let mut ws = connect(bellhop.addr(), "/echo").await;
        round_trip(&mut ws, "one").await;
        let quiet_since = Instant::now();
        bounded(secs(10), "idle websocket to be closed", read_until_end(&mut ws)).await;
        let after = quiet_since.elapsed();
        assert!(after >= millis(900) && after < secs(5), "closed after {after:?}");
        wait_for("backend socket released", secs(5), || backend.open() == 0).await;
    })
    .await
}
