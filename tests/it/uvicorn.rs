//! End to end with a real uvicorn + FastAPI app (tests/apps/ws_app.py) behind the
//! bellhop binary: WebSocket pushes every 0.5 s arrive in order, and the app sees the
//! client's own address through X-Forwarded-For.
//!
//! Needs the virtualenv that `scripts/test` creates; without it these tests fail
//! (never skip) and say how to create it.

use std::path::PathBuf;
use std::process::Command;

use crate::support::binary::{Bellhop, Proc};
use crate::support::client::{empty, req, send};
use crate::support::ws::{connect, next_data};
use crate::support::{bounded, secs};

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.venv/bin/uvicorn`, or a failure that says how to create it.
pub(crate) fn uvicorn_bin() -> PathBuf {
    let bin = repo().join(".venv/bin/uvicorn");
    assert!(
        bin.exists(),
        "{} is missing. The uvicorn end-to-end tests need the test virtualenv; create it with \
         `scripts/test` (which sets everything up), or by hand from the repository root:\n  \
         python3 -m venv .venv && .venv/bin/pip install -r tests/apps/requirements.txt",
        bin.display()
    );
    bin
}

/// uvicorn serving ws_app on an ephemeral port, as an operator would run it behind a proxy.
struct Uvicorn {
    _proc: Proc,
    addr: std::net::SocketAddr,
}

async fn start_uvicorn() -> Uvicorn {
    let mut cmd = Command::new(uvicorn_bin());
    cmd.current_dir(repo().join("tests/apps")).args([
        "ws_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--log-level",
        "info",
    ]);
    let proc = Proc::spawn("uvicorn", cmd);
    let line = proc
        .wait_line("`Uvicorn running on`", secs(30), |l| {
            l.contains("Uvicorn running on")
        })
        .await;
    let url = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let addr = url
        .parse()
        .unwrap_or_else(|e| panic!("bad address {url:?} ({e})"));
    Uvicorn { _proc: proc, addr }
}

#[tokio::test]
async fn uvicorn_websocket_pushes_arrive_in_order_through_bellhop() {
    bounded(secs(60), "test", async {
        let app = start_uvicorn().await;
        let bellhop = Bellhop::proxy(&app.addr.to_string(), &[]).await;
        let mut ws = connect(bellhop.addr(), "/ws").await;
        for want in 0..20u64 {
            let msg = bounded(secs(3), "next push (one every 0.5 s)", next_data(&mut ws)).await;
            let Some(Ok(msg)) = msg else {
                panic!("socket ended before push {want}: {msg:?}")
            };
            let j: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            assert_eq!(j["seq"], want, "pushes out of order");
        }
        ws.close(None).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn uvicorn_sees_the_client_address_from_x_forwarded_for() {
    bounded(secs(60), "test", async {
        let app = start_uvicorn().await;
        let bellhop = Bellhop::proxy(&app.addr.to_string(), &[]).await;
        // The client connects from 127.0.0.2; bellhop reaches uvicorn from 127.0.0.1.
        let from = Some("127.0.0.2".parse().unwrap());
        let r = send(
            bellhop.addr(),
            from,
            req("GET", &bellhop.addr().to_string(), "/client")
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["client_host"], "127.0.0.2", "{j}");
        assert_eq!(j["x_forwarded_for"], "127.0.0.2", "{j}");
        assert_eq!(j["scheme"], "http", "{j}");
    })
    .await
}

/// The other common deployment: uvicorn on a unix socket (`--uds`), bellhop
/// forwarding to `unix:/path.sock`.
#[tokio::test]
async fn uvicorn_on_a_unix_socket_through_bellhop() {
    bounded(secs(60), "test", async {
        let dir = crate::support::TempDir::new("uds");
        let sock = dir.path().join("app.sock");
        let mut cmd = Command::new(uvicorn_bin());
        cmd.current_dir(repo().join("tests/apps"))
            .args(["ws_app:app", "--log-level", "info", "--uds"])
            .arg(&sock);
        let proc = Proc::spawn("uvicorn", cmd);
        proc.wait_line("`Uvicorn running on unix socket`", secs(30), |l| {
            l.contains("Uvicorn running on")
        })
        .await;
        let bellhop = Bellhop::proxy(&format!("unix:{}", sock.display()), &[]).await;
        let r = send(
            bellhop.addr(),
            None,
            req("GET", &bellhop.addr().to_string(), "/client")
                .body(empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["x_forwarded_for"], "127.0.0.1");
        let mut ws = connect(bellhop.addr(), "/ws").await;
        for want in 0..5u64 {
            let msg = bounded(secs(3), "next push", next_data(&mut ws)).await;
            let Some(Ok(msg)) = msg else {
                panic!("socket ended before push {want}: {msg:?}")
            };
            let j: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
            assert_eq!(j["seq"], want);
        }
    })
    .await
}
