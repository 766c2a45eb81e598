//! `error-page` over real requests: bellhop's own 502 when the upstream is
//! down, an upstream's own 503, text pages with a content type, route pages
//! before site pages, and statuses that are not listed left alone.

use crate::header_directives::proxyfile;
use crate::support::backends::echo::Echo;
use crate::support::client::{empty, get, req, send};
use crate::support::ports::Port;
use crate::support::server::TestServer;
use crate::support::TempDir;

const MAINTENANCE: &str = "<h1>Back in a minute</h1>";

#[tokio::test]
async fn pages_replace_own_and_upstream_errors() {
    let dir = TempDir::new("error-pages");
    let page = dir.write("maint.html", MAINTENANCE);
    let echo = Echo::start("app").await;
    // A port nothing listens on: bellhop answers 502 itself. Reserved, not
    // probed with bind(0) and dropped: a parallel test's backend was once
    // handed that port and answered 404.
    let closed = Port::reserve();
    let down = std::net::SocketAddr::from(([127, 0, 0, 1], closed.number()));
    let src = format!(
        r#"
"http://127.0.0.1:0" {{
    error-page 502 503 504 "{page}"
    route "/down/*" {{ proxy "{down}" }}
    route "/status/503" {{
        error-page 503 text="{{\"error\":\"deploying\"}}" content-type="application/json"
        proxy "{up}"
    }}
    proxy "{up}"
}}
"#,
        page = page.display(),
        up = echo.addr(),
    );
    let server = TestServer::start(proxyfile(&src)).await;

    let reply = get(server.addr(), "app.test", "/down/x").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), MAINTENANCE);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));

    // The upstream's own 502 gets the page too, and keeps its Retry-After.
    let request = req("GET", "app.test", "/status/502")
        .header("x-echo-set", "Retry-After: 30")
        .header("x-echo-set", "X-Internal: yes")
        .body(empty())
        .unwrap();
    let reply = send(server.addr(), None, request).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.text(), MAINTENANCE);
    assert_eq!(reply.header("retry-after").as_deref(), Some("30"));
    assert!(reply.header("x-internal").is_none());

    // A route's page wins over the site's for its status.
    let reply = get(server.addr(), "app.test", "/status/503").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.text(), r#"{"error":"deploying"}"#);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    // ... and the site's still covers the others.
    let reply = get(server.addr(), "app.test", "/status/504").await;
    assert_eq!(reply.text(), MAINTENANCE);

    // Statuses not listed pass through untouched.
    let reply = get(server.addr(), "app.test", "/status/404").await;
    assert_eq!(reply.status, 404);
    assert_ne!(reply.text(), MAINTENANCE);
    let reply = get(server.addr(), "app.test", "/ok").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_missing_page_file_fails_the_start() {
    let config = proxyfile(
        r#""http://127.0.0.1:0" { error-page 502 "/nonexistent/bellhop/maint.html"; respond "ok" }"#,
    );
    let err = match bellhop::Server::bind(config).await {
        Ok(_) => panic!("a missing error page must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot read error page"), "{err}");
    assert!(err.contains("/nonexistent/bellhop/maint.html"), "{err}");
}
