//! `bellhop upgrade` (SIGUSR2): the binary on disk takes over the listening
//! sockets while the old process finishes what it has open, and a new binary
//! that cannot start leaves the old one serving.
//!
//! Always the real binary: the hand-over is between two processes. Which
//! process serves a connection is read from the kernel, not from bellhop: the
//! connection's socket inode (/proc/net/tcp) among each process's descriptors.

use std::ffi::OsStr;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::support::backends::ws::WsBackend;
use crate::support::backends::{full, handler, ChannelBody, HttpBackend};
use crate::support::binary::{listening_addr, run_cli, Bellhop, Proc, BELLHOP};
use crate::support::client::{empty, h1, req};
use crate::support::ws::{connect, next_data, read_until_end};
use crate::support::{bounded, secs, wait_for, TempDir};

/// The download the issue names: 1 GiB, streamed (neither end holds more than
/// a chunk), its SHA-256 compared at both ends (ring's digest is assembly
/// even in a debug build, so checking costs little next to the proxying).
const DOWNLOAD: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// Kills a process by id when dropped: the new bellhop is the old one's
/// child, not the test's, so no `Proc` owns it.
pub(crate) struct KillOnDrop(pub(crate) u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid this test learned from bellhop.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// A backend that streams [`DOWNLOAD`] bytes at `/big` (each 64 KiB chunk
/// numbered, so a lost or repeated chunk changes the checksum) and answers
/// `ok` elsewhere. The checksum of what it sent is stored once it is done.
async fn download_backend(sent: Arc<Mutex<Option<Vec<u8>>>>) -> HttpBackend {
    HttpBackend::tcp(handler(move |request, _| {
        let sent = sent.clone();
        async move {
            if request.uri().path() != "/big" {
                return Response::new(full("ok"));
            }
            let (tx, body) = ChannelBody::channel();
            tokio::spawn(async move {
                let pattern: Vec<u8> = (0..CHUNK).map(|i| (i * 7 % 251) as u8).collect();
                let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
                for n in 0..DOWNLOAD / CHUNK as u64 {
                    let mut chunk = BytesMut::from(&pattern[..]);
                    chunk[..8].copy_from_slice(&n.to_le_bytes());
                    hash.update(&chunk);
                    if tx.send(chunk.freeze()).await.is_err() {
                        return;
                    }
                }
                *sent.lock().unwrap() = Some(hash.finish().as_ref().to_vec());
            });
            Response::new(body)
        }
    }))
    .await
}

fn proxyfile(ws: SocketAddr, download: SocketAddr, extra_options: &str) -> String {
    format!(
        "options {{\n    workers 2\n{extra_options}}}\n\
         \"http://127.0.0.1:0\" {{\n    route \"/push\" {{ proxy \"{ws}\" }}\n    proxy \"{download}\"\n}}\n"
    )
}

/// `bellhop run --config FILE --pid-file PID` with `env`, once it listens.
/// Started as systemd does, with `WATCHDOG_PID` its own pid (the shell's
/// `exec` keeps it), so that `WATCHDOG_USEC` in `env` turns the watchdog on.
pub(crate) async fn start(file: &Path, pid_file: &Path, env: &[(&str, &OsStr)]) -> Bellhop {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" run --config "$1" --pid-file "$2""#)
        .arg(BELLHOP)
        .arg(file)
        .arg(pid_file);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let proc = Proc::spawn("bellhop", cmd);
    let line = proc
        .wait_line("listening", secs(30), |l| listening_addr(l).is_some())
        .await;
    let addr = listening_addr(&line).expect("address");
    wait_for("the pid file", secs(5), || pid_file.exists()).await;
    Bellhop {
        proc,
        addrs: vec![addr],
    }
}

/// `bellhop upgrade --pid-file PID`, off the runtime (it blocks while it waits).
pub(crate) async fn upgrade(pid_file: &Path) -> (i32, String, String) {
    let pid_file = pid_file.to_str().expect("utf-8 path").to_string();
    tokio::task::spawn_blocking(move || run_cli(&["upgrade", "--pid-file", &pid_file], None))
        .await
        .expect("upgrade command")
}

/// Opens a keep-alive connection, gets `ok` on it, and says which of `pids`
/// holds the server side of it.
async fn served_by(addr: SocketAddr, pids: &[u32]) -> Option<u32> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    while !answer.ends_with(b"ok") {
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let inode = server_socket_inode(addr.port(), stream.local_addr().expect("addr").port())?;
    let target = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&target)))
    })
}

/// The inode of the accepted socket `127.0.0.1:server` ⇄ `…:client`.
fn server_socket_inode(server: u16, client: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (port(local)? == server && port(remote)? == client)
            .then(|| inode.parse().ok())
            .flatten()
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

pub(crate) fn pid_in(pid_file: &Path) -> u32 {
    std::fs::read_to_string(pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// The parent of process `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:"))?;
    ppid.trim().parse().ok()
}

/// systemd's end of `NOTIFY_SOCKET`, with `NotifyAccess=main`: every message
/// is read with its sender's pid (`SO_PASSCRED`, as systemd does), so the
/// test can tell which of them systemd would have refused.
struct ServiceManager {
    socket: UnixDatagram,
    path: PathBuf,
}

/// One notification: who sent it, and its `KEY=value` lines.
#[derive(Debug, Clone)]
struct Notification {
    pid: u32,
    lines: Vec<String>,
}

impl Notification {
    fn field(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

impl ServiceManager {
    /// Also makes this test process what systemd is as PID 1: the parent
    /// of any process orphaned below it (a subreaper), so that `follow`
    /// can check that a new main PID is the manager's own child.
    fn bind(dir: &TempDir) -> ServiceManager {
        rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(1))
            .expect("PR_SET_CHILD_SUBREAPER");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("notify socket");
        rustix::net::sockopt::set_socket_passcred(&socket, true).expect("SO_PASSCRED");
        socket.set_read_timeout(Some(secs(30))).expect("timeout");
        ServiceManager { socket, path }
    }

    /// The next notification (blocking, at most 30 s: run off the runtime).
    fn next(&self) -> Notification {
        let mut data = vec![0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &self.socket,
            &mut [IoSliceMut::new(&mut data)],
            &mut control,
            rustix::net::RecvFlags::empty(),
        )
        .expect("a notification within 30 s");
        let pid = control
            .drain()
            .find_map(|m| match m {
                rustix::net::RecvAncillaryMessage::ScmCredentials(c) => {
                    Some(c.pid.as_raw_nonzero().get().unsigned_abs())
                }
                _ => None,
            })
            .expect("the sender's credentials");
        let text = String::from_utf8_lossy(&data[..received.bytes]).into_owned();
        eprintln!("notify from {pid}: {text:?}");
        Notification {
            pid,
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    /// Reads notifications until `done` says so, each one checked as systemd
    /// with `NotifyAccess=main` would: from the main PID at the time (which
    /// `MAINPID=` moves), else refused, which fails the test.
    async fn follow(
        self: &Arc<Self>,
        mut main: u32,
        done: impl Fn(&Notification) -> bool + Send + 'static,
    ) -> (Vec<Notification>, u32) {
        let manager = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            loop {
                let n = manager.next();
                assert_eq!(
                    n.pid, main,
                    "systemd would refuse {:?} from {} (main PID {main}); before: {seen:?}",
                    n.lines, n.pid
                );
                if let Some(pid) = n.field("MAINPID") {
                    main = pid.parse().expect("MAINPID is a pid");
                    // systemd marks a main PID that is not its child as
                    // alien and does not wait for it at stop: SIGTERM and
                    // SIGKILL at once.
                    assert_eq!(
                        parent_of(main),
                        Some(std::process::id()),
                        "MAINPID={main} is not the service manager's child"
                    );
                }
                seen.push(n.clone());
                if done(&n) {
                    return (seen, main);
                }
            }
        })
        .await
        .expect("notify reader")
    }
}

/// A WebSocket through `addr` with a push every 0.1 s, on a thread and
/// runtime of its own together with its backend, so that the download's
/// work in the test's runtime cannot delay a push: a gap is bellhop's.
/// The backend's address goes out on `backend`; bellhop's comes back on
/// `bellhop`; arrivals are recorded until `stop`, then the WebSocket closes;
/// `ticks` records a 20 ms pulse of the same thread.
fn pushes(
    backend: oneshot::Sender<SocketAddr>,
    bellhop: oneshot::Receiver<SocketAddr>,
    mut stop: oneshot::Receiver<()>,
    recorded: Arc<Mutex<Vec<Instant>>>,
    ticks: Arc<Mutex<Vec<Instant>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let ws_backend = WsBackend::start().await;
            backend.send(ws_backend.addr).expect("backend address");
            let addr = bellhop.await.expect("bellhop's address");
            let mut ws = connect(addr, "/push?ms=100").await;
            // This thread's own pulse: a gap in it is the machine starving
            // the test, not bellhop delaying a push.
            let mut pulse = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = pulse.tick() => ticks.lock().unwrap().push(Instant::now()),
                    message = next_data(&mut ws) => {
                        assert!(matches!(message, Some(Ok(_))), "the WebSocket ended: {message:?}");
                        recorded.lock().unwrap().push(Instant::now());
                    }
                }
            }
            // Closing it is the old process's last connection ending.
            let _ = ws.close(None).await;
            let _ = read_until_end(&mut ws).await;
        });
    })
}

/// The widest gap between consecutive arrivals, and where it began.
fn widest_gap(times: &[Instant]) -> Option<(Duration, Instant)> {
    times.windows(2).map(|w| (w[1] - w[0], w[0])).max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_keeps_a_websocket_and_a_download_and_hands_new_connections_over() {
    bounded(secs(120), "test", async {
        let sent = Arc::new(Mutex::new(None));
        let download = download_backend(sent.clone()).await;
        let dir = TempDir::new("upgrade");
        let pid_file = dir.path().join("bellhop.pid");
        let manager = Arc::new(ServiceManager::bind(&dir));

        // The WebSocket's backend lives on the pushes' own thread; bellhop
        // starts once its address is known, the WebSocket once bellhop is.
        let (backend_tx, backend_rx) = oneshot::channel();
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let (stop_ws, stop_rx) = oneshot::channel::<()>();
        let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let recorded = arrivals.clone();
        let ticks = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let pusher = pushes(backend_tx, addr_rx, stop_rx, recorded, ticks.clone());
        let ws_addr = backend_rx.await.expect("WebSocket backend");
        let file = dir.write("Proxyfile", &proxyfile(ws_addr, download.addr(), ""));
        // The watchdog at 2 s: a ping a second, from whichever is the main PID.
        let env = [
            ("NOTIFY_SOCKET", manager.path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("2000000")),
        ];
        let mut old = start(&file, &pid_file, &env).await;
        let addr = old.addr();
        let old_pid = old.proc.pid();
        let (started, _) = manager
            .follow(old_pid, |n| n.field("READY") == Some("1"))
            .await;
        assert!(started[0].field("READY").is_some(), "{started:?}");
        addr_tx.send(addr).expect("start the pushes");
        wait_for("the first pushes", secs(15), || {
            arrivals.lock().unwrap().len() >= 3
        })
        .await;
        assert_eq!(served_by(addr, &[old_pid]).await, Some(old_pid));

        // The download, held part-way until the upgrade is over.
        let (half, half_rx) = oneshot::channel::<()>();
        let (resume, resume_rx) = oneshot::channel::<()>();
        let downloader = tokio::spawn(async move {
            let mut sender = h1(addr, None).await;
            let request = req("GET", &addr.to_string(), "/big").body(empty()).unwrap();
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            let mut body = response.into_body();
            let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
            let mut received = 0u64;
            let (mut half, mut resume_rx) = (Some(half), Some(resume_rx));
            while let Some(frame) = body.frame().await {
                let data: Bytes = frame.expect("body frame").into_data().unwrap_or_default();
                hash.update(&data);
                received += data.len() as u64;
                if received >= DOWNLOAD / 16 {
                    if let (Some(half), Some(resume)) = (half.take(), resume_rx.take()) {
                        half.send(()).unwrap();
                        resume.await.unwrap();
                    }
                }
            }
            (received, hash.finish().as_ref().to_vec())
        });
        half_rx.await.expect("the download started");

        let upgrade_started = Instant::now();
        let (code, stdout, stderr) = upgrade(&pid_file).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let new_pid = pid_in(&pid_file);
        let _new = KillOnDrop(new_pid);
        assert_ne!(new_pid, old_pid);
        assert!(
            stdout.contains(&format!("bellhop {new_pid} serves")),
            "{stdout}"
        );
        // systemd hears MAINPID= from the old process, then READY=1 from the
        // new one; both say that the old one drains.
        let (handed, main) = manager
            .follow(old_pid, |n| n.field("READY") == Some("1"))
            .await;
        assert_eq!(main, new_pid, "{handed:?}");
        let mainpid = handed
            .iter()
            .position(|n| n.field("MAINPID").is_some())
            .expect("MAINPID= sent");
        let drains = format!("bellhop {old_pid} drains");
        assert!(
            handed[mainpid]
                .field("STATUS")
                .is_some_and(|s| s.contains(&drains)),
            "{handed:?}"
        );
        let ready = handed.last().expect("READY=1");
        assert_eq!(ready.pid, new_pid);
        assert!(
            ready.field("STATUS").is_some_and(
                |s| s.contains(&format!("bellhop {old_pid} (before the upgrade) drains"))
            ),
            "{ready:?}"
        );

        // New connections go to the new process only.
        for _ in 0..4 {
            assert_eq!(served_by(addr, &[old_pid, new_pid]).await, Some(new_pid));
        }
        let upgrade_over = Instant::now();
        // The old one still carries the download and the WebSocket.
        resume.send(()).unwrap();
        let (received, checksum) = downloader.await.expect("download");
        let download_done = Instant::now();
        assert_eq!(received, DOWNLOAD);
        assert_eq!(Some(checksum), *sent.lock().unwrap(), "SHA-256");
        assert!(
            old.proc.try_wait().is_none(),
            "the old process left with a WebSocket open"
        );

        stop_ws.send(()).unwrap();
        tokio::task::spawn_blocking(move || pusher.join())
            .await
            .expect("join")
            .expect("the pushes thread");
        let times = arrivals.lock().unwrap().clone();
        let ticks = ticks.lock().unwrap().clone();
        let starved = widest_gap(&ticks).map(|(pulse, since)| {
            (pulse, since.saturating_duration_since(upgrade_started))
        });
        eprintln!(
            "pushes: {}; upgrade took {:?}; 1 GiB done at +{:?} after SIGUSR2; widest gap {:?}; widest pause of the test thread {starved:?}",
            times.len(),
            upgrade_over - upgrade_started,
            download_done - upgrade_started,
            widest_gap(&times)
                .map(|(gap, at)| (gap, at.saturating_duration_since(upgrade_started)))
        );
        assert!(times.len() > 10, "{} pushes", times.len());
        let (gap, at) = widest_gap(&times).expect("pushes");
        assert!(
            gap < Duration::from_secs(1),
            "a gap of {gap:?} in the pushes, at +{:?} after SIGUSR2; the test thread's own widest pause: {starved:?}",
            at.saturating_duration_since(upgrade_started)
        );

        // Its last connection closed, the old process exits; the new serves
        // on, and its status no longer names the old one.
        let status = old.proc.wait_exit(secs(30)).await;
        assert!(status.success(), "{status}");
        let (after, _) = manager
            .follow(new_pid, |n| {
                n.field("STATUS").is_some_and(|s| !s.contains("drains"))
            })
            .await;
        assert_eq!(
            after.last().and_then(|n| n.field("STATUS")),
            Some("serving 1 site")
        );
        assert_eq!(served_by(addr, &[new_pid]).await, Some(new_pid));
        // The new process pings the watchdog, and `bellhop reload` (the pid
        // file and its reload status) reaches it: RELOADING=1, then READY=1.
        manager
            .follow(new_pid, |n| n.field("WATCHDOG").is_some())
            .await;
        let args = [
            "reload".to_string(),
            "--config".to_string(),
            path_str(&file).to_string(),
            "--pid-file".to_string(),
            path_str(&pid_file).to_string(),
        ];
        let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
            run_cli(&args.each_ref().map(String::as_str), None)
        })
        .await
        .expect("reload command");
        assert_eq!(code, 0, "{stdout}{stderr}");
        let (reloaded, _) = manager
            .follow(new_pid, |n| n.field("READY") == Some("1"))
            .await;
        assert!(
            reloaded.iter().any(|n| n.field("RELOADING") == Some("1")),
            "{reloaded:?}"
        );
    })
    .await;
}

/// The backends of the shorter tests: a WebSocket one and the download.
struct Backends {
    ws: WsBackend,
    download: HttpBackend,
}

impl Backends {
    async fn start() -> Backends {
        Backends {
            ws: WsBackend::start().await,
            download: download_backend(Arc::default()).await,
        }
    }

    fn proxyfile(&self, extra_options: &str) -> String {
        proxyfile(self.ws.addr, self.download.addr(), extra_options)
    }

    /// A directory with a Proxyfile in front of them: `(dir, Proxyfile, pid file)`.
    fn setup(&self, tag: &str, extra_options: &str) -> (TempDir, PathBuf, PathBuf) {
        let dir = TempDir::new(tag);
        let file = dir.write("Proxyfile", &self.proxyfile(extra_options));
        let pid_file = dir.path().join("bellhop.pid");
        (dir, file, pid_file)
    }
}

/// The upgrade's failing cases: the old process answers as before, the
/// command exits 1 and says why.
async fn assert_failed_upgrade(old: &Bellhop, pid_file: &Path, why: &str) {
    let (code, stdout, stderr) = upgrade(pid_file).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("the upgrade failed"), "{stderr}");
    assert!(stderr.contains(why), "{stderr}");
    assert_eq!(pid_in(pid_file), old.proc.pid());
    let pid = old.proc.pid();
    assert_eq!(served_by(old.addr(), &[pid]).await, Some(pid));
}

#[tokio::test]
async fn upgrade_to_a_config_that_does_not_load_leaves_the_old_process_serving() {
    bounded(secs(60), "test", async {
        let backends = Backends::start().await;
        let (dir, file, pid_file) = backends.setup("upgrade-bad-config", "");
        let good = backends.proxyfile("");
        let old = start(&file, &pid_file, &[]).await;

        dir.write("Proxyfile", &format!("{good}x.example {{ prxy 1 }}\n"));
        assert_failed_upgrade(&old, &pid_file, "unknown directive `prxy`").await;
        assert_failed_upgrade(&old, &pid_file, "exited with status 1").await;
    })
    .await;
}

#[tokio::test]
async fn upgrade_to_a_binary_that_fails_leaves_the_old_process_serving() {
    bounded(secs(60), "test", async {
        let backends = Backends::start().await;
        let (_dir, file, pid_file) = backends.setup("upgrade-bad-binary", "");
        // The binary, linked where the test may replace it (same file system
        // as the build, so a hard link and no 100 MB copy).
        let bin_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("upgrade-bin-{}", std::process::id()));
        std::fs::create_dir_all(&bin_dir).expect("bin dir");
        let exe = bin_dir.join("bellhop");
        let _ = std::fs::remove_file(&exe);
        std::fs::hard_link(BELLHOP, &exe).expect("hard link the binary");
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg("--config")
            .arg(&file)
            .arg("--pid-file")
            .arg(&pid_file);
        let proc = Proc::spawn("bellhop", cmd);
        let line = proc
            .wait_line("listening", secs(30), |l| listening_addr(l).is_some())
            .await;
        let old = Bellhop {
            proc,
            addrs: vec![listening_addr(&line).expect("address")],
        };
        wait_for("the pid file", secs(5), || pid_file.exists()).await;

        // A package upgrade renames a new file over the old path; this one
        // crashes at once.
        let replacement = bin_dir.join("bellhop.new");
        std::fs::write(&replacement, "#!/bin/sh\necho 'no such luck' >&2\nexit 3\n").unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&replacement, executable).unwrap();
        std::fs::rename(&replacement, &exe).unwrap();
        assert_failed_upgrade(&old, &pid_file, "exited with status 3 before it was ready").await;
        let _ = std::fs::remove_dir_all(&bin_dir);
    })
    .await;
}

/// A `drain-timeout` ends what outlives it: the old process closes its open
/// WebSocket and keep-alive connection once it passes, and exits.
#[tokio::test]
async fn drain_timeout_closes_what_is_left_and_the_old_process_exits() {
    bounded(secs(60), "test", async {
        let backends = Backends::start().await;
        let options = "    drain-timeout \"1s\"\n    grace-period \"2s\"\n";
        let (_dir, file, pid_file) = backends.setup("upgrade-drain-timeout", options);
        let mut old = start(&file, &pid_file, &[]).await;
        let addr = old.addr();
        let mut ws = connect(addr, "/push?ms=100").await;
        assert!(matches!(next_data(&mut ws).await, Some(Ok(_))));
        // An idle keep-alive connection, its response complete.
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        idle.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        while !answer.ends_with(b"ok") {
            let mut buf = [0u8; 1024];
            let n = idle.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed early");
            answer.extend_from_slice(&buf[..n]);
        }

        // Before the command: the drain starts within it, not after.
        let asked = Instant::now();
        let (code, stdout, stderr) = upgrade(&pid_file).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let new_pid = pid_in(&pid_file);
        let _new = KillOnDrop(new_pid);

        // Pushes go on until the timeout, then the WebSocket ends.
        let ended = bounded(secs(20), "the WebSocket to end", async {
            while let Some(Ok(_)) = next_data(&mut ws).await {}
            asked.elapsed()
        })
        .await;
        assert!(
            ended >= secs(1),
            "closed after {ended:?}, before drain-timeout"
        );
        // The idle connection is closed with no bytes of a new response.
        let mut rest = Vec::new();
        let n = bounded(
            secs(10),
            "the keep-alive connection to close",
            idle.read_to_end(&mut rest),
        )
        .await
        .expect("a clean close");
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&rest));
        let status = old.proc.wait_exit(secs(15)).await;
        assert!(status.success(), "{status}");
        assert!(
            old.proc
                .lines()
                .iter()
                .any(|l| l.contains("drain-timeout over")),
            "the log says why"
        );
        assert_eq!(served_by(addr, &[new_pid]).await, Some(new_pid));
    })
    .await;
}

/// An option that a reload cannot apply (the admin listener) is applied by
/// an upgrade: the new process binds the port the changed Proxyfile names.
#[tokio::test]
async fn upgrade_applies_an_option_that_needs_a_restart() {
    bounded(secs(60), "test", async {
        let backends = Backends::start().await;
        let (dir, file, pid_file) = backends.setup("upgrade-new-port", "");
        let old = start(&file, &pid_file, &[]).await;
        dir.write(
            "Proxyfile",
            &backends.proxyfile("    admin \"127.0.0.1:0\"\n"),
        );
        let (code, stdout, stderr) = upgrade(&pid_file).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
        let new_pid = pid_in(&pid_file);
        let _new = KillOnDrop(new_pid);
        // The new process logs to the output it inherited from the old one.
        let line = old
            .proc
            .wait_line("the new admin listener", secs(15), |l| {
                l.contains("admin listener")
            })
            .await;
        let admin: SocketAddr = crate::support::binary::text_field(&line, "addr")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line}"));
        let mut stream = TcpStream::connect(admin).await.expect("the admin port");
        let request = format!("GET /health HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(served_by(old.addr(), &[new_pid]).await, Some(new_pid));
    })
    .await;
}
