//! docs/examples/sovgrid.kdl (the Caddyfile of issue 15, ported) served end to
//! end: a blog from a files root, `/api/*` and `/mcp/*` proxied with their
//! paths kept on the same host, and a second host for the MCP box. The example
//! is read as shipped; only its names are swapped for the test's (plain HTTP
//! on an ephemeral port, two echo backends, a temporary root), and each swap
//! is checked to have happened so the example and this test cannot drift.

use std::io::Read;

use crate::header_directives::proxyfile;
use crate::support::backends::echo::Echo;
use crate::support::client::{empty, get, req, send, Reply};
use crate::support::server::TestServer;
use crate::support::TempDir;

const EXAMPLE: &str = include_str!("../../docs/examples/sovgrid.kdl");
const INDEX: &str = "<h1>sovgrid</h1>";

/// `from` → `to` in `text`, which must contain `from`.
fn swap(text: String, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "docs/examples/sovgrid.kdl no longer has {from}"
    );
    text.replace(from, to)
}

/// The server and what it needs alive: the root and both backends.
struct World {
    _dir: TempDir,
    _backends: [Echo; 2],
    server: TestServer,
}

async fn start() -> World {
    let dir = TempDir::new("sovgrid");
    let root = dir.path().join("sovgrid");
    std::fs::create_dir_all(root.join("posts")).unwrap();
    std::fs::write(root.join("index.html"), INDEX).unwrap();
    std::fs::write(root.join("posts/hello.html"), "<p>".repeat(200)).unwrap();
    let api = Echo::start("spark-3000").await;
    let mcp = Echo::start("spark-8888").await;
    let mut text = EXAMPLE.to_string();
    text = swap(
        text,
        "sovgrid.org www.sovgrid.org {",
        r#""http://sovgrid.org:0" "http://www.sovgrid.org:0" {"#,
    );
    text = swap(text, "mcp.sovgrid.org {", r#""http://mcp.sovgrid.org:0" {"#);
    text = swap(text, "spark.tailnet.local:3000", &api.addr().to_string());
    text = swap(text, "spark.tailnet.local:8888", &mcp.addr().to_string());
    text = swap(text, "/srv/sovgrid", &root.display().to_string());
    let server = TestServer::start(proxyfile(&text)).await;
    World {
        _dir: dir,
        _backends: [api, mcp],
        server,
    }
}

impl World {
    async fn get(&self, host: &str, path: &str) -> Reply {
        get(self.server.addr(), &self.server.host(host), path).await
    }
}

#[tokio::test]
async fn the_example_as_shipped_is_valid() {
    // The unmodified file parses (addresses, upstream names, the root).
    let config = proxyfile(EXAMPLE);
    assert_eq!(config.sites.len(), 2);
}

#[tokio::test]
async fn blog_files_and_both_api_prefixes_on_one_host() {
    let w = start().await;
    for host in ["sovgrid.org", "www.sovgrid.org"] {
        let home = w.get(host, "/").await;
        assert_eq!(home.status, 200);
        assert_eq!(home.text(), INDEX);
        let post = w.get(host, "/posts/hello.html").await;
        assert_eq!(post.status, 200);

        // reverse_proxy @api keeps the path and the query.
        let api = w.get(host, "/api/users?page=2").await.json();
        assert_eq!(api["backend"], "spark-3000");
        assert_eq!(api["uri"], "/api/users?page=2");
        let mcp = w.get(host, "/mcp/tools/list").await.json();
        assert_eq!(mcp["backend"], "spark-3000");
        assert_eq!(mcp["path"], "/mcp/tools/list");
        // bellhop's "/api/*" also takes /api itself.
        assert_eq!(w.get(host, "/api").await.json()["backend"], "spark-3000");
    }
    // A path no file has is a 404 from files, not the API's.
    assert_eq!(w.get("sovgrid.org", "/nope.html").await.status, 404);
}

#[tokio::test]
async fn the_mcp_host_proxies_everything() {
    let w = start().await;
    for path in ["/", "/sse", "/api/users"] {
        let seen = w.get("mcp.sovgrid.org", path).await.json();
        assert_eq!(seen["backend"], "spark-8888", "{path}");
        assert_eq!(seen["path"], path);
    }
    assert_eq!(w.get("other.example", "/").await.status, 404);
}

#[tokio::test]
async fn encode_gzip_zstd_prefers_gzip_as_written() {
    let w = start().await;
    let request = req("GET", &w.server.host("sovgrid.org"), "/posts/hello.html")
        .header("accept-encoding", "zstd, gzip")
        .body(empty())
        .unwrap();
    let reply = send(w.server.addr(), None, request).await;
    assert_eq!(reply.header("content-encoding").as_deref(), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&reply.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "<p>".repeat(200));
}
