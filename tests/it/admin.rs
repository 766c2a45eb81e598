//! The admin listener (`options { admin "127.0.0.1:…" }`) of the real binary:
//! `/metrics` parsed by the Prometheus project's own OpenMetrics parser (Python
//! `prometheus_client`, from the test virtualenv), `/health`, `/certs`, and
//! refusals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::backends::echo::Echo;
use crate::support::backends::ws::WsBackend;
use crate::support::binary::{run_cli, text_field, Bellhop};
use crate::support::client::{body, get, req, send};
use crate::support::ports::Port;
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

/// A bellhop with the admin listener and one plain-HTTP site that proxies to
/// `upstream`; its temp dir (keep it), the process and the admin address.
async fn proxying_to(label: &str, upstream: SocketAddr) -> (TempDir, Bellhop, SocketAddr) {
    let dir = TempDir::new(label);
    let site = format!("\"http://127.0.0.1:0\" {{\n    proxy \"{upstream}\"\n}}\n");
    let file = dir.write("Proxyfile", &admin_proxyfile(&dir, "", &site));
    let bellhop = Bellhop::run_config(&file, &[], 1).await;
    let admin = admin_addr(&bellhop).await;
    (dir, bellhop, admin)
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
        let (_dir, bellhop, admin) = proxying_to("admin-ws", backend.addr).await;
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

#[tokio::test]
async fn upstream_response_times_and_bytes_match_the_traffic_sent() {
    bounded(secs(40), "test", async {
        let backend = Echo::start("timed").await;
        let (_dir, bellhop, admin) = proxying_to("admin-upstream", backend.addr()).await;
        let site = bellhop.addr();
        let host = site.to_string();

        // Each request on its own connection: bytes are added when one closes.
        const REQUESTS: usize = 5;
        const BODY: usize = 20_000;
        let mut answered = 0;
        for _ in 0..REQUESTS {
            let request = req("POST", &host, "/upload")
                .body(body(vec![b'x'; BODY]))
                .expect("request");
            let reply = send(site, None, request).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            answered += reply.body.len();
        }
        let site_label = [("site", "http://127.0.0.1:0")];
        let upstream = backend.addr().to_string();
        let upstream_label = [("upstream", upstream.as_str())];
        // The last connection's totals arrive once bellhop has seen it close.
        wait_for_async(
            "the byte counters of every connection",
            secs(10),
            || async {
                let samples = scrape(admin).await;
                value(&samples, "bellhop_received_bytes_total", &site_label)
                    .is_some_and(|v| v >= (REQUESTS * BODY) as f64)
            },
        )
        .await;
        let samples = scrape(admin).await;
        let received = value(&samples, "bellhop_received_bytes_total", &site_label);
        let sent = value(&samples, "bellhop_sent_bytes_total", &site_label);
        // Heads come on top of the bodies, each way.
        let received = received.expect("received bytes");
        assert!(received < (REQUESTS * (BODY + 1024)) as f64, "{received}");
        let sent = sent.expect("sent bytes");
        assert!(
            sent >= answered as f64,
            "sent {sent} < {answered} body bytes"
        );
        assert!(sent < (answered + REQUESTS * 1024) as f64, "{sent}");

        let histogram = |suffix: &str, labels: &[(&str, &str)]| {
            value(
                &samples,
                &format!("bellhop_upstream_response_seconds{suffix}"),
                labels,
            )
        };
        assert_eq!(
            histogram("_count", &upstream_label),
            Some(REQUESTS as f64),
            "{samples:?}"
        );
        let inf = [("upstream", upstream.as_str()), ("le", "+Inf")];
        assert_eq!(histogram("_bucket", &inf), Some(REQUESTS as f64));
        let sum = histogram("_sum", &upstream_label).expect("sum");
        assert!(sum > 0.0 && sum < 10.0, "{sum}");
    })
    .await
}

#[tokio::test]
async fn certs_lists_every_name_with_the_ca_error_verbatim() {
    bounded(secs(40), "test", async {
        let dir = TempDir::new("admin-certs-json");
        // Nothing listens on a reserved port: every ACME attempt fails at once.
        let nowhere = Port::reserve();
        let ca = format!("https://127.0.0.1:{}/dir", nowhere.number());
        let file = dir.write(
            "Proxyfile",
            &admin_proxyfile(
                &dir,
                &format!("    http-port 0\n    https-port 0\n    acme-ca \"{ca}\"\n"),
                "localhost {\n    tls internal\n    respond \"tls\"\n}\n\
                 down.test {\n    respond \"acme\"\n}\n",
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let admin = admin_addr(&bellhop).await;
        let certs = || async move {
            let reply = get(admin, &admin.to_string(), "/certs").await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(
                reply.header("content-type").as_deref(),
                Some("application/json")
            );
            reply.json()
        };
        // The next attempt is a minute of backoff away, so the table holds still.
        wait_for_async("the failed attempt in /certs", secs(10), || async {
            !row(&certs().await, "down.test")["last_error"].is_null()
        })
        .await;
        let table = certs().await;

        let internal = row(&table, "localhost");
        assert_eq!(internal["source"], "internal", "{table:#}");
        let issuer = internal["issuer"].as_str().unwrap_or_default();
        assert!(issuer.contains("bellhop local CA"), "{table:#}");
        let not_after = internal["not_after"].as_str().expect("not_after");
        let next = internal["next_renewal"].as_str().expect("next_renewal");
        // RFC 3339 UTC to the second sorts as text: renewal comes before expiry.
        assert!(is_rfc3339(not_after) && is_rfc3339(next), "{table:#}");
        assert!(next < not_after, "{table:#}");

        let acme = row(&table, "down.test");
        assert_eq!(acme["source"], "acme");
        assert!(
            acme["not_after"].is_null() && acme["issuer"].is_null(),
            "{table:#}"
        );
        assert_eq!(acme["failures"], 1, "{table:#}");
        let message = acme["last_error"]["message"].as_str().expect("message");
        assert!(message.contains(&ca), "the CA's address in {message:?}");
        assert!(
            message.to_lowercase().contains("connection refused"),
            "{message:?}"
        );
        let at = acme["last_error"]["at"].as_str().expect("at");
        // The retry waits out the first backoff (a minute and some jitter).
        let next = acme["next_renewal"].as_str().expect("next_renewal");
        assert!(is_rfc3339(at) && next > at, "{table:#}");
        assert!(acme
            .as_object()
            .is_some_and(|o| o.contains_key("ari_window")));

        let samples = scrape(admin).await;
        let name = [("name", "down.test")];
        assert_eq!(
            value(&samples, "bellhop_acme_failures_total", &name),
            Some(1.0)
        );
        let last = |result: &str| {
            value(
                &samples,
                "bellhop_certificate_renewal_last_result",
                &[("name", "down.test"), ("result", result)],
            )
        };
        assert_eq!((last("failure"), last("success")), (Some(1.0), Some(0.0)));
    })
    .await
}

/// The row of `name` in a `/certs` table.
fn row<'t>(table: &'t Value, name: &str) -> &'t Value {
    table["certificates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no row for {name} in {table:#}"))
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_rfc3339(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

#[tokio::test]
async fn certs_cli_without_an_admin_listener_reads_the_state_directory() {
    let dir = TempDir::new("certs-cli-state");
    let state = dir.path().join("state");
    let file = dir.write(
        "Proxyfile",
        &format!(
            "options {{\n    state-dir \"{}\"\n}}\nlocalhost {{\n    tls internal\n    respond \"hi\"\n}}\n",
            state.display()
        ),
    );
    let file = file.to_str().expect("utf-8 path");
    let (code, out, err) = run_cli(&["certs", "--config", file], None);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("from the state directory {}", state.display()))
            && first.contains("has no `admin` option"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("localhost") && l.contains("internal")),
        "{out}"
    );
    // Reading creates nothing: no internal CA, no state directory.
    assert!(!state.exists());
    let (code, out, err) = run_cli(&["certs", "--config", file, "--json"], None);
    assert_eq!(code, 0, "{err}");
    let table: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(table["from"], "state-dir");
    assert_eq!(row(&table, "localhost")["source"], "internal");
}
