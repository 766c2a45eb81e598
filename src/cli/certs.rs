//! `bellhop certs [--config PATH] [--json]`: the certificate table.
//!
//! While bellhop runs, the running process knows best (what it serves, when
//! its tasks will renew, the ARI window it was given), so the table comes
//! from the admin listener's `GET /certs` when the config has `admin`. When
//! nothing answers there (bellhop is stopped) or the config has no admin
//! listener, it is read from the state directory: stored certificates and
//! failure records. Either way the output says which it used.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bellhop::config::Config;
use bellhop::{table_from_state, CertRow, CertTable};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// How long the admin listener may take to connect and answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the table came from.
enum Origin {
    /// The running bellhop's admin listener.
    Admin(SocketAddr),
    /// The state directory, and why not the admin listener.
    StateDir { why: String },
}

/// Prints the table of the bellhop that runs (or would run) `config`.
pub(crate) fn run(path: &Path, config: &Config, json: bool) -> anyhow::Result<()> {
    let (table, origin) = match config.options.admin {
        Some(addr) if addr.port() != 0 => match ask_admin(addr) {
            Ok(table) => (table, Origin::Admin(addr)),
            Err(e) => (
                from_state(config)?,
                Origin::StateDir {
                    why: format!("no answer from the admin listener {addr} ({e:#})"),
                },
            ),
        },
        Some(_) => (
            from_state(config)?,
            Origin::StateDir {
                why: "the admin listener's port is 0 (ephemeral), so it cannot be asked".into(),
            },
        ),
        None => (
            from_state(config)?,
            Origin::StateDir {
                why: format!("{} has no `admin` option", path.display()),
            },
        ),
    };
    let state_dir = config.options.state_dir.display().to_string();
    let text = if json {
        let output = match &origin {
            Origin::Admin(addr) => JsonOutput {
                from: "admin",
                admin: Some(addr.to_string()),
                state_dir: None,
                reason: None,
                table: &table,
            },
            Origin::StateDir { why } => JsonOutput {
                from: "state-dir",
                admin: None,
                state_dir: Some(&state_dir),
                reason: Some(why),
                table: &table,
            },
        };
        serde_json::to_string_pretty(&output).context("cannot encode the table")? + "\n"
    } else {
        let from = match &origin {
            Origin::Admin(addr) => format!("from the running bellhop (admin listener {addr}):\n"),
            Origin::StateDir { why } => format!("from the state directory {state_dir}; {why}:\n"),
        };
        from + &render(&table)
    };
    print_all(&text)
}

/// What `--json` prints: the table of `GET /certs` with where it came from.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    /// `admin` or `state-dir`.
    from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_dir: Option<&'a str>,
    /// Why the state directory was read rather than the admin listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(flatten)]
    table: &'a CertTable,
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn print_all(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

fn from_state(config: &Config) -> anyhow::Result<CertTable> {
    table_from_state(config).with_context(|| {
        format!(
            "cannot read the state directory {} (run as the user bellhop runs as)",
            config.options.state_dir.display()
        )
    })
}

/// `GET /certs` from the admin listener at `addr`.
fn ask_admin(addr: SocketAddr) -> anyhow::Result<CertTable> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let body = runtime.block_on(async {
        tokio::time::timeout(ADMIN_TIMEOUT, get_certs(addr))
            .await
            .unwrap_or_else(|_| bail!("no answer within {ADMIN_TIMEOUT:?}"))
    })?;
    serde_json::from_slice(&body).context("the admin listener's /certs is not a certificate table")
}

async fn get_certs(addr: SocketAddr) -> anyhow::Result<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let request = http::Request::get("/certs")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "GET /certs answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}

/// The table as text: one line per name, then indented lines for the ARI
/// window, the last error (verbatim) and notes.
fn render(table: &CertTable) -> String {
    if table.certificates.is_empty() {
        return "no certificates: no site is served over HTTPS\n".into();
    }
    let header = ["NAME", "SOURCE", "NOT AFTER", "NEXT RENEWAL", "ISSUER"];
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let cells: Vec<[String; 5]> = table
        .certificates
        .iter()
        .map(|row| {
            [
                row.name.clone(),
                row.source.as_str().to_string(),
                dash(&row.not_after),
                dash(&row.next_renewal),
                dash(&row.issuer),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(&header.map(String::from));
    for (row, cells) in table.certificates.iter().zip(&cells) {
        out.push_str(&line(cells));
        out.push_str(&details(row));
    }
    out
}

/// The indented lines under a row.
fn details(row: &CertRow) -> String {
    let mut out = String::new();
    if let Some(window) = &row.ari_window {
        out.push_str(&format!(
            "    ARI window: {} to {}\n",
            window.start, window.end
        ));
    }
    if let Some(error) = &row.last_error {
        let at = error.at.as_deref().unwrap_or("at an unknown time");
        let failures = match row.failures {
            0 | 1 => String::new(),
            n => format!(", {n} failures in a row"),
        };
        out.push_str(&format!(
            "    last error ({at}{failures}): {}\n",
            error.message
        ));
    }
    if let Some(note) = &row.note {
        out.push_str(&format!("    note: {note}\n"));
    }
    out
}
