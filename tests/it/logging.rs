//! One request log line per request at info, with method, host, path, status,
//! upstream, duration and bytes, in text and in JSON; failures name the upstream.

use crate::support::backends::echo::Echo;
use crate::support::binary::{json_field, text_field, Bellhop};
use crate::support::client::get;
use crate::support::ports::Port;
use crate::support::{bounded, secs, TempDir};

/// Fields every request line has. `duration` may carry a unit suffix (`duration_ms`).
const FIELDS: [&str; 6] = ["method", "host", "path", "status", "upstream", "bytes"];

/// The duration field of a text line, whatever its unit suffix.
fn text_duration(line: &str) -> Option<f64> {
    line.split_whitespace()
        .find(|t| t.starts_with("duration"))
        .and_then(|t| t.split_once('='))
        .and_then(|(_, v)| {
            v.trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .parse()
                .ok()
        })
}

#[tokio::test]
async fn request_log_line_in_text_has_every_field() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("log").await;
        let bellhop = Bellhop::proxy(&echo.addr().to_string(), &["--log-format", "text"]).await;
        let host = bellhop.addr().to_string();
        let r = get(bellhop.addr(), &host, "/logged/text?q=1").await;
        assert_eq!(r.status, 200);
        let line = bellhop
            .proc
            .wait_line("the request log line", secs(5), |l| {
                text_field(l, "path").is_some_and(|p| p.starts_with("/logged/text"))
            })
            .await;
        assert!(line.contains("INFO"), "not at info: {line}");
        for f in FIELDS {
            assert!(
                text_field(&line, f).is_some(),
                "field {f} missing in: {line}"
            );
        }
        assert!(
            text_duration(&line).is_some(),
            "no duration field in: {line}"
        );
        assert_eq!(text_field(&line, "method").as_deref(), Some("GET"));
        assert_eq!(text_field(&line, "host").as_deref(), Some(host.as_str()));
        assert_eq!(text_field(&line, "status").as_deref(), Some("200"));
        assert_eq!(text_field(&line, "upstream"), Some(echo.addr().to_string()));
        let bytes: u64 = text_field(&line, "bytes")
            .unwrap()
            .parse()
            .expect("bytes is a number");
        assert_eq!(
            bytes,
            r.body.len() as u64,
            "bytes should count the response body"
        );
    })
    .await
}

#[tokio::test]
async fn request_log_line_in_json_has_every_field() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("log").await;
        let bellhop = Bellhop::proxy(&echo.addr().to_string(), &["--log-format", "json"]).await;
        let host = bellhop.addr().to_string();
        let r = get(bellhop.addr(), &host, "/logged/json").await;
        assert_eq!(r.status, 200);
        let line = bellhop
            .proc
            .wait_line("the JSON request log line", secs(5), |l| {
                serde_json::from_str::<serde_json::Value>(l).is_ok_and(|j| {
                    json_field(&j, "path")
                        .and_then(|p| p.as_str())
                        .is_some_and(|p| p.starts_with("/logged/json"))
                })
            })
            .await;
        let j: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(j["level"], "INFO", "{line}");
        for f in FIELDS {
            assert!(json_field(&j, f).is_some(), "field {f} missing in: {line}");
        }
        let fields = j.get("fields").unwrap_or(&j);
        assert!(
            fields
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("duration")),
            "no duration field in: {line}"
        );
        assert_eq!(json_field(&j, "method").unwrap(), "GET");
        assert_eq!(json_field(&j, "host").unwrap(), host.as_str());
        let status = json_field(&j, "status").unwrap();
        assert!(status == 200 || status == "200", "status {status}");
        assert_eq!(
            json_field(&j, "upstream").unwrap(),
            echo.addr().to_string().as_str()
        );
        // Every line bellhop writes in JSON mode is JSON.
        for l in bellhop.proc.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(&l).is_ok(),
                "not JSON: {l}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn exactly_one_log_line_per_request() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("log").await;
        let bellhop = Bellhop::proxy(&echo.addr().to_string(), &[]).await;
        let host = bellhop.addr().to_string();
        for i in 0..5 {
            assert_eq!(
                get(bellhop.addr(), &host, &format!("/count/{i}"))
                    .await
                    .status,
                200
            );
        }
        bellhop
            .proc
            .wait_line("the last request's log line", secs(5), |l| {
                text_field(l, "path").as_deref() == Some("/count/4")
            })
            .await;
        let lines = bellhop.proc.plain_lines();
        for i in 0..5 {
            let path = format!("/count/{i}");
            let n = lines
                .iter()
                .filter(|l| text_field(l, "path").as_deref() == Some(path.as_str()))
                .count();
            assert_eq!(n, 1, "{path} logged {n} times");
        }
    })
    .await
}

#[tokio::test]
async fn refused_upstream_is_logged_with_its_address() {
    bounded(secs(30), "test", async {
        // Reserved for the whole test and never listened on: refused every time.
        let nobody = Port::reserve();
        let dead = format!("127.0.0.1:{}", nobody.number());
        let bellhop = Bellhop::proxy(&dead, &[]).await;
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/down").await;
        assert_eq!(r.status, 502);
        let line = bellhop
            .proc
            .wait_line("the 502's log line", secs(5), |l| {
                text_field(l, "path").as_deref() == Some("/down")
            })
            .await;
        assert_eq!(
            text_field(&line, "status").as_deref(),
            Some("502"),
            "{line}"
        );
        assert!(
            line.contains(&dead),
            "upstream address {dead} missing: {line}"
        );
    })
    .await
}

#[tokio::test]
async fn log_level_warn_silences_request_lines() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("log").await;
        let dir = TempDir::new("loglevel");
        // At warn the `listening` info line is silent too, so this one run is told
        // a reserved port instead of port 0; held until the test ends, so whatever
        // accepts there is this bellhop.
        let reserved = Port::reserve();
        let port = reserved.number();
        let file = dir.write(
            "Proxyfile",
            &format!(
                "\"http://127.0.0.1:{port}\" {{ proxy \"{}\" }}\n",
                echo.addr()
            ),
        );
        let mut cmd = std::process::Command::new(crate::support::binary::BELLHOP);
        cmd.args([
            "run",
            "--config",
            file.to_str().unwrap(),
            "--log-level",
            "warn",
        ]);
        let proc = crate::support::binary::Proc::spawn("bellhop", cmd);
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        crate::support::wait_for_async("bellhop to accept", secs(20), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        assert_eq!(get(addr, &addr.to_string(), "/quiet").await.status, 200);
        assert_eq!(get(addr, &addr.to_string(), "/quiet2").await.status, 200);
        // Two responses are back and a third request served: the first two lines
        // would long be written by now.
        assert_eq!(get(addr, &addr.to_string(), "/third").await.status, 200);
        assert!(
            !proc.plain_lines().iter().any(|l| l.contains("/quiet")),
            "request logged at warn: {:?}",
            proc.lines()
        );
    })
    .await
}

#[tokio::test]
async fn logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("log").await;
        let bellhop = Bellhop::proxy(&echo.addr().to_string(), &[]).await;
        assert_eq!(
            get(bellhop.addr(), &bellhop.addr().to_string(), "/plain")
                .await
                .status,
            200
        );
        bellhop
            .proc
            .wait_line("the request line", secs(5), |l| l.contains("/plain"))
            .await;
        for l in bellhop.proc.lines() {
            assert!(
                !l.contains('\u{1b}'),
                "ANSI escape in a log line for journald/files: {l:?}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn upstream_timeout_is_logged_as_504_with_the_upstream_address() {
    bounded(secs(30), "test", async {
        let slow = crate::support::backends::slow::Slow::start(secs(30)).await;
        let upstream = slow.http.addr().to_string();
        let dir = TempDir::new("timeout");
        let file = dir.write(
            "Proxyfile",
            &format!(
                "\"http://127.0.0.1:0\" {{\n    proxy \"{upstream}\" {{\n        header-timeout \"1s\"\n    }}\n}}\n"
            ),
        );
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/too-slow").await;
        assert_eq!(r.status, 504);
        let line = bellhop
            .proc
            .wait_line("the 504's log line", secs(5), |l| {
                text_field(l, "path").as_deref() == Some("/too-slow")
            })
            .await;
        assert_eq!(text_field(&line, "status").as_deref(), Some("504"), "{line}");
        assert!(line.contains(&upstream), "upstream address {upstream} missing: {line}");
    })
    .await
}
