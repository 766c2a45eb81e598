//! The WebSocket client of the benchmarks: opens many WebSockets to a URL (`ws://`
//! or `wss://`, through any proxy or straight to `bench-backend`) and measures one
//! of two things, printing `key=value` lines a script can read.
//!
//! - `memory URL --pids P,Q --counts 1000,10000`: the summed VmRSS of the processes
//!   P, Q (a proxy's master and workers) idle, then with each count of idle open
//!   WebSockets (settled for a moment: allocators return memory lazily), then after
//!   they are all closed. Lines: `rss_kib open=N kib=K`.
//! - `push URL --count N --secs S`: opens N WebSockets to the backend's `/push`
//!   endpoint, then for S seconds records every push each socket receives. Prints
//!   the share of (socket, push) pairs delivered, how many pushes reached all N
//!   sockets, and the p50/p99 delay from the backend's write to this client's read.
//!   With `PER_TICK=1` in the environment it also writes each push's own delay
//!   percentiles to stderr: a push the load CPU held up as a whole shows as one
//!   tick whose p50 is tens of milliseconds.
//!
//! `--cafile PEM` trusts that certificate for `wss://` (the benchmark's own CA).
//! `cargo run --release --example ws-load -- memory ws://127.0.0.1:8080/ --pids 123`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Handshakes in flight while opening sockets: enough to keep a proxy busy,
/// few enough not to overflow its accept backlog.
const OPENERS: usize = 32;

/// One client socket, plain or TLS, behind one type.
type Socket = WebSocketStream<Box<dyn Stream>>;
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// Where and how to connect, parsed once from the command line.
#[derive(Clone)]
struct Target {
    url: String,
    addr: String,
    host: String,
    tls: Option<TlsConnector>,
}

impl Target {
    fn new(url: &str, cafile: Option<&str>) -> Result<Self> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            bail!("{url}: expected ws:// or wss://");
        };
        let addr = rest.split('/').next().unwrap_or(rest).to_string();
        let host = addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(h, _)| h)
            .to_string();
        let tls = if tls {
            let mut roots = rustls::RootCertStore::empty();
            let cafile = cafile.context("wss:// needs --cafile")?;
            for cert in CertificateDer::pem_file_iter(cafile).context("reading --cafile")? {
                roots.add(cert.context("parsing --cafile")?)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            url: url.to_string(),
            addr,
            host,
            tls,
        })
    }

    async fn open(&self) -> Result<Socket> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connect {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(self.host.clone())?;
                Box::new(tls.connect(name, tcp).await.context("TLS handshake")?)
            }
            None => Box::new(tcp),
        };
        // tungstenite's default buffers are 128 KiB each way per socket: 1.3 GB
        // at 10,000, and the page faults were most of this client's CPU.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(self.url.as_str(), stream, Some(config))
                .await
                .with_context(|| format!("WebSocket handshake with {}", self.url))?;
        Ok(ws)
    }

    /// Opens `count` sockets, `OPENERS` handshakes at a time.
    async fn open_many(&self, count: usize) -> Result<Vec<Socket>> {
        let mut set = JoinSet::new();
        for i in 0..OPENERS {
            let target = self.clone();
            let share = count / OPENERS + usize::from(i < count % OPENERS);
            set.spawn(async move {
                let mut mine = Vec::with_capacity(share);
                for _ in 0..share {
                    mine.push(target.open().await?);
                }
                anyhow::Ok(mine)
            });
        }
        let mut all = Vec::with_capacity(count);
        while let Some(done) = set.join_next().await {
            all.extend(done??);
        }
        Ok(all)
    }
}

fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum()
}

/// Waits for the allocator to settle, then reads RSS.
async fn settled_rss(pids: &[u32]) -> u64 {
    tokio::time::sleep(Duration::from_millis(1000)).await;
    rss_kib(pids)
}

async fn memory(target: Target, pids: Vec<u32>, counts: Vec<usize>) -> Result<()> {
    println!("rss_kib open=0 kib={}", settled_rss(&pids).await);
    let mut sockets = Vec::new();
    for count in counts {
        let more = count.saturating_sub(sockets.len());
        sockets.extend(target.open_many(more).await?);
        println!(
            "rss_kib open={} kib={}",
            sockets.len(),
            settled_rss(&pids).await
        );
    }
    let opened = sockets.len();
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
    println!("closed={opened} kib={}", settled_rss(&pids).await);
    Ok(())
}

/// The `p` quantile of sorted delays in ns, in ms.
fn percentile_ms(sorted: &[u128], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1e6
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Pushes one socket received before `until`: (tick, tick time, delay in ns).
async fn receive_pushes(mut ws: Socket, until: tokio::time::Instant) -> Vec<(u64, u128, u128)> {
    let mut got = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, ws.next()).await {
        let now = unix_ns();
        let Ok(text) = msg.to_text() else { continue };
        let mut fields = text.split(' ').map(|f| f.parse::<u128>().ok());
        if let (Some(Some(tick)), Some(Some(at)), Some(Some(sent))) =
            (fields.next(), fields.next(), fields.next())
        {
            got.push((tick as u64, at, now.saturating_sub(sent)));
        }
    }
    got
}

async fn push(target: Target, count: usize, secs: f64) -> Result<()> {
    let sockets = target.open_many(count).await?;
    // Pushes whose ticker fired inside [start, end) are the ones measured; one more
    // second lets the last of them arrive (late ones count, with their delay).
    let start = unix_ns();
    let end = start + (secs * 1e9) as u128;
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(secs + 1.0);
    let mut set = JoinSet::new();
    for ws in sockets {
        set.spawn(receive_pushes(ws, until));
    }
    // Each push's delays, by its tick number.
    let mut per_tick: HashMap<u64, Vec<u128>> = HashMap::new();
    // When each tick fired (Unix ns), to line PER_TICK's lines up with traces.
    let mut fired: HashMap<u64, u128> = HashMap::new();
    while let Some(got) = set.join_next().await {
        for (tick, at, delay) in got? {
            if at >= start && at < end {
                per_tick.entry(tick).or_default().push(delay);
                fired.insert(tick, at);
            }
        }
    }
    let (Some(first), Some(last)) = (per_tick.keys().min(), per_tick.keys().max()) else {
        bail!("no push arrived in {secs} s");
    };
    let ticks = (last - first + 1) as usize;
    let complete = per_tick.values().filter(|d| d.len() == count).count();
    let mut by_tick: Vec<_> = per_tick.into_iter().collect();
    by_tick.sort_unstable();
    let mut delays = Vec::new();
    for (tick, mut own) in by_tick {
        if std::env::var_os("PER_TICK").is_some() {
            own.sort_unstable();
            let q = |p| percentile_ms(&own, p);
            eprintln!(
                "tick {tick}: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} fired_unix_ns {}",
                q(0.5),
                q(0.9),
                q(0.99),
                q(1.0),
                fired.get(&tick).copied().unwrap_or(0)
            );
        }
        delays.extend(own);
    }
    delays.sort_unstable();
    println!(
        "push sockets={count} ticks={ticks} delivered_share={:.4} complete_ticks={complete} p50_ms={:.2} p99_ms={:.2}",
        delays.len() as f64 / (ticks * count) as f64,
        percentile_ms(&delays, 0.50),
        percentile_ms(&delays, 0.99)
    );
    Ok(())
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn usage() -> anyhow::Error {
    anyhow::anyhow!(
        "usage: ws-load memory URL --pids P[,Q..] --counts N[,M..] [--cafile PEM]\n       ws-load push URL --count N --secs S [--cafile PEM]"
    )
}

// One thread: bench/run.sh pins this client to one CPU (with the backend),
// where a second worker thread only adds hand-offs between the two.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(url)) = (args.first(), args.get(1)) else {
        return Err(usage());
    };
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let list = |name: &str| -> Result<Vec<usize>> {
        let value = flag(name).ok_or_else(usage)?;
        value
            .split(',')
            .map(|v| v.parse().with_context(|| format!("{name} {value}")))
            .collect()
    };
    let target = Target::new(url, flag("--cafile"))?;
    match mode.as_str() {
        "memory" => {
            let pids = list("--pids")?.into_iter().map(|p| p as u32).collect();
            memory(target, pids, list("--counts")?).await
        }
        "push" => {
            let count = list("--count")?.first().copied().ok_or_else(usage)?;
            let secs: f64 = flag("--secs")
                .ok_or_else(usage)?
                .parse()
                .context("--secs")?;
            push(target, count, secs).await
        }
        _ => Err(usage()),
    }
}
