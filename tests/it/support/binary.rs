//! The `bellhop` binary as a child process: started with arguments, its stderr
//! collected line by line (and echoed for test output), its listening addresses read
//! from the `listening addr=…` log lines, killed when the handle is dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{millis, secs, wait_for};

/// Path of the binary cargo built for this test run.
pub const BELLHOP: &str = env!("CARGO_BIN_EXE_bellhop");

/// A running child process whose stderr is captured.
pub struct Proc {
    child: Child,
    name: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stderr (and stdout) captured line by line.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let tag = format!("{name} {}", child.id());
        if let Some(out) = child.stderr.take() {
            collect_lines(out, lines.clone(), tag.clone());
        }
        if let Some(out) = child.stdout.take() {
            collect_lines(out, lines.clone(), tag);
        }
        Proc {
            child,
            name: name.to_string(),
            lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All output lines so far (stderr and stdout interleaved), raw.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Output lines so far with ANSI escape sequences removed.
    pub fn plain_lines(&self) -> Vec<String> {
        self.lines().iter().map(|l| strip_ansi(l)).collect()
    }

    /// Waits until an output line (ANSI stripped) satisfies `pred`; returns it.
    pub async fn wait_line(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut found = None;
        let lines = self.lines.clone();
        let name = self.name.clone();
        wait_for(&format!("{name} to log {what}"), timeout, || {
            found = lines
                .lock()
                .unwrap()
                .iter()
                .map(|l| strip_ansi(l))
                .find(|l| pred(l));
            found.is_some()
        })
        .await;
        found.expect("line")
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.child.id());
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not exit within {timeout:?}",
                self.name
            );
            tokio::time::sleep(millis(10)).await;
        }
    }

    /// Resident set size in KiB (`VmRSS` in /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("VmRSS in /proc/PID/status")
    }

    /// Number of open file descriptors (entries of /proc/PID/fd).
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size in KiB of any process (`VmRSS` in /proc/PID/status).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn collect_lines(
    out: impl std::io::Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    tag: String,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{tag}] {line}");
            lines.lock().unwrap().push(line);
        }
    });
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The address in a `listening` log line, text (`addr=IP:PORT`) or JSON (`"addr":"IP:PORT"`).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    if let Ok(j) = serde_json::from_str::<serde_json::Value>(line) {
        return json_field(&j, "addr")?.as_str()?.parse().ok();
    }
    let rest = &line[line.find("addr=")? + 5..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ',' || c == '"')
        .unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

/// A field of a tracing JSON log line, at top level or under `fields`/`span`.
pub fn json_field<'a>(j: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    j.get(name)
        .or_else(|| j.get("fields").and_then(|f| f.get(name)))
        .or_else(|| j.get("span").and_then(|f| f.get(name)))
}

/// A field `name=value` of a tracing text log line (quotes removed).
pub fn text_field(line: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    let mut search = 0;
    while let Some(i) = line[search..].find(&key) {
        let at = search + i;
        if at == 0 || line.as_bytes()[at - 1] == b' ' {
            let rest = &line[at + key.len()..];
            let value = if let Some(q) = rest.strip_prefix('"') {
                q.split('"').next().unwrap_or_default()
            } else {
                rest.split_whitespace().next().unwrap_or_default()
            };
            return Some(value.to_string());
        }
        search = at + key.len();
    }
    None
}

/// A running `bellhop` and the addresses it listens on.
pub struct Bellhop {
    /// The process.
    pub proc: Proc,
    /// Listening addresses from its log, in order.
    pub addrs: Vec<SocketAddr>,
}

impl Bellhop {
    /// Runs `bellhop ARGS…` and waits until it logged `listeners` listening addresses.
    pub async fn start(args: &[&str], listeners: usize) -> Bellhop {
        Bellhop::start_in(None, args, listeners).await
    }

    /// [`Bellhop::start`] in working directory `cwd`.
    pub async fn start_in(cwd: Option<&Path>, args: &[&str], listeners: usize) -> Bellhop {
        let mut cmd = Command::new(BELLHOP);
        cmd.args(args);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        Bellhop::start_command(cmd, &format!("bellhop {args:?}"), listeners).await
    }

    /// Runs `cmd` (a bellhop, perhaps through a shell or with its own
    /// environment) and waits until it logged `listeners` listening addresses.
    pub async fn start_command(cmd: Command, args: &str, listeners: usize) -> Bellhop {
        let mut proc = Proc::spawn("bellhop", cmd);
        let mut addrs = Vec::new();
        let lines = proc.lines.clone();
        let what = format!("{listeners} `listening addr=…` log line(s) from {args}");
        let start = Instant::now();
        while addrs.len() < listeners {
            addrs = lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| listening_addr(&strip_ansi(l)))
                .map(|a| {
                    // All interfaces: talk to it on 127.0.0.1.
                    if a.ip().is_unspecified() {
                        SocketAddr::from(([127, 0, 0, 1], a.port()))
                    } else {
                        a
                    }
                })
                .collect();
            if let Some(status) = proc.try_wait() {
                std::thread::sleep(millis(50)); // let the reader threads catch the last lines
                panic!(
                    "{args} exited ({status}) before {what}; output:\n{}",
                    proc.lines().join("\n")
                );
            }
            assert!(start.elapsed() < secs(30), "timed out waiting for {what}");
            tokio::time::sleep(millis(10)).await;
        }
        Bellhop { proc, addrs }
    }

    /// `bellhop run --config FILE` plus `extra` arguments.
    pub async fn run_config(file: &Path, extra: &[&str], listeners: usize) -> Bellhop {
        let file = file.to_str().expect("utf-8 path");
        let mut args = vec!["run", "--config", file];
        args.extend_from_slice(extra);
        Bellhop::start(&args, listeners).await
    }

    /// The one-shot `bellhop proxy --from http://127.0.0.1:0 --to UPSTREAM`.
    pub async fn proxy(to: &str, extra: &[&str]) -> Bellhop {
        let mut args = vec!["proxy", "--from", "http://127.0.0.1:0", "--to", to];
        args.extend_from_slice(extra);
        Bellhop::start(&args, 1).await
    }

    /// The first listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }
}

/// Runs `bellhop ARGS…` to completion (at most 30 s) and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: Option<&Path>) -> (i32, String, String) {
    run_cli_with(args, |cmd| {
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
    })
}

/// [`run_cli`] with the command adjusted first (its environment, say).
pub fn run_cli_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> (i32, String, String) {
    let mut cmd = Command::new(BELLHOP);
    cmd.args(args).stdin(Stdio::null());
    adjust(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bellhop");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > secs(30) {
            let _ = child.kill();
            panic!("bellhop {args:?} did not finish within 30 s");
        }
        std::thread::sleep(millis(10));
    }
    let out = child.wait_with_output().expect("output");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("bellhop {args:?} -> {code}\n--- stdout\n{stdout}--- stderr\n{stderr}");
    (code, stdout, stderr)
}

#[test]
fn log_line_parsers_read_text_json_and_ansi() {
    let text = "2026-01-01T00:00:00Z  INFO bellhop::server: listening addr=127.0.0.1:4242";
    assert_eq!(
        listening_addr(text),
        Some("127.0.0.1:4242".parse().unwrap())
    );
    let json = r#"{"level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:4243"}}"#;
    assert_eq!(
        listening_addr(json),
        Some("127.0.0.1:4243".parse().unwrap())
    );
    let ansi =
        "\u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:9";
    assert_eq!(
        listening_addr(&strip_ansi(ansi)),
        Some("127.0.0.1:9".parse().unwrap())
    );
    let req = r#"INFO request method=GET host="a.test:1" path=/x status=200 xstatus=1"#;
    assert_eq!(text_field(req, "status").as_deref(), Some("200"));
    assert_eq!(text_field(req, "host").as_deref(), Some("a.test:1"));
    assert_eq!(text_field(req, "nope"), None);
}
