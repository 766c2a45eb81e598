//! `files … try=` and precompressed siblings over real requests: the SPA
//! fallback for any miss, and `.zst`/`.gz` files chosen by Accept-Encoding with
//! their own ETag and `Vary`.

use crate::header_directives::proxyfile;
use crate::support::client::{empty, get, req, send};
use crate::support::server::TestServer;
use crate::support::TempDir;

const INDEX: &str = "<div id=app></div>";
const CSS: &str = "body { color: black }";

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn start(dir: &TempDir) -> TestServer {
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("index.html"), INDEX).unwrap();
    std::fs::write(root.join("assets/app.css"), CSS).unwrap();
    std::fs::write(root.join("assets/app.css.gz"), gzip(CSS.as_bytes())).unwrap();
    std::fs::write(
        root.join("assets/app.css.zst"),
        zstd::encode_all(CSS.as_bytes(), 19).unwrap(),
    )
    .unwrap();
    std::fs::write(root.join("assets/plain.js"), "1").unwrap();
    std::fs::write(root.join(".env"), "SECRET").unwrap();
    let src = format!(
        r#"
"http://127.0.0.1:0" {{
    route "/assets/*" {{ header "Cache-Control" "public, max-age=31536000, immutable" }}
    files "{}" try="/index.html"
}}
"#,
        root.display()
    );
    TestServer::start(proxyfile(&src)).await
}

#[tokio::test]
async fn any_miss_serves_the_fallback() {
    let dir = TempDir::new("spa");
    let server = start(&dir).await;
    for path in ["/", "/users/42", "/deep/link?tab=2", "/missing.js"] {
        let reply = get(server.addr(), "spa.test", path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.text(), INDEX, "{path}");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
    }
    // Existing files are themselves; hidden files and `..` are still refused
    // before any fallback.
    assert_eq!(
        get(server.addr(), "spa.test", "/assets/plain.js")
            .await
            .text(),
        "1"
    );
    let hidden = get(server.addr(), "spa.test", "/.env").await;
    assert_ne!(hidden.text(), "SECRET");
    let reply = get(server.addr(), "spa.test", "/assets/../.env").await;
    assert_ne!(reply.text(), "SECRET");
    // Other methods are still refused.
    let post = send(
        server.addr(),
        None,
        req("POST", "spa.test", "/users/42").body(empty()).unwrap(),
    )
    .await;
    assert_eq!(post.status, 405);
}

async fn css(server: &TestServer, accept: Option<&str>) -> crate::support::client::Reply {
    let mut r = req("GET", "spa.test", "/assets/app.css");
    if let Some(accept) = accept {
        r = r.header("accept-encoding", accept);
    }
    send(server.addr(), None, r.body(empty()).unwrap()).await
}

#[tokio::test]
async fn precompressed_siblings_follow_accept_encoding() {
    let dir = TempDir::new("precompressed");
    let server = start(&dir).await;
    let plain = css(&server, None).await;
    assert_eq!(plain.text(), CSS);
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.header("vary").as_deref(), Some("Accept-Encoding"));
    assert_eq!(
        plain.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );

    let gz = css(&server, Some("gzip")).await;
    assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        gz.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz.body[..]), &mut text)
        .unwrap();
    assert_eq!(text, CSS);

    let zst = css(&server, Some("gzip, zstd")).await;
    assert_eq!(zst.header("content-encoding").as_deref(), Some("zstd"));
    assert_eq!(zstd::decode_all(&zst.body[..]).unwrap(), CSS.as_bytes());
    assert_eq!(
        css(&server, Some("zstd;q=0, gzip"))
            .await
            .header("content-encoding")
            .as_deref(),
        Some("gzip")
    );

    // Three representations, three ETags; each revalidates on its own.
    let tags = [&plain, &gz, &zst].map(|r| r.header("etag").unwrap());
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    let revalidate = req("GET", "spa.test", "/assets/app.css")
        .header("accept-encoding", "gzip")
        .header("if-none-match", &tags[1])
        .body(empty())
        .unwrap();
    assert_eq!(send(server.addr(), None, revalidate).await.status, 304);

    // No sibling: no Vary from files.
    let js = get(server.addr(), "spa.test", "/assets/plain.js").await;
    assert!(js.header("vary").is_none());
}
