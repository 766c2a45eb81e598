//! Bodies stream both ways without being buffered whole: SSE events arrive as the
//! backend writes them, and 1 GiB up or down leaves bellhop's RSS flat (measured on
//! the spawned binary through /proc/PID/status while the transfer runs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt;

use crate::support::backends::echo::Echo;
use crate::support::backends::sse::Sse;
use crate::support::binary::{rss_kib_of, Bellhop, Proc};
use crate::support::client::{empty, h1, req};
use crate::support::config::{site, tcp, ConfigBuilder};
use crate::support::pattern::{PatternBody, Verifier};
use crate::support::server::TestServer;
use crate::support::{bounded, millis, secs, TempDir};

const GIB: u64 = 1 << 30;
/// How much bellhop's RSS may grow over its warmed-up baseline while 1 GiB passes.
const RSS_GROWTH_LIMIT_KIB: u64 = 32 * 1024;

#[tokio::test]
async fn sse_first_event_arrives_before_the_backend_sends_the_second() {
    bounded(secs(30), "test", async {
        let sse = Sse::start().await;
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").proxy(tcp(sse.http.addr())))
                .build(),
        )
        .await;
        let mut c = h1(server.addr(), None).await;
        let resp = c
            .send_request(
                req("GET", &server.addr().to_string(), "/events")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("text/event-stream")
        );
        let mut body = resp.into_body();
        let mut got = String::new();
        read_until(&mut body, &mut got, "data: first").await;
        assert!(sse.first_sent());
        assert!(
            !sse.second_sent(),
            "the backend has not been allowed to send the second event yet"
        );
        sse.release_second();
        read_until(&mut body, &mut got, "data: second").await;
        assert_eq!(
            got,
            format!(
                "{}{}",
                crate::support::backends::sse::FIRST,
                crate::support::backends::sse::SECOND
            )
        );
        // The backend ended the stream: so does the client's body.
        let end = bounded(secs(5), "end of stream", body.frame()).await;
        assert!(end.is_none(), "expected end of body, got {end:?}");
    })
    .await
}

/// The same with a real client: `curl -N` through the bellhop binary prints the
/// first event while the backend is still holding back the second.
#[tokio::test]
async fn sse_through_the_binary_reaches_curl_event_by_event() {
    bounded(secs(30), "test", async {
        let sse = Sse::start().await;
        let bellhop = Bellhop::proxy(&sse.http.addr().to_string(), &[]).await;
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "-N", "--max-time", "20"])
            .arg(format!("http://{}/events", bellhop.addr()));
        let curl = Proc::spawn("curl", cmd);
        curl.wait_line("curl to print the first event", secs(10), |l| {
            l == "data: first"
        })
        .await;
        assert!(!sse.second_sent());
        sse.release_second();
        curl.wait_line("curl to print the second event", secs(10), |l| {
            l == "data: second"
        })
        .await;
    })
    .await
}

/// Reads body frames into `got` until it contains `want` (at most 5 s).
async fn read_until(body: &mut hyper::body::Incoming, got: &mut String, want: &str) {
    bounded(secs(5), want, async {
        while !got.contains(want) {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        got.push_str(&String::from_utf8_lossy(&d));
                    }
                }
                other => panic!("stream ended before {want:?}: {other:?}, got {got:?}"),
            }
        }
    })
    .await
}

/// Samples a process's RSS every 50 ms until stopped; reports the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::SeqCst) {
                if let Some(rss) = rss_kib_of(pid) {
                    p.fetch_max(rss, Ordering::SeqCst);
                }
                tokio::time::sleep(millis(50)).await;
            }
        });
        RssSampler { stop, peak, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.peak.load(Ordering::SeqCst)
    }
}

/// bellhop (binary, `max-body` raised above the 1 GiB upload) in front of an
/// echo backend, warmed up with an 8 MiB transfer each way; returns it with
/// its baseline RSS in KiB.
async fn warmed_up() -> (Echo, Bellhop, u64) {
    let echo = Echo::start("big").await;
    let dir = TempDir::new("big-upload");
    let file = dir.write(
        "Proxyfile",
        &format!(
            "\"http://127.0.0.1:0\" {{\n    max-body \"2GiB\"\n    proxy \"{}\"\n}}\n",
            echo.addr()
        ),
    );
    let bellhop = Bellhop::run_config(&file, &[], 1).await;
    let host = bellhop.addr().to_string();
    let mut c = h1(bellhop.addr(), None).await;
    let up = c
        .send_request(
            req("POST", &host, "/upload")
                .body(PatternBody::new(8 << 20).boxed())
                .unwrap(),
        )
        .await
        .expect("warm-up upload");
    let j = crate::support::client::collect(up).await.json();
    assert_eq!(j["body_len"], 8 << 20);
    let down = c
        .send_request(
            req("GET", &host, &format!("/download?bytes={}", 8 << 20))
                .body(empty())
                .unwrap(),
        )
        .await
        .expect("warm-up download");
    let r = crate::support::client::collect(down).await;
    assert_eq!(r.body.len(), 8 << 20);
    let base = bellhop.proc.rss_kib();
    (echo, bellhop, base)
}

#[tokio::test]
async fn upload_of_1_gib_streams_with_flat_rss() {
    bounded(secs(300), "test", async {
        let (echo, bellhop, base) = warmed_up().await;
        let sampler = RssSampler::start(bellhop.proc.pid());
        let started = Instant::now();
        let mut c = h1(bellhop.addr(), None).await;
        let resp = c
            .send_request(
                req("POST", &bellhop.addr().to_string(), "/upload")
                    .header("content-length", GIB)
                    .body(PatternBody::new(GIB).boxed())
                    .unwrap(),
            )
            .await
            .expect("upload");
        let r = crate::support::client::collect(resp).await;
        let peak = sampler.finish().await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["body_len"], GIB, "{j}");
        assert_eq!(j["body_pattern_ok"], true, "upload corrupted on the way");
        assert!(echo.stats.bytes_in.load(Ordering::SeqCst) >= GIB);
        eprintln!(
            "upload 1 GiB in {took:?} ({:.0} MiB/s); bellhop RSS base {base} KiB, peak {peak} KiB",
            1024.0 / took.as_secs_f64()
        );
        assert!(
            peak <= base + RSS_GROWTH_LIMIT_KIB,
            "bellhop RSS grew from {base} KiB to {peak} KiB during a 1 GiB upload"
        );
    })
    .await
}

#[tokio::test]
async fn download_of_1_gib_streams_with_flat_rss() {
    bounded(secs(300), "test", async {
        let (_echo, bellhop, base) = warmed_up().await;
        let sampler = RssSampler::start(bellhop.proc.pid());
        let started = Instant::now();
        let mut c = h1(bellhop.addr(), None).await;
        let resp = c
            .send_request(
                req("GET", &bellhop.addr().to_string(), &format!("/download?bytes={GIB}"))
                    .body(empty())
                    .unwrap(),
            )
            .await
            .expect("download");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut v = Verifier::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("download body");
            if let Ok(d) = frame.into_data() {
                v.update(&d);
            }
        }
        let peak = sampler.finish().await;
        let took = started.elapsed();
        assert_eq!(v.len, GIB);
        assert!(v.ok, "download corrupted on the way");
        eprintln!(
            "download 1 GiB in {took:?} ({:.0} MiB/s); bellhop RSS base {base} KiB, peak {peak} KiB",
            1024.0 / took.as_secs_f64()
        );
        assert!(
            peak <= base + RSS_GROWTH_LIMIT_KIB,
            "bellhop RSS grew from {base} KiB to {peak} KiB during a 1 GiB download"
        );
    })
    .await
}
