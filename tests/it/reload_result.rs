//! `bellhop reload` tells the truth: it waits for the running process to
//! apply the file and exits non-zero with the reason when it could not (a port
//! in use, a missing certificate file), while the running config keeps
//! serving; SIGHUP keeps logging it.

use std::path::{Path, PathBuf};

use crate::support::binary::{run_cli_with, Bellhop};
use crate::support::client::get;
use crate::support::ports::Port;
use crate::support::{bounded, secs, wait_for, TempDir};

/// A bellhop started with `--pid-file` on `proxyfile` (written to `dir`),
/// and the `bellhop reload` arguments that reach it.
async fn running(dir: &TempDir, proxyfile: &str, listeners: usize) -> (Bellhop, Vec<String>) {
    let file = dir.write("Proxyfile", proxyfile);
    let pid_file: PathBuf = dir.path().join("bellhop.pid");
    let pid_arg = pid_file.to_str().expect("utf-8 path").to_string();
    let bellhop = Bellhop::run_config(&file, &["--pid-file", &pid_arg], listeners).await;
    wait_for("the pid file", secs(5), || pid_file.exists()).await;
    let file_arg = file.to_str().expect("utf-8 path").to_string();
    let args = ["reload", "--config", &file_arg, "--pid-file", &pid_arg];
    (bellhop, args.iter().map(|s| s.to_string()).collect())
}

/// Runs `bellhop reload` with a `PATH` that holds no programs: systemd runs
/// `ExecReload` with a bare environment, and a minimal Debian has no `kill`
/// binary, so the command must signal by itself.
fn reload(args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let empty = TempDir::new("reload-path");
    run_cli_with(&args, |cmd| {
        cmd.env("PATH", empty.path());
    })
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

#[tokio::test]
async fn reload_to_a_port_in_use_fails_with_the_reason() {
    bounded(secs(60), "test", async {
        let dir = TempDir::new("reload-busy");
        let site = "\"http://127.0.0.1:0\" { respond \"old\" }\n";
        let (bellhop, args) = running(&dir, site, 1).await;
        let busy = Port::reserve();
        let _holder =
            std::net::TcpListener::bind(("127.0.0.1", busy.number())).expect("hold the port");
        dir.write(
            "Proxyfile",
            &format!(
                "{site}\"http://127.0.0.1:{}\" {{ respond \"new\" }}\n",
                busy.number()
            ),
        );
        let (code, stdout, stderr) = reload(&args);
        assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on 127.0.0.1:{}", busy.number()))
                && stderr.contains("in use"),
            "{stderr}"
        );
        assert!(
            stderr.contains("previous config is still serving"),
            "{stderr}"
        );
        // And the process logged it, as a SIGHUP reload always did.
        bellhop
            .proc
            .wait_line("the failed reload", secs(10), |l| {
                l.contains("reload failed")
            })
            .await;
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/").await;
        assert_eq!(r.text(), "old");

        // Once the file can be applied, the same command succeeds.
        dir.write("Proxyfile", "\"http://127.0.0.1:0\" { respond \"new\" }\n");
        let (code, stdout, stderr) = reload(&args);
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
        assert!(stdout.contains("applied"), "{stdout}");
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/").await;
        assert_eq!(r.text(), "new");
    })
    .await
}

#[tokio::test]
async fn reload_to_a_missing_certificate_file_fails_with_the_reason() {
    bounded(secs(60), "test", async {
        let dir = TempDir::new("reload-cert");
        let (https, http) = (Port::reserve(), Port::reserve());
        let state = dir.path().join("state");
        let proxyfile = |tls: &str| {
            format!(
                "options {{\n    state-dir {}\n    http-port {}\n}}\n\"https://127.0.0.1:{}\" {{\n    tls {tls}\n    respond \"s\"\n}}\n",
                quoted(&state),
                http.number(),
                https.number()
            )
        };
        let (bellhop, args) = running(&dir, &proxyfile("internal"), 2).await;
        let missing = dir.path().join("missing.pem");
        let key = dir.path().join("missing.key");
        dir.write(
            "Proxyfile",
            &proxyfile(&format!("{} {}", quoted(&missing), quoted(&key))),
        );
        let (code, stdout, stderr) = reload(&args);
        assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
        assert!(stderr.contains("missing.pem"), "{stderr}");
        assert!(stderr.contains("certificate"), "{stderr}");
        drop(bellhop);
    })
    .await
}
