//! `bellhop upgrade` (SIGUSR2): the binary on disk takes over the listening
//! sockets while the old process finishes what it has open, and a new binary
//! that cannot start leaves the old one serving.
//!
//! Always the real binary: the hand-over is between two processes. Which
//! process serves a connection is read from the kernel, not from bellhop: the
//! connection's socket inode (/proc/net/tcp) among each process's descriptors.

use std::hash::Hasher;
use std::net::SocketAddr;
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
use crate::support::ws::{connect, next_data};
use crate::support::{bounded, secs, wait_for, TempDir};

/// The download: 1 GiB passes through a debug build on loopback in a few
/// seconds here (it is read at the client's pace; the upgrade happens while
/// the client holds it part-way).
const DOWNLOAD: u64 = 256 << 20;
const CHUNK: usize = 64 * 1024;

/// Kills a process by id when dropped: the new bellhop is the old one's
/// child, not the test's, so no `Proc` owns it.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid this test learned from bellhop.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// A backend that streams [`DOWNLOAD`] bytes at `/big` (each 64 KiB chunk
/// numbered, so a lost or repeated chunk changes the checksum) and answers
/// `ok` elsewhere. The checksum of what it sent is stored once it is done.
async fn download_backend(sent: Arc<Mutex<Option<u64>>>) -> HttpBackend {
    HttpBackend::tcp(handler(move |request, _| {
        let sent = sent.clone();
        async move {
            if request.uri().path() != "/big" {
                return Response::new(full("ok"));
            }
            let (tx, body) = ChannelBody::channel();
            tokio::spawn(async move {
                let pattern: Vec<u8> = (0..CHUNK).map(|i| (i * 7 % 251) as u8).collect();
                let mut hash = std::hash::DefaultHasher::new();
                for n in 0..DOWNLOAD / CHUNK as u64 {
                    let mut chunk = BytesMut::from(&pattern[..]);
                    chunk[..8].copy_from_slice(&n.to_le_bytes());
                    hash.write(&chunk);
                    if tx.send(chunk.freeze()).await.is_err() {
                        return;
                    }
                }
                *sent.lock().unwrap() = Some(hash.finish());
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
async fn start(file: &Path, pid_file: &Path, env: &[(&str, &Path)]) -> Bellhop {
    let mut cmd = Command::new(BELLHOP);
    cmd.arg("run").arg("--config").arg(file);
    cmd.arg("--pid-file").arg(pid_file);
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
async fn upgrade(pid_file: &Path) -> (i32, String, String) {
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

fn pid_in(pid_file: &Path) -> u32 {
    std::fs::read_to_string(pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_keeps_a_websocket_and_a_download_and_hands_new_connections_over() {
    bounded(secs(120), "test", async {
        let ws_backend = WsBackend::start().await;
        let sent = Arc::new(Mutex::new(None));
        let download = download_backend(sent.clone()).await;
        let dir = TempDir::new("upgrade");
        let file = dir.write(
            "Proxyfile",
            &proxyfile(ws_backend.addr, download.addr(), ""),
        );
        let pid_file = dir.path().join("bellhop.pid");
        // systemd's notification socket, played by the test: the old process
        // must pass the main PID on.
        let notify_path = dir.path().join("notify");
        let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
        let mut old = start(&file, &pid_file, &[("NOTIFY_SOCKET", &notify_path)]).await;
        let addr = old.addr();
        let old_pid = old.proc.pid();
        assert_eq!(served_by(addr, &[old_pid]).await, Some(old_pid));

        // A WebSocket with a push every 0.1 s, its arrival times recorded.
        let mut ws = connect(addr, "/push?ms=100").await;
        let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let (stop_ws, mut stop_rx) = oneshot::channel::<()>();
        let recorded = arrivals.clone();
        let reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return ws,
                    message = next_data(&mut ws) => {
                        assert!(matches!(message, Some(Ok(_))), "the WebSocket ended: {message:?}");
                        recorded.lock().unwrap().push(Instant::now());
                    }
                }
            }
        });

        // The download, held part-way until the upgrade is over.
        let (half, half_rx) = oneshot::channel::<()>();
        let (resume, resume_rx) = oneshot::channel::<()>();
        let downloader = tokio::spawn(async move {
            let mut sender = h1(addr, None).await;
            let request = req("GET", &addr.to_string(), "/big").body(empty()).unwrap();
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            let mut body = response.into_body();
            let (mut hash, mut received) = (std::hash::DefaultHasher::new(), 0u64);
            let (mut half, mut resume_rx) = (Some(half), Some(resume_rx));
            while let Some(frame) = body.frame().await {
                let data: Bytes = frame.expect("body frame").into_data().unwrap_or_default();
                hash.write(&data);
                received += data.len() as u64;
                if received >= DOWNLOAD / 16 {
                    if let (Some(half), Some(resume)) = (half.take(), resume_rx.take()) {
                        half.send(()).unwrap();
                        resume.await.unwrap();
                    }
                }
            }
            (received, hash.finish())
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
        let mut message = [0u8; 64];
        let n = notify.recv(&mut message).expect("a notification");
        assert_eq!(&message[..n], format!("MAINPID={new_pid}\n").as_bytes());

        // New connections go to the new process only.
        for _ in 0..4 {
            assert_eq!(served_by(addr, &[old_pid, new_pid]).await, Some(new_pid));
        }
        let upgrade_over = Instant::now();
        // The old one still carries the download and the WebSocket.
        resume.send(()).unwrap();
        let (received, checksum) = downloader.await.expect("download");
        assert_eq!(received, DOWNLOAD);
        assert_eq!(Some(checksum), *sent.lock().unwrap(), "checksum");
        assert!(
            old.proc.try_wait().is_none(),
            "the old process left with a WebSocket open"
        );

        stop_ws.send(()).unwrap();
        let ws = reader.await.expect("WebSocket reader");
        let times = arrivals.lock().unwrap().clone();
        let download_done = Instant::now();
        assert!(times.len() > 10, "{} pushes", times.len());
        // The gap is measured from before SIGUSR2 until the new process
        // serves new connections, while the download is open part-way.
        let around_upgrade: Vec<Instant> = times
            .iter()
            .copied()
            .filter(|t| *t + secs(1) >= upgrade_started && *t <= upgrade_over + secs(1))
            .collect();
        let gaps = |times: &[Instant]| {
            times
                .windows(2)
                .map(|w| (w[1] - w[0], w[0]))
                .max()
                .unwrap_or((Duration::ZERO, upgrade_started))
        };
        let (gap, at) = gaps(&around_upgrade);
        let (widest, widest_at) = gaps(&times);
        eprintln!(
            "pushes: {} in all; upgrade took {:?}; widest gap {widest:?} at +{:?} after SIGUSR2 (download done at +{:?})",
            times.len(),
            upgrade_over - upgrade_started,
            widest_at.saturating_duration_since(upgrade_started),
            download_done - upgrade_started
        );
        assert!(
            gap < Duration::from_secs(1),
            "a gap of {gap:?} in the pushes, at +{:?} after SIGUSR2",
            at.saturating_duration_since(upgrade_started)
        );

        // Its last connection closed, the old process exits; the new serves on.
        drop(ws);
        let status = old.proc.wait_exit(secs(30)).await;
        assert!(status.success(), "{status}");
        assert_eq!(served_by(addr, &[new_pid]).await, Some(new_pid));
    })
    .await;
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
        let ws_backend = WsBackend::start().await;
        let download = download_backend(Arc::default()).await;
        let dir = TempDir::new("upgrade-bad-config");
        let good = proxyfile(ws_backend.addr, download.addr(), "");
        let file = dir.write("Proxyfile", &good);
        let pid_file = dir.path().join("bellhop.pid");
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
        let ws_backend = WsBackend::start().await;
        let download = download_backend(Arc::default()).await;
        let dir = TempDir::new("upgrade-bad-binary");
        let file = dir.write(
            "Proxyfile",
            &proxyfile(ws_backend.addr, download.addr(), ""),
        );
        let pid_file = dir.path().join("bellhop.pid");
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
