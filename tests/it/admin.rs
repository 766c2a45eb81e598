//! The admin listener (`options { admin "127.0.0.1:…" }`) of the real binary:
//! `/metrics` parsed by the Prometheus project's own OpenMetrics parser (Python
//! `prometheus_client`, from the test virtualenv), `/health`, and refusals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::backends::ws::WsBackend;
use crate::support::binary::{text_field, Bellhop};
use crate::support::client::{get, req, send};
use crate::support::ws::{connect, read_until_end};
use crate::support::{bounded, secs, wait_for_async, TempDir};

/// One parsed sample: name, labels, value.
type Sample = (String, serde_json::Map<String, Value>, f64);

/// Scrapes `/metrics` and parses it with `tests/apps/scrape.py`.
async fn scrape(admin: SocketAddr) -> Vec<Sample> {
    let reply = get(admin, &admin.to_string(), "/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which creates the test virtualenv",
        python.display()
    );
    let text = reply.text();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .arg(repo.join("tests/apps/scrape.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the exposition");
        child.wait_with_output().expect("python output")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "the OpenMetrics parser rejected /metrics: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        reply.text()
    );
    let parsed: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&output.stdout).expect("scrape.py prints JSON");
    parsed
}

/// The admin listener's address, from its start-up log line.
async fn admin_addr(bellhop: &Bellhop) -> SocketAddr {
    let line = bellhop
        .proc
        .wait_line("the admin listener's address", secs(10), |l| {
            l.contains("admin listener")
        })
        .await;
    text_field(&line, "addr")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line}"))
}

/// A Proxyfile with the admin listener on an ephemeral loopback port, its state
/// under `dir`, any `options` lines in `options`, then `sites`.
fn admin_proxyfile(dir: &TempDir, options: &str, sites: &str) -> String {
    format!(
        "options {{\n    admin \"127.0.0.1:0\"\n{options}    state-dir \"{}\"\n}}\n{sites}",
        dir.path().join("state").display()
    )
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?} is ambiguous");
    matching.first().copied()
}

#[tokio::test]
async fn metrics_count_requests_by_site_route_and_class_and_health_is_ok() {
    bounded(secs(40), "test", async {
        let dir = TempDir::new("admin");
        let file = dir.write(
            "Proxyfile",
            &admin_proxyfile(
                &dir,
                "",
                "\"http://127.0.0.1:0\" {\n    \
                     route \"/limited\" {\n        rate-limit \"1/m\" burst=1\n        respond \"limited\"\n    }\n    \
                     respond \"hello\"\n}\n",
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let admin = admin_addr(&bellhop).await;

        let site = bellhop.addr();
        let host = site.to_string();
        for _ in 0..3 {
            assert_eq!(get(site, &host, "/").await.status, 200);
        }
        assert_eq!(get(site, &host, "/limited").await.status, 200);
        assert_eq!(get(site, &host, "/limited").await.status, 429);

        let samples = scrape(admin).await;
        let site_label = "http://127.0.0.1:0";
        let requests = |route: &str, code: &str| {
            value(
                &samples,
                "bellhop_requests_total",
                &[("site", site_label), ("route", route), ("code", code)],
            )
        };
        assert_eq!(requests("*", "2xx"), Some(3.0), "{samples:?}");
        assert_eq!(requests("/limited", "2xx"), Some(1.0), "{samples:?}");
        assert_eq!(requests("/limited", "4xx"), Some(1.0), "{samples:?}");
        assert_eq!(requests("*", "5xx"), Some(0.0), "{samples:?}");
        assert_eq!(
            value(
                &samples,
                "bellhop_rate_limited_total",
                &[("site", site_label)]
            ),
            Some(1.0)
        );
        // Each `get` above closed its connection; only the scrape's may be open.
        let open = value(&samples, "bellhop_open_connections", &[]).expect("gauge");
        assert!(open <= 1.0, "open connections {open}");
        assert_eq!(
            value(
                &samples,
                "bellhop_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );

        let health = get(admin, &admin.to_string(), "/health").await;
        assert_eq!(health.status, 200, "{}", health.text());
        assert_eq!(get(admin, &admin.to_string(), "/nope").await.status, 404);
        let post = send(
            admin,
            None,
            req("POST", &admin.to_string(), "/metrics")
                .body(crate::support::client::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(post.status, 405);
    })
    .await
}

#[tokio::test]
async fn reloads_are_counted_by_result() {
    bounded(secs(40), "test", async {
        let dir = TempDir::new("admin-reload");
        let proxyfile = |extra: &str| {
            admin_proxyfile(
                &dir,
                "",
                &format!("\"http://127.0.0.1:0\" {{\n{extra}    respond \"hello\"\n}}\n"),
            )
        };
        let file = dir.write("Proxyfile", &proxyfile(""));
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let admin = admin_addr(&bellhop).await;

        // A file that does not parse is a failed reload; then a good one applies.
        dir.write("Proxyfile", &proxyfile("    bogus-directive 1\n"));
        bellhop.proc.signal(libc::SIGHUP);
        bellhop
            .proc
            .wait_line("the reload failure", secs(10), |l| {
                l.contains("reload failed")
            })
            .await;
        dir.write("Proxyfile", &proxyfile(""));
        bellhop.proc.signal(libc::SIGHUP);
        bellhop
            .proc
            .wait_line("the reload", secs(10), |l| l.contains("reloaded: 1 site"))
            .await;
        let samples = scrape(admin).await;
        let reloads = |result: &str| {
            value(&samples, "bellhop_reloads_total", &[("result", result)]).unwrap_or(0.0)
        };
        assert_eq!(reloads("applied"), 1.0, "{samples:?}");
        assert_eq!(reloads("failed"), 1.0, "{samples:?}");
    })
    .await
}

#[tokio::test]
async fn open_websockets_follow_upgraded_tunnels() {
    bounded(secs(40), "test", async {
        let backend = WsBackend::start().await;
        let dir = TempDir::new("admin-ws");
        let file = dir.write(
            "Proxyfile",
            &admin_proxyfile(
                &dir,
                "",
                &format!(
                    "\"http://127.0.0.1:0\" {{\n    proxy \"{}\"\n}}\n",
                    backend.addr
                ),
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let admin = admin_addr(&bellhop).await;
        let open = |samples: &[Sample]| value(samples, "bellhop_open_websockets", &[]);
        assert_eq!(open(&scrape(admin).await), Some(0.0));

        // The tunnel is spawned before the 101 goes out: counted once connected.
        let mut ws = connect(bellhop.addr(), "/").await;
        assert_eq!(open(&scrape(admin).await), Some(1.0));

        ws.close(None).await.expect("send Close");
        read_until_end(&mut ws).await;
        // Half-close is respected: the tunnel ends once the client's side closes too.
        drop(ws);
        wait_for_async("bellhop_open_websockets back at 0", secs(10), || async {
            let text = get(admin, &admin.to_string(), "/metrics").await.text();
            text.lines().any(|l| l == "bellhop_open_websockets 0")
        })
        .await;
    })
    .await
}

#[tokio::test]
async fn served_certificates_are_reported_with_their_end_of_validity() {
    bounded(secs(40), "test", async {
        let dir = TempDir::new("admin-certs");
        let file = dir.write(
            "Proxyfile",
            &admin_proxyfile(
                &dir,
                "    http-port 0\n    https-port 0\n",
                "localhost {\n    tls internal\n    respond \"tls\"\n}\n",
            ),
        );
        // With both ports 0 there is one listener: HTTPS, no redirect port.
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let admin = admin_addr(&bellhop).await;
        let samples = scrape(admin).await;
        let not_after = value(
            &samples,
            "bellhop_certificate_not_after_seconds",
            &[("name", "localhost")],
        )
        .unwrap_or_else(|| panic!("no certificate gauge for localhost: {samples:?}"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        // Internal leaves live for days, not years, and are valid now.
        assert!(
            not_after > now && not_after < now + 30.0 * 86_400.0,
            "not_after {not_after}, now {now}"
        );
    })
    .await
}
