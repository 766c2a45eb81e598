//! `files`: static files from a directory through a real listener. GET and HEAD
//! only, no way out of the root (raw `..`, percent-encoded `..`, symlinks),
//! index.html and the slash redirect, types, validators and 304s, single ranges,
//! and a 50 MiB file that is read as it is sent, not loaded whole.

use std::path::Path;

use http_body_util::BodyExt;

use crate::support::backends::echo::Echo;
use crate::support::client::{collect, empty, get, h1, h2_tls, raw, req, send};
use crate::support::config::{https_site, proxy, site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, secs, TempDir};
use bellhop::config::Handler;

const HELLO: &str = "hello world\n";

/// A root with a few files, a secret next to (not under) it, and bellhop serving
/// the root as `"http://127.0.0.1:0" { files ROOT }`.
struct World {
    dir: TempDir,
    server: TestServer,
}

impl World {
    async fn start() -> World {
        let dir = TempDir::new("files");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("noindex")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
        std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(root.join("hello.txt"), HELLO).unwrap();
        std::fs::write(root.join("style.css"), "body{}").unwrap();
        std::fs::write(root.join("logo.svg"), "<svg/>").unwrap();
        std::fs::write(root.join("blob.bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(root.join("my file.txt"), "spaced").unwrap();
        std::fs::write(root.join("sub/index.html"), "<h1>sub</h1>").unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "TOP SECRET").unwrap();
        std::fs::write(root.join(".env"), "TOP SECRET").unwrap();
        std::fs::create_dir_all(root.join(".well-known")).unwrap();
        std::fs::write(root.join(".well-known/security.txt"), "Contact: ops").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(root.join("hello.txt"), root.join("inside")).unwrap();
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").handle(files(&root)))
                .build(),
        )
        .await;
        World { dir, server }
    }

    fn host(&self) -> String {
        self.server.addr().to_string()
    }

    async fn get(&self, path: &str) -> crate::support::client::Reply {
        get(self.server.addr(), &self.host(), path).await
    }

    async fn with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> crate::support::client::Reply {
        let mut r = req(method, &self.host(), path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        send(self.server.addr(), None, r.body(empty()).unwrap()).await
    }

    /// The raw response to `GET target`, for targets a client library might tidy up.
    async fn raw_get(&self, target: &str) -> String {
        let request = format!(
            "GET {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.host()
        );
        raw(self.server.addr(), request.as_bytes()).await
    }
}

pub fn files(root: &Path) -> Handler {
    Handler::Files {
        root: root.to_path_buf(),
        fallback: None,
    }
}

#[tokio::test]
async fn a_file_is_served_with_type_length_and_validators() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        let r = w.get("/hello.txt").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), HELLO);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(r.header("content-length"), Some(HELLO.len().to_string()));
        assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
        assert!(
            r.header("etag").unwrap().starts_with("W/\""),
            "{:?}",
            r.headers
        );
        let lm = r.header("last-modified").expect("last-modified");
        assert!(lm.ends_with(" GMT"), "{lm}");
        assert_eq!(w.get("/my%20file.txt").await.text(), "spaced");
        assert_eq!(
            w.get("/inside").await.text(),
            HELLO,
            "a symlink within the root is fine"
        );
    })
    .await
}

#[tokio::test]
async fn content_type_comes_from_the_extension() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        for (path, ty) in [
            ("/index.html", "text/html; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/logo.svg", "image/svg+xml"),
            ("/blob.bin", "application/octet-stream"),
        ] {
            let r = w.get(path).await;
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("content-type").as_deref(), Some(ty), "{path}");
        }
    })
    .await
}

#[tokio::test]
async fn directories_redirect_to_the_slash_form_then_serve_index_html() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        assert_eq!(w.get("/").await.text(), "<h1>home</h1>");
        let r = w.get("/sub").await;
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location").as_deref(), Some("/sub/"));
        let r = w.get("/sub?a=1").await;
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location").as_deref(), Some("/sub/?a=1"));
        let r = w.get("/sub/").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "<h1>sub</h1>");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            w.get("/noindex/").await.status,
            404,
            "no listing without index.html"
        );
    })
    .await
}

#[tokio::test]
async fn a_missing_file_is_a_plain_text_404() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        for path in ["/nope.txt", "/sub/nope", "/hello.txt/more"] {
            let r = w.get(path).await;
            assert_eq!(r.status, 404, "{path}");
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("text/plain; charset=utf-8")
            );
        }
    })
    .await
}

#[tokio::test]
async fn nothing_outside_the_root_is_served() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        assert!(w.dir.path().join("secret.txt").exists());
        for target in [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/sub/%2e%2e/%2e%2e/secret.txt",
            "/.%2e/secret.txt",
            "/%2e%2e%2fsecret.txt",
            "/sub%2f..%2f..%2fsecret.txt",
            "/escape",
            "/up/secret.txt",
            "/.git/config",
            "/.env",
            "/%2egit/config",
        ] {
            let reply = w.raw_get(target).await;
            // 400: the path phase refuses dot segments behind encoded
            // slashes before `files` sees them (see http_path).
            assert!(
                reply.starts_with("HTTP/1.1 404") || reply.starts_with("HTTP/1.1 400"),
                "{target}: {reply}"
            );
            assert!(!reply.contains("TOP SECRET"), "{target}: {reply}");
        }
        // Hidden files stay hidden, but RFC 8615's /.well-known/ is served.
        assert_eq!(
            w.raw_get("/.well-known/security.txt")
                .await
                .split("\r\n\r\n")
                .nth(1),
            Some("Contact: ops")
        );
        // A symlink that leaves the root and comes back in lands inside: served.
        assert_eq!(
            w.raw_get("/up/root/hello.txt")
                .await
                .split("\r\n\r\n")
                .nth(1),
            Some(HELLO)
        );
    })
    .await
}

#[tokio::test]
async fn only_get_and_head_are_allowed() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let r = w.with(method, "/hello.txt", &[]).await;
            assert_eq!(r.status, 405, "{method}");
            assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"), "{method}");
        }
    })
    .await
}

#[tokio::test]
async fn head_sends_the_headers_of_get_without_the_body() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        let reply = raw(
            w.server.addr(),
            format!(
                "HEAD /hello.txt HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
                w.host()
            )
            .as_bytes(),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let lower = reply.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("content-length: {}\r\n", HELLO.len())),
            "{reply}"
        );
        assert!(lower.contains("etag: w/\""), "{reply}");
        assert!(
            reply.ends_with("\r\n\r\n"),
            "no body after the head: {reply:?}"
        );
    })
    .await
}

#[tokio::test]
async fn validators_turn_into_304() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        let first = w.get("/hello.txt").await;
        let etag = first.header("etag").unwrap();
        let lm = first.header("last-modified").unwrap();

        let r = w
            .with("GET", "/hello.txt", &[("if-none-match", &etag)])
            .await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.clone()));
        let r = w
            .with(
                "GET",
                "/hello.txt",
                &[("if-none-match", &format!("\"x\", {etag}"))],
            )
            .await;
        assert_eq!(r.status, 304);
        let r = w
            .with("HEAD", "/hello.txt", &[("if-none-match", &etag)])
            .await;
        assert_eq!(r.status, 304);

        let r = w
            .with("GET", "/hello.txt", &[("if-modified-since", &lm)])
            .await;
        assert_eq!(r.status, 304);
        let r = w
            .with(
                "GET",
                "/hello.txt",
                &[("if-modified-since", "Thu, 01 Jan 1998 00:00:00 GMT")],
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), HELLO);

        // If-None-Match decides when both are present.
        let r = w
            .with(
                "GET",
                "/hello.txt",
                &[("if-none-match", "W/\"other\""), ("if-modified-since", &lm)],
            )
            .await;
        assert_eq!(r.status, 200);

        // A changed file has a new ETag.
        std::fs::write(w.dir.path().join("root/hello.txt"), "changed, longer\n").unwrap();
        let r = w
            .with("GET", "/hello.txt", &[("if-none-match", &etag)])
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "changed, longer\n");
    })
    .await
}

#[tokio::test]
async fn single_ranges_get_206_and_impossible_ones_416() {
    bounded(secs(20), "test", async {
        let w = World::start().await;
        let len = HELLO.len();
        for (range, want, content_range) in [
            ("bytes=0-4", "hello", format!("bytes 0-4/{len}")),
            ("bytes=6-", "world\n", format!("bytes 6-11/{len}")),
            ("bytes=-6", "world\n", format!("bytes 6-11/{len}")),
            ("bytes=6-1000", "world\n", format!("bytes 6-11/{len}")),
        ] {
            let r = w.with("GET", "/hello.txt", &[("range", range)]).await;
            assert_eq!(r.status, 206, "{range}");
            assert_eq!(r.text(), want, "{range}");
            assert_eq!(r.header("content-range"), Some(content_range), "{range}");
            assert_eq!(
                r.header("content-length"),
                Some(want.len().to_string()),
                "{range}"
            );
        }
        for range in ["bytes=12-", "bytes=100-200", "bytes=-0"] {
            let r = w.with("GET", "/hello.txt", &[("range", range)]).await;
            assert_eq!(r.status, 416, "{range}");
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes */{len}")),
                "{range}"
            );
        }
        // Several ranges, a unit we do not know, or a stale If-Range: the whole file.
        let lm = w.get("/hello.txt").await.header("last-modified").unwrap();
        for headers in [
            vec![("range", "bytes=0-1,3-4")],
            vec![("range", "lines=1-2")],
            vec![
                ("range", "bytes=0-4"),
                ("if-range", "Thu, 01 Jan 1998 00:00:00 GMT"),
            ],
            vec![("range", "bytes=0-4"), ("if-range", "W/\"whatever\"")],
        ] {
            let r = w.with("GET", "/hello.txt", &headers).await;
            assert_eq!(r.status, 200, "{headers:?}");
            assert_eq!(r.text(), HELLO, "{headers:?}");
        }
        let r = w
            .with(
                "GET",
                "/hello.txt",
                &[("range", "bytes=0-4"), ("if-range", &lm)],
            )
            .await;
        assert_eq!(r.status, 206);
        assert_eq!(r.text(), "hello");
    })
    .await
}

/// The file is read while it is sent: after the first bytes reach the client,
/// the last MiB is rewritten on disk, and the client receives the new bytes.
/// A server that had read the file whole at the start would send the old ones.
#[tokio::test]
async fn a_50_mib_file_streams_in_chunks_and_is_read_as_it_goes() {
    bounded(secs(60), "test", async {
        const LEN: usize = 50 << 20;
        const TAIL: usize = 1 << 20;
        let dir = TempDir::new("files-big");
        let path = dir.path().join("big.bin");
        let mut expected: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &expected).unwrap();
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").handle(files(dir.path())))
                .build(),
        )
        .await;
        let mut c = h1(server.addr(), None).await;
        let resp = c
            .send_request(
                req("GET", &server.addr().to_string(), "/big.bin")
                    .body(empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], LEN.to_string().as_str());
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(!first.is_empty() && first.len() < LEN);

        // Same length, new tail: only a server still reading the file sees it.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start((LEN - TAIL) as u64)).unwrap();
            f.write_all(&vec![0xAB; TAIL]).unwrap();
        }
        expected[LEN - TAIL..].fill(0xAB);

        let mut got = first.to_vec();
        let mut frames = 1;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got.extend_from_slice(&data);
                frames += 1;
            }
        }
        assert_eq!(got.len(), LEN);
        assert!(
            got == expected,
            "bytes differ (the rewritten tail must be the new bytes)"
        );
        assert!(frames > 50, "50 MiB arrived in only {frames} frames");
    })
    .await
}

/// DESIGN.md's example: `route "/api/*" { proxy 3000 }` next to a site-level `files`.
#[tokio::test]
async fn an_api_route_and_site_level_files_work_together() {
    bounded(secs(20), "test", async {
        let api = Echo::start("api").await;
        let dir = TempDir::new("files-api");
        dir.write("hello.txt", HELLO);
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(
                    site("127.0.0.1")
                        .route("/api/*", proxy(tcp(api.addr())))
                        .handle(files(dir.path())),
                )
                .build(),
        )
        .await;
        let host = server.addr().to_string();
        let r = get(server.addr(), &host, "/api/users?id=1").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["backend"], "api");
        assert_eq!(get(server.addr(), &host, "/hello.txt").await.text(), HELLO);
        assert_eq!(get(server.addr(), &host, "/api.txt").await.status, 404);
        // h1 keep-alive: both kinds on one connection.
        let mut c = h1(server.addr(), None).await;
        for path in ["/hello.txt", "/api/x", "/hello.txt"] {
            let r = collect(
                c.send_request(req("GET", &host, path).body(empty()).unwrap())
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, 200, "{path}");
        }
    })
    .await
}

/// A deploy that swaps a `current -> releases/N` symlink is served at once: the
/// root is resolved per request, not once at start. A root that appears after
/// start works too.
#[tokio::test]
async fn a_root_symlink_swapped_by_a_deploy_is_followed_at_once() {
    bounded(secs(20), "test", async {
        let dir = TempDir::new("files-deploy");
        for n in ["1", "2"] {
            std::fs::create_dir_all(dir.path().join("releases").join(n)).unwrap();
            std::fs::write(
                dir.path().join(format!("releases/{n}/index.html")),
                format!("release {n}"),
            )
            .unwrap();
        }
        let current = dir.path().join("current");
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").handle(files(&current)))
                .build(),
        )
        .await;
        let host = server.addr().to_string();
        assert_eq!(
            get(server.addr(), &host, "/").await.status,
            404,
            "no root yet"
        );
        std::os::unix::fs::symlink(dir.path().join("releases/1"), &current).unwrap();
        assert_eq!(get(server.addr(), &host, "/").await.text(), "release 1");
        let next = dir.path().join("current.next");
        std::os::unix::fs::symlink(dir.path().join("releases/2"), &next).unwrap();
        std::fs::rename(&next, &current).unwrap();
        assert_eq!(get(server.addr(), &host, "/").await.text(), "release 2");
    })
    .await
}

/// The same over h2 (TLS, ALPN h2, internal CA): a file, a range and a HEAD.
#[tokio::test]
async fn files_over_h2() {
    bounded(secs(30), "test", async {
        let state = TempDir::new("files-h2");
        let dir = TempDir::new("files-h2-root");
        dir.write("hello.txt", HELLO);
        let server = TestServer::start(
            ConfigBuilder::new()
                .state_dir(state.path())
                .site(https_site("files.localhost").handle(files(dir.path())))
                .build(),
        )
        .await;
        let root = internal_root(state.path()).await;
        let mut c = h2_tls(server.addr(), "files.localhost", &root).await;
        let uri = format!("https://files.localhost:{}/hello.txt", server.addr().port());
        let ask = |method: &str, range: Option<&str>| {
            let mut r = http::Request::builder().method(method).uri(&uri);
            if let Some(range) = range {
                r = r.header("range", range);
            }
            r.body(empty()).unwrap()
        };
        let r = collect(c.send_request(ask("GET", None)).await.unwrap()).await;
        assert_eq!(r.version, http::Version::HTTP_2);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), HELLO);
        let r = collect(c.send_request(ask("GET", Some("bytes=6-"))).await.unwrap()).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.text(), "world\n");
        let r = collect(c.send_request(ask("HEAD", None)).await.unwrap()).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(HELLO.len().to_string()));
        assert!(r.body.is_empty());
    })
    .await
}
