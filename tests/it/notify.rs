//! systemd `Type=notify`: the real binary, started with `NOTIFY_SOCKET` naming a
//! datagram socket the test owns, tells it READY=1 once its port answers,
//! RELOADING=1 (with MONOTONIC_USEC) then READY=1 around each SIGHUP reload
//! (a failed one too, saying so in STATUS), STOPPING=1 on SIGTERM, and, with
//! WATCHDOG_USEC set for its pid, WATCHDOG=1 pings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::support::backends::echo::Echo;
use crate::support::binary::{Bellhop, BELLHOP};
use crate::support::client::get;
use crate::support::{bounded, secs, TempDir};

/// The service manager's end: a datagram socket bellhop is told about.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &TempDir) -> NotifySocket {
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket { socket, path }
    }

    /// The next message, as its `KEY=value` lines.
    async fn next(&self, what: &str) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(secs(15), self.socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no notify message ({what}) within 15 s"))
            .expect("recv");
        let text = String::from_utf8(buf[..n].to_vec()).expect("utf-8 message");
        eprintln!("notify: {text:?}");
        text.lines().map(str::to_string).collect()
    }

    /// The next message that is not a watchdog ping.
    async fn next_state(&self, what: &str) -> Vec<String> {
        loop {
            let message = self.next(what).await;
            if message != ["WATCHDOG=1"] {
                return message;
            }
        }
    }
}

/// The value of `KEY=` in a message.
fn field<'m>(message: &'m [String], key: &str) -> Option<&'m str> {
    message
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// CLOCK_MONOTONIC now, in microseconds (what MONOTONIC_USEC is read from).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// A Proxyfile serving `sites`, state in `dir`.
fn proxyfile(dir: &Path, options: &str, sites: &str) -> String {
    format!(
        "options {{\n    state-dir \"{}\"\n{options}}}\n{sites}",
        dir.join("state").display()
    )
}

fn plain_site(upstream: SocketAddr, extra: &str) -> String {
    format!("\"http://127.0.0.1:0\" {{\n    proxy \"{upstream}\"\n{extra}}}\n")
}

/// `bellhop run` of a plain-HTTP site proxying to `upstream`, with
/// NOTIFY_SOCKET naming a socket the test owns and `env` set besides.
async fn plain_notified(
    tag: &str,
    upstream: SocketAddr,
    env: &[(&str, &str)],
) -> (TempDir, NotifySocket, Bellhop) {
    let dir = TempDir::new(tag);
    let notify = NotifySocket::bind(&dir);
    let file = dir.write(
        "Proxyfile",
        &proxyfile(dir.path(), "", &plain_site(upstream, "")),
    );
    let mut cmd = Command::new(BELLHOP);
    cmd.args(["run", "--config"])
        .arg(&file)
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .envs(env.iter().copied());
    let bellhop = Bellhop::start_command(cmd, &format!("bellhop run ({tag})"), 1).await;
    (dir, notify, bellhop)
}

/// Asserts a RELOADING=1 message carries the monotonic time of its sending.
fn assert_reloading(message: &[String], before: u64) {
    assert_eq!(field(message, "RELOADING"), Some("1"), "{message:?}");
    let usec: u64 = field(message, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"));
    assert!(
        (before..=monotonic_usec()).contains(&usec),
        "MONOTONIC_USEC {usec} is not between the SIGHUP and now"
    );
}

#[tokio::test]
async fn ready_reloading_and_stopping_arrive_in_order() {
    bounded(secs(60), "test", async {
        let a = Echo::start("a").await;
        let b = Echo::start("b").await;
        let (dir, notify, mut bellhop) = plain_notified("notify", a.addr(), &[]).await;

        let ready = notify.next("READY=1 at start").await;
        assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
        assert_eq!(field(&ready, "STATUS"), Some("serving 1 site"));
        // Ready means serving: the port answers at once.
        let host = bellhop.addr().to_string();
        assert_eq!(get(bellhop.addr(), &host, "/").await.status, 200);

        // A good reload: RELOADING=1 with the time, then READY=1.
        dir.write(
            "Proxyfile",
            &proxyfile(dir.path(), "", &plain_site(b.addr(), "")),
        );
        let before = monotonic_usec();
        bellhop.proc.signal(libc::SIGHUP);
        assert_reloading(&notify.next("RELOADING=1").await, before);
        let ready = notify.next("READY=1 after the reload").await;
        assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
        assert_eq!(field(&ready, "STATUS"), Some("serving 1 site"));

        // A bad Proxyfile: the reload fails, READY=1 still follows, and the
        // status says what happened.
        dir.write(
            "Proxyfile",
            &proxyfile(dir.path(), "", &plain_site(b.addr(), "    bogus 1\n")),
        );
        let before = monotonic_usec();
        bellhop.proc.signal(libc::SIGHUP);
        assert_reloading(&notify.next("RELOADING=1 (bad file)").await, before);
        let ready = notify.next("READY=1 after the failed reload").await;
        assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
        let status = field(&ready, "STATUS").unwrap_or_default();
        assert!(
            status.starts_with("reload failed") && status.ends_with("serving 1 site"),
            "{status}"
        );
        assert_eq!(get(bellhop.addr(), &host, "/").await.status, 200);

        bellhop.proc.signal(libc::SIGTERM);
        let stopping = notify.next("STOPPING=1").await;
        assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
        assert!(bellhop.proc.wait_exit(secs(15)).await.success());
    })
    .await
}

#[tokio::test]
async fn status_counts_certificates_and_the_watchdog_pings() {
    bounded(secs(60), "test", async {
        let dir = TempDir::new("notify-watchdog");
        let notify = NotifySocket::bind(&dir);
        let file = dir.write(
            "Proxyfile",
            &proxyfile(
                dir.path(),
                "    http-port 0\n    https-port 0\n",
                "localhost {\n    tls internal\n    respond \"tls\"\n}\n",
            ),
        );
        // As systemd does: WATCHDOG_PID is the service's own pid, which the
        // shell's exec keeps for bellhop.
        let interval = Duration::from_millis(600);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"WATCHDOG_PID=$$ exec "$0" run --config "$1""#)
            .arg(BELLHOP)
            .arg(&file)
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", interval.as_micros().to_string());
        let bellhop = Bellhop::start_command(cmd, "bellhop run (watchdog)", 1).await;

        let ready = notify.next_state("READY=1").await;
        assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
        let status = field(&ready, "STATUS").unwrap_or_default();
        assert!(
            status.starts_with("serving 1 site, 1 certificate, next renewal in "),
            "{status}"
        );

        // Pings at half the interval: several arrive within a few intervals.
        let mut pings = 0;
        let started = std::time::Instant::now();
        while pings < 4 {
            if notify.next("WATCHDOG=1").await == ["WATCHDOG=1"] {
                pings += 1;
            }
        }
        assert!(
            started.elapsed() < interval * 8,
            "4 pings took {:?} with a {interval:?} watchdog",
            started.elapsed()
        );
        drop(bellhop);
    })
    .await
}

#[tokio::test]
async fn no_watchdog_pings_when_the_watchdog_is_meant_for_another_process() {
    bounded(secs(30), "test", async {
        let a = Echo::start("a").await;
        // Pid 1 is never a test's child.
        let watchdog = [("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")];
        let (_dir, notify, mut bellhop) =
            plain_notified("notify-other-pid", a.addr(), &watchdog).await;
        let ready = notify.next("READY=1").await;
        assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
        // Absence can only be watched for a while: five intervals would have
        // brought ten pings.
        let mut buf = [0u8; 512];
        let quiet =
            tokio::time::timeout(Duration::from_secs(1), notify.socket.recv(&mut buf)).await;
        assert!(
            quiet.is_err(),
            "a message arrived: {:?}",
            quiet.map(|n| n.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()))
        );
        let host = bellhop.addr().to_string();
        assert_eq!(get(bellhop.addr(), &host, "/").await.status, 200);
        bellhop.proc.signal(libc::SIGTERM);
        let next = notify.next("STOPPING=1").await;
        assert_eq!(field(&next, "STOPPING"), Some("1"), "{next:?}");
        assert!(bellhop.proc.wait_exit(secs(15)).await.success());
    })
    .await
}
