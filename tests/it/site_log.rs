//! A site's own access log (`log "PATH" format="json"`): JSON lines with every
//! field (client after trusted-proxy resolution, TLS version, protocol, user
//! agent) and no credentials; the file reopened on SIGUSR1 and on reload after
//! logrotate moved it; a WebSocket's line written when it closes, with its
//! lifetime and bytes each way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use futures_util::SinkExt as _;
use http::Request;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::backends::echo::Echo;
use crate::support::backends::ws::WsBackend;
use crate::support::binary::Bellhop;
use crate::support::client::{collect, empty, get, h1, tls_connect};
use crate::support::ws::{connect, next_data, read_until_end};
use crate::support::{bounded, secs, wait_for, TempDir};

/// A Proxyfile with state in `dir`, trusting 127.0.0.1 as a proxy.
fn proxyfile(dir: &Path, options: &str, sites: &str) -> String {
    format!(
        "options {{\n    state-dir \"{}\"\n    trusted-proxies \"127.0.0.1/32\"\n{options}}}\n{sites}",
        dir.join("state").display()
    )
}

/// A plain-HTTP site proxying to `upstream`, logging to `log` in `format`.
fn logged_site(upstream: SocketAddr, log: &Path, format: &str) -> String {
    format!(
        "\"http://127.0.0.1:0\" {{\n    log \"{}\" format=\"{format}\"\n    proxy \"{upstream}\"\n}}\n",
        log.display()
    )
}

/// The lines of `path` so far (none if it does not exist).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until `path` has `n` lines, and returns them parsed as JSON.
async fn json_lines(path: &Path, n: usize) -> Vec<Value> {
    wait_for(
        &format!("{n} line(s) in {}", path.display()),
        secs(10),
        || lines(path).len() >= n,
    )
    .await;
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// GET `path` with the given extra headers; returns the status.
async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = Request::get(path).header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut sender = h1(addr, None).await;
    let resp = sender
        .send_request(req.body(empty()).expect("request"))
        .await
        .expect("response");
    collect(resp).await.status.as_u16()
}

#[tokio::test]
async fn json_lines_have_every_field_and_never_credentials() {
    bounded(secs(40), "test", async {
        let echo = Echo::start("site-log").await;
        let dir = TempDir::new("site-log-json");
        let log = dir.path().join("app.log");
        let file = dir.write(
            "Proxyfile",
            &proxyfile(dir.path(), "", &logged_site(echo.addr(), &log, "json")),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let status = get_with(
            bellhop.addr(),
            "/logged?q=1",
            &[
                ("user-agent", "site-log-test/1.0 (\"quoted\")"),
                ("x-forwarded-for", "203.0.113.7"),
                ("authorization", "Bearer SECRET-AUTHORIZATION"),
                ("cookie", "session=SECRET-COOKIE"),
                ("x-echo-set", "Set-Cookie: session=SECRET-SET-COOKIE"),
            ],
        )
        .await;
        assert_eq!(status, 200);

        let line = json_lines(&log, 1).await.remove(0);
        let text = |k: &str| line.get(k).and_then(Value::as_str).map(str::to_string);
        let number = |k: &str| line.get(k).and_then(Value::as_f64);
        assert_eq!(text("client").as_deref(), Some("203.0.113.7"), "{line}");
        assert_eq!(text("peer").as_deref(), Some("127.0.0.1"));
        assert_eq!(text("method").as_deref(), Some("GET"));
        assert_eq!(text("host"), Some(bellhop.addr().to_string()));
        assert_eq!(text("path").as_deref(), Some("/logged?q=1"));
        assert_eq!(text("protocol").as_deref(), Some("HTTP/1.1"));
        assert_eq!(text("tls").as_deref(), Some("-"), "plain HTTP");
        assert_eq!(
            text("user_agent").as_deref(),
            Some("site-log-test/1.0 (\"quoted\")")
        );
        assert_eq!(number("status"), Some(200.0));
        assert_eq!(text("upstream"), Some(echo.addr().to_string()));
        assert!(number("bytes").is_some_and(|b| b > 0.0), "{line}");
        assert!(number("duration_ms").is_some_and(|d| d >= 0.0), "{line}");
        assert_eq!(line.get("complete"), Some(&Value::Bool(true)));
        assert!(
            text("time").is_some_and(|t| t.ends_with('Z') && t.len() >= 20),
            "{line}"
        );
        let raw = std::fs::read_to_string(&log).expect("read the log");
        assert!(!raw.contains("SECRET"), "a credential was logged: {raw}");
        // The stderr log has no line for this site's request.
        assert!(
            !bellhop
                .proc
                .plain_lines()
                .iter()
                .any(|l| l.contains("/logged?q=1")),
            "the request was logged to stderr too"
        );
    })
    .await
}

#[tokio::test]
async fn text_lines_over_tls_name_the_tls_version_and_protocol() {
    bounded(secs(40), "test", async {
        let dir = TempDir::new("site-log-tls");
        let log = dir.path().join("tls.log");
        let file = dir.write(
            "Proxyfile",
            &proxyfile(
                dir.path(),
                "    http-port 0\n    https-port 0\n",
                &format!(
                    "localhost {{\n    tls internal\n    log \"{}\"\n    respond \"tls\"\n}}\n",
                    log.display()
                ),
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let root = std::fs::read(bellhop::InternalCa::root_path(&dir.path().join("state")))
            .expect("the internal CA's root");
        let tls = tls_connect(bellhop.addr(), "localhost", &root, &[b"http/1.1"]).await;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("h1 over TLS");
        tokio::spawn(conn);
        let req = Request::get("/tls-text")
            .header("host", "localhost")
            .header("user-agent", "text agent")
            .body(empty())
            .expect("request");
        let resp = collect(sender.send_request(req).await.expect("response")).await;
        assert_eq!(resp.status, 200);

        wait_for("the text line", secs(10), || !lines(&log).is_empty()).await;
        let line = lines(&log).remove(0);
        for field in [
            "method=GET",
            "path=/tls-text",
            "protocol=HTTP/1.1",
            "tls=TLSv1.3",
            "status=200",
            "bytes=3",
            "complete=true",
            "user_agent=\"text agent\"",
        ] {
            assert!(line.contains(&format!(" {field}")), "no {field} in: {line}");
        }
    })
    .await
}

#[tokio::test]
async fn a_moved_log_file_is_reopened_on_sigusr1_and_on_reload() {
    bounded(secs(60), "test", async {
        let echo = Echo::start("rotate").await;
        let dir = TempDir::new("site-log-rotate");
        let log = dir.path().join("app.log");
        let file = dir.write(
            "Proxyfile",
            &proxyfile(dir.path(), "", &logged_site(echo.addr(), &log, "json")),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let addr = bellhop.addr();
        let host = addr.to_string();
        let paths = |lines: Vec<Value>| -> Vec<String> {
            lines
                .iter()
                .filter_map(|l| l.get("path")?.as_str().map(str::to_string))
                .collect()
        };

        assert_eq!(get(addr, &host, "/before").await.status, 200);
        json_lines(&log, 1).await;

        // logrotate without copytruncate: move, then signal.
        let rotated: PathBuf = dir.path().join("app.log.1");
        std::fs::rename(&log, &rotated).expect("move the log");
        bellhop.proc.signal(libc::SIGUSR1);
        wait_for("a new app.log after SIGUSR1", secs(10), || log.exists()).await;
        assert_eq!(get(addr, &host, "/after-usr1").await.status, 200);
        assert_eq!(paths(json_lines(&log, 1).await), ["/after-usr1"]);
        assert_eq!(paths(json_lines(&rotated, 1).await), ["/before"]);

        // A reload reopens too.
        let rotated2 = dir.path().join("app.log.2");
        std::fs::rename(&log, &rotated2).expect("move the log again");
        bellhop.proc.signal(libc::SIGHUP);
        wait_for("a new app.log after SIGHUP", secs(10), || log.exists()).await;
        assert_eq!(get(addr, &host, "/after-reload").await.status, 200);
        assert_eq!(paths(json_lines(&log, 1).await), ["/after-reload"]);
        assert_eq!(paths(json_lines(&rotated2, 1).await), ["/after-usr1"]);
    })
    .await
}

#[tokio::test]
async fn a_websocket_is_logged_when_it_closes_with_its_bytes_each_way() {
    bounded(secs(40), "test", async {
        let ws_backend = WsBackend::start().await;
        let dir = TempDir::new("site-log-ws");
        let log = dir.path().join("ws.log");
        let file = dir.write(
            "Proxyfile",
            &proxyfile(dir.path(), "", &logged_site(ws_backend.addr, &log, "json")),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let mut ws = connect(bellhop.addr(), "/echo").await;
        let message = "x".repeat(1000);
        ws.send(Message::text(message.clone())).await.expect("send");
        match next_data(&mut ws).await {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), message),
            other => panic!("expected the echo, got {other:?}"),
        }
        // Open for a while and past the 101: nothing logged yet.
        assert!(
            lines(&log).is_empty(),
            "logged before close: {:?}",
            lines(&log)
        );

        ws.close(None).await.expect("send Close");
        read_until_end(&mut ws).await;
        drop(ws);
        let line = json_lines(&log, 1).await.remove(0);
        let number = |k: &str| line.get(k).and_then(Value::as_f64).unwrap_or(-1.0);
        assert_eq!(number("status"), 101.0, "{line}");
        assert!(number("bytes") > 1000.0, "to the client: {line}");
        assert!(
            number("bytes_from_client") > 1000.0,
            "from the client: {line}"
        );
        assert!(number("duration_ms") > 0.0, "{line}");
        assert_eq!(line.get("complete"), Some(&Value::Bool(true)), "{line}");
    })
    .await
}
