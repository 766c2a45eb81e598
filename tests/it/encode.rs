//! `encode`: gzip and zstd applied to files, `respond` and proxied responses,
//! decoded here by independent libraries (flate2, zstd). Negotiation (configured
//! order, `q=0`), what is left alone (small, binary, SSE, ranges, 304s, already
//! encoded), and a proxied stream that still arrives piece by piece compressed.

use std::io::{Read, Write};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Response;

use crate::files::files;
use crate::support::backends::sse::{Sse, FIRST, SECOND};
use crate::support::backends::{full, handler, ChannelBody, HttpBackend};
use crate::support::client::{collect, empty, h1, req, send, Reply};
use crate::support::config::{respond, site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, secs, TempDir};
use bellhop::config::{Config, Encoding};

/// Text that compresses well and is well over the 256-byte floor.
fn page() -> String {
    (0..2000)
        .map(|i| format!("<p>line {i} of the page</p>\n"))
        .collect()
}

fn json_doc() -> String {
    let items: Vec<String> = (0..500)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\"}}"))
        .collect();
    format!("[{}]", items.join(","))
}

/// `encode zstd gzip` on every route of the config.
fn with_encode(mut cfg: Config, encode: &[Encoding]) -> Config {
    for site in &mut cfg.sites {
        for route in &mut site.routes {
            route.encode = encode.to_vec();
        }
    }
    cfg
}

const ZG: &[Encoding] = &[Encoding::Zstd, Encoding::Gzip];

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unzstd(b: &[u8]) -> Vec<u8> {
    zstd::decode_all(b).expect("valid zstd")
}

/// A files site over a root with `page.html`, `tiny.txt`, `img.png`, encoded.
struct World {
    _dir: TempDir,
    server: TestServer,
}

impl World {
    async fn start(encode: &[Encoding]) -> World {
        let dir = TempDir::new("encode");
        dir.write("page.html", &page());
        dir.write("tiny.txt", "small");
        std::fs::write(dir.path().join("img.png"), vec![7u8; 10_000]).unwrap();
        let cfg = ConfigBuilder::new()
            .site(
                site("127.0.0.1")
                    .route("/say", respond(200, &"hello ".repeat(100)))
                    .route("/short", respond(200, "hi"))
                    .handle(files(dir.path())),
            )
            .build();
        let server = TestServer::start(with_encode(cfg, encode)).await;
        World { _dir: dir, server }
    }

    async fn get(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut r = req(method, &self.server.addr().to_string(), path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        send(self.server.addr(), None, r.body(empty()).unwrap()).await
    }

    /// `GET /page.html` with the `accept-encoding` given.
    async fn page(&self, accept: &str) -> Reply {
        self.get("GET", "/page.html", &[("accept-encoding", accept)])
            .await
    }
}

fn assert_compressed(r: &Reply, coding: &str) {
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-encoding").as_deref(),
        Some(coding),
        "{:?}",
        r.headers
    );
    // Streamed as compressed (no length), or a static file's kept form (its length).
    if let Some(len) = r.header("content-length") {
        assert_eq!(len, r.body.len().to_string(), "{:?}", r.headers);
    }
    assert_eq!(r.header("vary").as_deref(), Some("Accept-Encoding"));
}

/// `r` is the page, compressed with `coding` (`gzip` or `zstd`).
fn assert_compressed_page(r: &Reply, coding: &str) {
    assert_compressed(r, coding);
    let decoded = match coding {
        "gzip" => gunzip(&r.body),
        "zstd" => unzstd(&r.body),
        other => panic!("no decoder for {other}"),
    };
    assert_eq!(decoded, page().as_bytes());
}

fn assert_identity(r: &Reply) {
    assert!(r.header("content-encoding").is_none(), "{:?}", r.headers);
}

#[tokio::test]
async fn gzip_round_trip_on_a_file() {
    bounded(secs(20), "test", async {
        let w = World::start(ZG).await;
        let r = w.page("gzip, deflate").await;
        assert_compressed(&r, "gzip");
        assert!(
            r.body.len() < page().len() / 4,
            "gzip barely compressed: {}",
            r.body.len()
        );
        assert!(r.header("accept-ranges").is_none());
        assert!(r.header("etag").unwrap().starts_with("W/"));
        assert_eq!(gunzip(&r.body), page().as_bytes());
    })
    .await
}

#[tokio::test]
async fn zstd_round_trip_and_configured_order_wins() {
    bounded(secs(20), "test", async {
        let w = World::start(ZG).await;
        // The client prefers gzip; the Proxyfile's order decides among accepted codings.
        let r = w.page("gzip;q=1, zstd;q=0.5").await;
        assert_compressed_page(&r, "zstd");

        let w = World::start(&[Encoding::Gzip, Encoding::Zstd]).await;
        let r = w.page("zstd, gzip").await;
        assert_compressed_page(&r, "gzip");
    })
    .await
}

#[tokio::test]
async fn q_zero_refuses_a_coding() {
    bounded(secs(20), "test", async {
        let w = World::start(ZG).await;
        let r = w.page("zstd;q=0, gzip").await;
        assert_compressed_page(&r, "gzip");

        for accept in ["zstd;q=0, gzip;q=0", "*;q=0", "br", "identity"] {
            let r = w.page(accept).await;
            assert_identity(&r);
            assert_eq!(
                r.header("content-length"),
                Some(page().len().to_string()),
                "{accept}"
            );
            assert_eq!(
                r.header("vary").as_deref(),
                Some("Accept-Encoding"),
                "{accept}"
            );
            assert_eq!(r.text(), page(), "{accept}");
        }
        let r = w.get("GET", "/page.html", &[]).await;
        assert_identity(&r);
        assert_eq!(r.text(), page());
    })
    .await
}

#[tokio::test]
async fn small_binary_partial_and_not_modified_responses_are_left_alone() {
    bounded(secs(20), "test", async {
        let w = World::start(ZG).await;
        let ae = ("accept-encoding", "zstd, gzip");
        let r = w.get("GET", "/tiny.txt", &[ae]).await;
        assert_identity(&r);
        assert_eq!(r.text(), "small");
        let r = w.get("GET", "/short", &[ae]).await;
        assert_identity(&r);
        assert_eq!(r.text(), "hi");
        let r = w.get("GET", "/img.png", &[ae]).await;
        assert_identity(&r);
        assert_eq!(r.body.len(), 10_000);
        let r = w
            .get("GET", "/page.html", &[ae, ("range", "bytes=0-99")])
            .await;
        assert_eq!(r.status, 206);
        assert_identity(&r);
        assert_eq!(r.text(), page()[..100]);
        let etag = w
            .get("GET", "/page.html", &[])
            .await
            .header("etag")
            .unwrap();
        let r = w
            .get("GET", "/page.html", &[ae, ("if-none-match", &etag)])
            .await;
        assert_eq!(r.status, 304);
        assert_identity(&r);
    })
    .await
}

#[tokio::test]
async fn respond_and_head_are_encoded_too() {
    bounded(secs(20), "test", async {
        let w = World::start(ZG).await;
        let r = w.get("GET", "/say", &[("accept-encoding", "gzip")]).await;
        assert_compressed(&r, "gzip");
        assert_eq!(gunzip(&r.body), "hello ".repeat(100).as_bytes());
        let r = w
            .get("HEAD", "/page.html", &[("accept-encoding", "gzip")])
            .await;
        assert_compressed(&r, "gzip");
        assert!(r.body.is_empty());
    })
    .await
}

#[tokio::test]
async fn a_route_with_encode_off_is_not_compressed() {
    bounded(secs(20), "test", async {
        let dir = TempDir::new("encode-off");
        dir.write("page.html", &page());
        let mut cfg = ConfigBuilder::new()
            .site(
                site("127.0.0.1")
                    .route("/raw/*", respond(200, &page()))
                    .handle(files(dir.path())),
            )
            .build();
        // `encode zstd gzip` on the site, `encode off` in the route.
        cfg.sites[0].routes[1].encode = ZG.to_vec();
        let server = TestServer::start(cfg).await;
        let host = server.addr().to_string();
        let ask = |path: &str| {
            req("GET", &host, path)
                .header("accept-encoding", "gzip")
                .body(empty())
                .unwrap()
        };
        let r = send(server.addr(), None, ask("/raw/x")).await;
        assert_identity(&r);
        assert!(r.header("vary").is_none());
        let r = send(server.addr(), None, ask("/page.html")).await;
        assert_compressed(&r, "gzip");
    })
    .await
}

/// A JSON API behind the proxy: a whole document, one already encoded by the
/// backend (left alone), and a stream whose first part must arrive, compressed
/// and decodable, before the backend writes the rest.
#[tokio::test]
async fn proxied_json_is_compressed_and_streams_keep_flowing() {
    bounded(secs(30), "test", async {
        let (part_tx, mut part_rx) =
            tokio::sync::mpsc::channel::<tokio::sync::mpsc::Sender<Bytes>>(1);
        let part_tx = std::sync::Arc::new(part_tx);
        let backend = HttpBackend::tcp(handler(move |req, _| {
            let part_tx = part_tx.clone();
            async move {
                match req.uri().path() {
                    "/doc" => Response::builder()
                        .header("content-type", "application/json")
                        .body(full(json_doc()))
                        .unwrap(),
                    "/already" => Response::builder()
                        .header("content-type", "application/json")
                        .header("content-encoding", "br")
                        .body(full(vec![1u8; 1000]))
                        .unwrap(),
                    _ => {
                        let (tx, body) = ChannelBody::channel();
                        let _ = part_tx.send(tx).await;
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(body)
                            .unwrap()
                    }
                }
            }
        }))
        .await;
        let cfg = ConfigBuilder::new()
            .site(site("127.0.0.1").proxy(tcp(backend.addr())))
            .build();
        let server = TestServer::start(with_encode(cfg, ZG)).await;
        let host = server.addr().to_string();
        let ask = |path: &str, ae: &str| {
            req("GET", &host, path)
                .header("accept-encoding", ae)
                .body(empty())
                .unwrap()
        };

        let r = send(server.addr(), None, ask("/doc", "gzip, zstd")).await;
        assert_compressed(&r, "zstd");
        assert_eq!(unzstd(&r.body), json_doc().as_bytes());
        let r = send(server.addr(), None, ask("/doc", "gzip")).await;
        assert_compressed(&r, "gzip");
        assert_eq!(gunzip(&r.body), json_doc().as_bytes());

        let r = send(server.addr(), None, ask("/already", "gzip")).await;
        assert_eq!(r.header("content-encoding").as_deref(), Some("br"));
        assert_eq!(r.body.len(), 1000);

        // Streamed: the first part decodes on its own before the second is written.
        let mut c = h1(server.addr(), None).await;
        let resp = c.send_request(ask("/stream", "gzip")).await.unwrap();
        assert_eq!(resp.headers()["content-encoding"], "gzip");
        let tx = part_rx.recv().await.unwrap();
        let first = "[{\"event\":1}";
        tx.send(Bytes::from_static(first.as_bytes())).await.unwrap();
        let mut body = resp.into_body();
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        while decoder.get_ref().len() < first.len() {
            let frame = bounded(secs(5), "first part, compressed", body.frame())
                .await
                .expect("body ended early")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                decoder.write_all(&data).unwrap();
                decoder.flush().unwrap();
            }
        }
        assert_eq!(decoder.get_ref().as_slice(), first.as_bytes());
        tx.send(Bytes::from_static(b",{\"event\":2}]"))
            .await
            .unwrap();
        drop(tx);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                decoder.write_all(&data).unwrap();
            }
        }
        let all = decoder.finish().unwrap();
        assert_eq!(all, b"[{\"event\":1},{\"event\":2}]");
    })
    .await
}

/// `text/event-stream` is never compressed, so events arrive one by one as sent.
#[tokio::test]
async fn sse_is_not_compressed_and_arrives_event_by_event() {
    bounded(secs(30), "test", async {
        let sse = Sse::start().await;
        let cfg = ConfigBuilder::new()
            .site(site("127.0.0.1").proxy(tcp(sse.http.addr())))
            .build();
        let server = TestServer::start(with_encode(cfg, ZG)).await;
        let mut c = h1(server.addr(), None).await;
        let resp = c
            .send_request(
                req("GET", &server.addr().to_string(), "/events")
                    .header("accept-encoding", "zstd, gzip")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "{:?}",
            resp.headers()
        );
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while got.len() < FIRST.len() {
            let frame = bounded(secs(5), "first event", body.frame())
                .await
                .unwrap()
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(got, FIRST.as_bytes());
        assert!(!sse.second_sent());
        sse.release_second();
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(got, format!("{FIRST}{SECOND}").as_bytes());
    })
    .await
}

/// An upgrade (101) through an encoded route is left alone: the tunnel carries
/// raw bytes both ways even when the client accepts gzip.
#[tokio::test]
async fn upgrades_pass_through_an_encoded_route() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(secs(20), "test", async {
        let backend = crate::support::backends::upgrade::UpgradeBackend::start().await;
        let cfg = ConfigBuilder::new()
            .site(site("127.0.0.1").proxy(tcp(backend.addr)))
            .build();
        let server = TestServer::start(with_encode(cfg, ZG)).await;
        let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let head = format!(
            "GET /echo-until-eof HTTP/1.1\r\nhost: {}\r\nconnection: upgrade\r\nupgrade: testproto\r\naccept-encoding: gzip, zstd\r\n\r\n",
            server.addr()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        let mut byte = [0u8; 1];
        while !resp.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1, "closed in the head: {resp:?}");
            resp.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&resp).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(!head.contains("content-encoding"), "{head}");
        s.write_all(b"raw bytes").await.unwrap();
        s.shutdown().await.unwrap();
        let mut reply = Vec::new();
        bounded(secs(5), "echo", s.read_to_end(&mut reply)).await.unwrap();
        assert_eq!(reply, b"echo:raw bytes");
    })
    .await
}

/// A static file is compressed once per version: later requests get the kept
/// bytes (now with a Content-Length), and a file changed on disk is compressed
/// afresh, never served stale. One connection, so one worker and its cache.
#[tokio::test]
async fn a_files_compressed_form_is_kept_until_the_file_changes() {
    bounded(secs(20), "test", async {
        let w = World::start(ZG).await;
        let host = w.server.addr().to_string();
        let mut c = h1(w.server.addr(), None).await;
        let mut ask = async |accept: &str| {
            let r = req("GET", &host, "/page.html")
                .header("accept-encoding", accept)
                .body(empty())
                .unwrap();
            collect(c.send_request(r).await.unwrap()).await
        };

        let first = ask("gzip").await;
        assert_compressed_page(&first, "gzip");
        assert!(
            first.header("content-length").is_none(),
            "{:?}",
            first.headers
        );
        let again = ask("gzip").await;
        assert_compressed_page(&again, "gzip");
        assert_eq!(
            again.header("content-length"),
            Some(again.body.len().to_string())
        );
        assert_eq!(again.header("etag"), first.header("etag"));
        // Each coding is kept on its own.
        let zstd = ask("zstd").await;
        assert_compressed_page(&zstd, "zstd");
        assert!(
            zstd.header("content-length").is_none(),
            "{:?}",
            zstd.headers
        );

        let changed = format!("{}<p>and one more line</p>\n", page());
        w._dir.write("page.html", &changed);
        let after = ask("gzip").await;
        assert_eq!(after.header("content-encoding").as_deref(), Some("gzip"));
        assert_eq!(gunzip(&after.body), changed.as_bytes());
        assert_ne!(after.header("etag"), first.header("etag"));
        let kept = ask("gzip").await;
        assert_eq!(gunzip(&kept.body), changed.as_bytes());
        assert_eq!(
            kept.header("content-length"),
            Some(kept.body.len().to_string())
        );
    })
    .await
}
