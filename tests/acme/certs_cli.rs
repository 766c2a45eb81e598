//! `bellhop certs` against the real binary and a private Pebble: one name
//! issued, one the CA refuses (`rejectedIdentifier` through Pebble's
//! blocklist). While bellhop runs the table comes from its admin listener;
//! once it has stopped, from the state directory; both show the CA's error
//! verbatim and agree on what was issued.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::pebble::{Pebble, PebbleOptions};
use crate::support::ports::Port;
use crate::support::TempDir;

const BELLHOP: &str = env!("CARGO_BIN_EXE_bellhop");

/// `bellhop run` as a child process, its output in a file; stopped on drop.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, dir: &Path) -> Running {
        let log = dir.join("bellhop.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(BELLHOP)
            .args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start bellhop");
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the process to exit.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "bellhop did not stop:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bellhop certs --config CONFIG ARGS…`: stdout, after checking it succeeded.
async fn certs(config: &Path, args: &[&str]) -> String {
    let mut command = Command::new(BELLHOP);
    command.args(["certs", "--config"]).arg(config).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run bellhop certs");
    assert!(
        output.status.success(),
        "bellhop certs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

async fn certs_json(config: &Path) -> Value {
    serde_json::from_str(&certs(config, &["--json"]).await).expect("JSON")
}

/// The row of `name`.
fn row<'t>(table: &'t Value, name: &str) -> &'t Value {
    table["certificates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no row for {name} in {table:#}"))
}

/// A plain HTTP GET; the body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let body = response.into_body().collect().await.expect("body");
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_shows_issued_and_refused_names_running_and_stopped() {
    let (http, https, admin) = (Port::reserve(), Port::reserve(), Port::reserve());
    let mut options = PebbleOptions::new(http.number(), https.number());
    options.blocklist = vec!["blocked.test".into()];
    let pebble = Pebble::start(options).await;
    let dir = TempDir::new("certs-cli");
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin.number()));
    let config = dir.path().join("Proxyfile");
    std::fs::write(
        &config,
        format!(
            "options {{\n    admin \"{admin_addr}\"\n    acme-ca \"{}\"\n    acme-ca-root \"{}\"\n    \
             state-dir \"{}\"\n    http-port {}\n    https-port {}\n    email \"test@example.com\"\n}}\n\
             ok.test {{\n    respond \"ok\"\n}}\nblocked.test {{\n    respond \"blocked\"\n}}\n",
            pebble.directory_url,
            pebble.api_root_path.display(),
            dir.path().join("state").display(),
            http.number(),
            https.number(),
        ),
    )
    .expect("write Proxyfile");
    let mut bellhop = Running::start(&config, dir.path());

    // Both outcomes, as the running bellhop reports them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let running = loop {
        let table = certs_json(&config).await;
        let settled = table["from"] == "admin"
            && !row(&table, "ok.test")["not_after"].is_null()
            && !row(&table, "blocked.test")["last_error"].is_null();
        if settled {
            break table;
        }
        assert!(
            Instant::now() < deadline,
            "no settled table: {table:#}\n{}\n{}",
            bellhop.log(),
            pebble.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(running["admin"], admin_addr.to_string());
    let issued = row(&running, "ok.test");
    assert_eq!(issued["source"], "acme");
    let issuer = issued["issuer"].as_str().unwrap_or_default();
    assert!(issuer.contains("Pebble"), "{running:#}");
    assert!(issued["last_error"].is_null() && issued["failures"] == 0);
    assert!(!issued["last_success"].is_null(), "{running:#}");
    // Pebble's certificates are valid for years: renewal is far off, and before expiry.
    let (not_after, next) = (
        issued["not_after"].as_str().expect("not_after"),
        issued["next_renewal"].as_str().expect("next_renewal"),
    );
    assert!(next < not_after, "{running:#}");

    let refused = row(&running, "blocked.test");
    assert!(refused["not_after"].is_null(), "{running:#}");
    assert_eq!(refused["failures"], 1);
    let error = refused["last_error"]["message"].as_str().expect("message");
    assert!(
        error.contains("urn:ietf:params:acme:error:rejectedIdentifier")
            && error.contains("blocked.test"),
        "the CA's problem verbatim: {error}"
    );
    assert!(refused["last_error"]["at"].is_string(), "{running:#}");

    let table = certs(&config, &[]).await;
    assert!(
        table.starts_with(&format!(
            "from the running bellhop (admin listener {admin_addr})"
        )),
        "{table}"
    );
    assert!(
        table.contains(error),
        "the error verbatim in the table:\n{table}"
    );
    assert!(table.contains(issuer), "{table}");

    let metrics = http_get(admin_addr, "/metrics").await;
    for line in [
        "bellhop_acme_failures_total{name=\"blocked.test\"} 1",
        "bellhop_certificate_renewal_last_result{name=\"blocked.test\",result=\"failure\"} 1",
        "bellhop_certificate_renewal_last_result{name=\"ok.test\",result=\"success\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }

    // Stopped: the same facts from the state directory.
    bellhop.stop().await;
    let stopped = certs_json(&config).await;
    assert_eq!(stopped["from"], "state-dir", "{stopped:#}");
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&admin_addr.to_string()),
        "{stopped:#}"
    );
    let stored = row(&stopped, "ok.test");
    for field in ["source", "issuer", "not_after", "last_success", "failures"] {
        assert_eq!(stored[field], issued[field], "{field}: {stopped:#}");
    }
    let stored = row(&stopped, "blocked.test");
    assert_eq!(stored["last_error"], refused["last_error"], "{stopped:#}");
    assert_eq!(stored["failures"], 1);
    // The persisted retry time is what the running task waited for.
    assert_eq!(
        stored["next_renewal"], refused["next_renewal"],
        "{stopped:#}"
    );

    let table = certs(&config, &[]).await;
    assert!(table.starts_with("from the state directory"), "{table}");
    assert!(table.contains(error), "{table}");
}
