//! `header`, `request-header` and `security-headers` over real requests: set,
//! add and remove on responses of every handler, route lines after site lines,
//! the request the upstream sees, and HSTS only on HTTPS.

use bellhop::config::Config;

use crate::support::backends::echo::{header_joined, header_values, Echo};
use crate::support::client::{collect, empty, get, h2_tls, req, send};
use crate::support::server::TestServer;
use crate::support::{internal_root, TempDir};

/// Parses Proxyfile text as `bellhop validate` would, panicking with the report.
pub fn proxyfile(src: &str) -> Config {
    bellhop::config::parse(src, "Proxyfile").unwrap_or_else(|e| panic!("{}", e.render()))
}

async fn start(echo: &Echo) -> TestServer {
    let src = format!(
        r#"
"http://127.0.0.1:0" {{
    proxy "{upstream}"
    header "X-Frame-Options" "DENY"
    header "-Server"
    header "+Link" "</app.css>; rel=preload"
    request-header "X-Env" "staging"
    request-header "-Cookie"
    route "/assets/*" {{
        header "Cache-Control" "public, max-age=31536000, immutable"
        header "X-Frame-Options" "SAMEORIGIN"
        request-header "+X-Env" "assets"
    }}
    route "/hello" {{ respond "<p>hi</p>" content-type="text/html; charset=utf-8" }}
}}
"#,
        upstream = echo.addr()
    );
    TestServer::start(proxyfile(&src)).await
}

#[tokio::test]
async fn response_headers_are_set_added_and_removed() {
    let echo = Echo::start("app").await;
    let server = start(&echo).await;
    let request = req("GET", "app.test", "/page")
        .header("x-echo-set", "Server: uvicorn")
        .header("x-echo-set", "Link: </font.woff2>; rel=preload")
        .header("x-echo-set", "X-Frame-Options: ALLOWALL")
        .body(empty())
        .unwrap();
    let reply = send(server.addr(), None, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(reply.header("server").is_none(), "Server removed");
    let links: Vec<_> = reply.headers.get_all("link").iter().collect();
    assert_eq!(
        links,
        ["</font.woff2>; rel=preload", "</app.css>; rel=preload"]
    );
}

#[tokio::test]
async fn a_route_extends_and_overrides_the_site() {
    let echo = Echo::start("app").await;
    let server = start(&echo).await;
    let reply = get(server.addr(), "app.test", "/assets/app.css").await;
    assert_eq!(
        reply.header("cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    // The route's line runs after the site's.
    assert_eq!(
        reply.header("x-frame-options").as_deref(),
        Some("SAMEORIGIN")
    );
    // The site's remaining lines still apply.
    assert!(reply.header("link").is_some());
    // Bellhop's own answers get them too.
    let hello = get(server.addr(), "app.test", "/hello").await;
    assert_eq!(hello.text(), "<p>hi</p>");
    assert_eq!(
        hello.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(hello.header("x-frame-options").as_deref(), Some("DENY"));
}

#[tokio::test]
async fn the_upstream_sees_request_header_changes() {
    let echo = Echo::start("app").await;
    let server = start(&echo).await;
    let request = req("GET", "app.test", "/x")
        .header("cookie", "session=secret")
        .header("x-env", "from-client")
        .body(empty())
        .unwrap();
    let seen = send(server.addr(), None, request).await.json();
    assert_eq!(header_joined(&seen, "x-env").as_deref(), Some("staging"));
    assert!(header_values(&seen, "cookie").is_empty(), "Cookie removed");
    let request = req("GET", "app.test", "/assets/a.css")
        .body(empty())
        .unwrap();
    let seen = send(server.addr(), None, request).await.json();
    assert_eq!(header_values(&seen, "x-env"), ["staging", "assets"]);
}

#[tokio::test]
async fn security_headers_set_a_default_set_each_overridable() {
    let src = r#"
"http://127.0.0.1:0" {
    security-headers
    header "X-Frame-Options" "DENY"
    header "-Permissions-Policy"
    respond "ok"
}
"#;
    let server = TestServer::start(proxyfile(src)).await;
    let reply = get(server.addr(), "a", "/").await;
    assert_eq!(
        reply.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        reply.header("referrer-policy").as_deref(),
        Some("strict-origin-when-cross-origin")
    );
    assert_eq!(reply.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(reply.header("permissions-policy").is_none());
    // Plain HTTP: no HSTS.
    assert!(reply.header("strict-transport-security").is_none());
}

#[tokio::test]
async fn security_headers_turn_hsts_on_for_https_only() {
    let state = TempDir::new("security-headers");
    let src = format!(
        r#"
options {{ state-dir "{}" }}
"https://localhost:0" {{
    tls internal
    security-headers
    respond "ok"
}}
"#,
        state.path().display()
    );
    let server = TestServer::start(proxyfile(&src)).await;
    let root = internal_root(state.path()).await;
    let mut client = h2_tls(server.addr(), "localhost", &root).await;
    let uri = format!("https://localhost:{}/", server.addr().port());
    let request = http::Request::get(uri).body(empty()).unwrap();
    let reply = collect(client.send_request(request).await.unwrap()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
    assert_eq!(
        reply.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
}
