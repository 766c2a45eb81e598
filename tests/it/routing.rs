//! Site selection by Host (exact, then `*.wildcard`, h2 `:authority`), path routes
//! in order with first match winning, and the 404 for unknown hosts.

use crate::support::backends::echo::{header_values, Echo};
use crate::support::binary::text_field;
use crate::support::client::{collect, empty, get, h2_tls, raw, req, send};
use crate::support::config::{https_site, proxy, site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, internal_root, secs, TempDir};

/// Backends named after what should reach them, and bellhop in front:
///
/// ```text
/// "http://app.test"        { route "/api/*" { proxy API }  route "/api/v1/*" { proxy V1 }
///                            route "/exact" { proxy EXACT } proxy APP }
/// "http://*.wild.test"     { proxy WILD }
/// "http://exact.wild.test" { proxy EXACTHOST }     // after the wildcard on purpose
/// "http://other.test"      { proxy OTHER }
/// ```
struct World {
    _backends: Vec<Echo>,
    server: TestServer,
}

async fn world() -> World {
    let mut backends = Vec::new();
    for name in ["app", "api", "v1", "exact", "wild", "exacthost", "other"] {
        backends.push(Echo::start(name).await);
    }
    let up = |i: usize| tcp(backends[i].addr());
    let cfg = ConfigBuilder::new()
        .site(
            site("app.test")
                .route("/api/*", proxy(up(1)))
                .route("/api/v1/*", proxy(up(2)))
                .route("/exact", proxy(up(3)))
                .proxy(up(0)),
        )
        .site(site("*.wild.test").proxy(up(4)))
        .site(site("exact.wild.test").proxy(up(5)))
        .site(site("other.test").proxy(up(6)))
        .build();
    let server = TestServer::start(cfg).await;
    assert_eq!(server.addrs.len(), 1, "all port-0 sites share one listener");
    World {
        _backends: backends,
        server,
    }
}

impl World {
    /// Which backend answered `GET path` with Host `host` (with port), or the status.
    async fn who(&self, host: &str, path: &str) -> String {
        let host = self.server.host(host);
        let r = get(self.server.addr(), &host, path).await;
        if r.status != 200 {
            return r.status.as_u16().to_string();
        }
        let j = r.json();
        assert_eq!(header_values(&j, "host"), vec![host]);
        j["backend"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn site_is_chosen_by_host_header() {
    bounded(secs(30), "test", async {
        let w = world().await;
        assert_eq!(w.who("app.test", "/").await, "app");
        assert_eq!(w.who("other.test", "/").await, "other");
        // Host names are case-insensitive.
        assert_eq!(w.who("App.TEST", "/").await, "app");
        // Host without a port works too.
        let r = get(w.server.addr(), "other.test", "/").await;
        assert_eq!(r.json()["backend"], "other");
    })
    .await
}

#[tokio::test]
async fn wildcard_site_matches_exactly_one_label() {
    bounded(secs(30), "test", async {
        let w = world().await;
        assert_eq!(w.who("a.wild.test", "/").await, "wild");
        assert_eq!(w.who("zz-9.wild.test", "/x").await, "wild");
        assert_eq!(w.who("a.b.wild.test", "/").await, "404");
        assert_eq!(w.who("wild.test", "/").await, "404");
    })
    .await
}

#[tokio::test]
async fn exact_host_wins_over_wildcard_whatever_the_order() {
    bounded(secs(30), "test", async {
        let w = world().await;
        assert_eq!(w.who("exact.wild.test", "/").await, "exacthost");
    })
    .await
}

/// The authority of the request target is the host: h2's `:authority`, and
/// HTTP/1.1's absolute form (`GET http://host/path`), where RFC 9112 §3.2.2 says a
/// Host header that disagrees is ignored. Both reach the router the same way; h2
/// itself is served after TLS ALPN, so h2 proper is covered with TLS.
#[tokio::test]
async fn request_target_authority_counts_as_host() {
    bounded(secs(30), "test", async {
        let w = world().await;
        let port = w.server.addr().port();
        for (authority, backend) in [("x.wild.test", "wild"), ("other.test", "other")] {
            let uri = format!("http://{authority}:{port}/absolute?x=1");
            let request = http::Request::get(&uri)
                .header("host", format!("app.test:{port}"))
                .body(empty())
                .unwrap();
            let r = send(w.server.addr(), None, request).await;
            assert_eq!(r.status, 200, "{uri}: {}", r.text());
            let j = r.json();
            assert_eq!(j["backend"], backend, "{uri}");
            assert_eq!(j["path"], "/absolute");
            // The upstream gets origin form and the authority as its Host.
            assert_eq!(j["uri"], "/absolute?x=1");
            assert_eq!(
                header_values(&j, "host"),
                vec![format!("{authority}:{port}")]
            );
        }
    })
    .await
}

/// h2 proper: over TLS (bellhop speaks h2 after ALPN), sites chosen by `:authority`,
/// exact before wildcard, with the authority reaching the HTTP/1.1 upstream as Host.
#[tokio::test]
async fn h2_authority_counts_as_host_over_tls() {
    bounded(secs(30), "test", async {
        let state = TempDir::new("h2");
        let app = Echo::start("app").await;
        let wild = Echo::start("wild").await;
        let exact = Echo::start("exacthost").await;
        let cfg = ConfigBuilder::new()
            .state_dir(state.path())
            .site(https_site("app.localhost").proxy(tcp(app.addr())))
            .site(https_site("*.wild.localhost").proxy(tcp(wild.addr())))
            .site(https_site("exact.wild.localhost").proxy(tcp(exact.addr())))
            .build();
        let server = TestServer::start(cfg).await;
        let https = server.addr();
        let root = internal_root(state.path()).await;
        for (name, backend) in [
            ("app.localhost", "app"),
            ("x.wild.localhost", "wild"),
            ("exact.wild.localhost", "exacthost"),
        ] {
            let mut s = h2_tls(https, name, &root).await;
            let uri = format!("https://{name}:{}/via-h2?q=1", https.port());
            let request = http::Request::get(&uri).body(empty()).unwrap();
            let r = collect(s.send_request(request).await.expect("h2 request")).await;
            assert_eq!(r.status, 200, "{uri}: {}", r.text());
            assert_eq!(r.version, http::Version::HTTP_2);
            let j = r.json();
            assert_eq!(j["backend"], backend, "{uri}");
            assert_eq!(j["uri"], "/via-h2?q=1");
            assert_eq!(
                header_values(&j, "host"),
                vec![format!("{name}:{}", https.port())]
            );
            assert_eq!(header_values(&j, "x-forwarded-proto"), vec!["https"]);
        }
    })
    .await
}

/// A HEAD response carries no content (RFC 9110 §9.3.2). hyper leaves the body
/// out on HTTP/1.1 but sends it on h2, where DATA after HEAD is a protocol error
/// for the client (curl -I: PROTOCOL_ERROR): bellhop's own responses (`respond`,
/// error pages) go out without content, keeping the GET's Content-Length, and a
/// proxied one stays as the backend sent it.
#[tokio::test]
async fn head_over_h2_and_http1_gets_headers_without_content() {
    bounded(secs(30), "test", async {
        let state = TempDir::new("head");
        let app = Echo::start("app").await;
        let mut config = ConfigBuilder::new()
            .state_dir(state.path())
            .site(
                https_site("localhost")
                    .route("/app/*", proxy(tcp(app.addr())))
                    .route(
                        "/big",
                        crate::support::config::respond(200, &"big ".repeat(500)),
                    )
                    .handle(crate::support::config::respond(200, "ok")),
            )
            .build();
        // `/big` is compressed (`encode gzip`): its length is not known for HEAD.
        config.sites[0].routes[1].encode = vec![bellhop::config::Encoding::Gzip];
        let server = TestServer::start(config).await;
        let https = server.addr();
        let root = internal_root(state.path()).await;
        let mut h2 = h2_tls(https, "localhost", &root).await;
        for (host, path, status, length) in [
            ("localhost", "/", 200, Some("2")),
            ("localhost", "/app/x", 200, None),
            // An unknown Host: bellhop's 404 page.
            ("nowhere.test", "/", 404, None),
        ] {
            let uri = format!("https://{host}:{}{path}", https.port());
            let request = http::Request::head(&uri).body(empty()).unwrap();
            let response = h2.send_request(request).await.expect("h2 HEAD");
            let r = collect(response).await;
            assert_eq!(r.status, status, "HEAD {uri}");
            assert!(r.body.is_empty(), "HEAD {uri} got content {:?}", r.text());
            if let Some(length) = length {
                assert_eq!(
                    r.header("content-length").as_deref(),
                    Some(length),
                    "HEAD {uri}"
                );
            }
        }
        let uri = format!("https://localhost:{}/big", https.port());
        let request = http::Request::head(&uri)
            .header("accept-encoding", "gzip")
            .body(empty())
            .unwrap();
        let r = collect(h2.send_request(request).await.expect("h2 HEAD")).await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty(), "HEAD /big got content");
        assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
        assert_eq!(r.header("content-length"), None, "HEAD /big (gzip)");
        // HTTP/1.1 over the same TLS listener says the same.
        let tls =
            crate::support::client::tls_connect(https, "localhost", &root, &[b"http/1.1"]).await;
        let (mut h1, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("h1 handshake");
        tokio::spawn(conn);
        let request = http::Request::head("/")
            .header("host", "localhost")
            .body(empty())
            .unwrap();
        let r = collect(h1.send_request(request).await.expect("h1 HEAD")).await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-length").as_deref(), Some("2"));
        // And the h2 connection is still fine for a GET.
        let uri = format!("https://localhost:{}/", https.port());
        let r = collect(
            h2.send_request(http::Request::get(&uri).body(empty()).unwrap())
                .await
                .expect("GET"),
        )
        .await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    })
    .await
}

#[tokio::test]
async fn path_routes_first_match_wins() {
    bounded(secs(30), "test", async {
        let w = world().await;
        for (path, want) in [
            ("/", "app"),
            ("/api", "api"),
            ("/api/", "api"),
            ("/api/users?id=3", "api"),
            // "/api/*" comes first, so the later "/api/v1/*" never matches.
            ("/api/v1/users", "api"),
            ("/apix", "app"),
            ("/exact", "exact"),
            ("/exact?q=1", "exact"),
            ("/exact/below", "app"),
            ("/exactly", "app"),
        ] {
            assert_eq!(w.who("app.test", path).await, want, "path {path}");
        }
    })
    .await
}

#[tokio::test]
async fn path_and_query_reach_the_backend_unchanged() {
    bounded(secs(30), "test", async {
        let w = world().await;
        let host = w.server.host("app.test");
        let path = "/api/a%20b/c?x=1&y=%2F&z";
        let j = get(w.server.addr(), &host, path).await.json();
        assert_eq!(j["backend"], "api");
        assert_eq!(j["uri"], path);
    })
    .await
}

#[tokio::test]
async fn unknown_host_gets_a_short_plain_text_404() {
    bounded(secs(30), "test", async {
        let w = world().await;
        let r = get(w.server.addr(), &w.server.host("unknown.test"), "/").await;
        assert_eq!(r.status, 404);
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("text/plain"), "content-type {ct:?}");
        assert!(
            !r.body.is_empty() && r.body.len() < 512,
            "body {:?}",
            r.text()
        );
        // The backends saw nothing.
        for b in &w._backends {
            assert_eq!(b.http.stats.requests(), 0);
        }
    })
    .await
}

#[tokio::test]
async fn request_without_host_gets_a_4xx() {
    bounded(secs(30), "test", async {
        let w = world().await;
        let out = raw(w.server.addr(), b"GET / HTTP/1.0\r\n\r\n").await;
        let status: u16 = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {out:?}"));
        assert!((400..500).contains(&status), "got {out:?}");
    })
    .await
}

/// Site-level directives reach the path routes: a site's `rate-limit` applies to a
/// request that a `route` block answers, unless the route says otherwise.
#[tokio::test]
async fn routes_inherit_site_level_directives() {
    bounded(secs(30), "test", async {
        let api = Echo::start("api").await;
        let free = Echo::start("free").await;
        let dir = TempDir::new("inherit");
        let file = dir.write(
            "Proxyfile",
            &format!(
                r#""http://127.0.0.1:0" {{
    rate-limit "1/m" burst=1
    route "/api/*" {{ proxy "{}" }}
    route "/free/*" {{
        proxy "{}"
        rate-limit off
    }}
    respond "site"
}}
"#,
                api.addr(),
                free.addr()
            ),
        );
        let bellhop = crate::support::binary::Bellhop::run_config(&file, &[], 1).await;
        let (addr, host) = (bellhop.addr(), bellhop.addr().to_string());
        assert_eq!(get(addr, &host, "/api/1").await.status, 200);
        let limited = get(addr, &host, "/api/2").await;
        assert_eq!(
            limited.status, 429,
            "the route did not inherit the site's rate-limit"
        );
        assert!(
            limited.header("retry-after").is_some(),
            "429 without Retry-After"
        );
        assert_eq!(api.http.stats.requests(), 1);
        // A route can opt out.
        for i in 0..3 {
            assert_eq!(get(addr, &host, &format!("/free/{i}")).await.status, 200);
        }
    })
    .await
}

#[tokio::test]
async fn rate_limit_behind_a_trusted_proxy_keys_on_the_forwarded_client() {
    bounded(secs(30), "test", async {
        let dir = TempDir::new("limit-xff");
        let file = dir.write(
            "Proxyfile",
            r#"options { trusted-proxies "127.0.0.2/32"; }
"http://127.0.0.1:0" {
    rate-limit "1/m" burst=1
    respond "site"
}
"#,
        );
        let bellhop = crate::support::binary::Bellhop::run_config(&file, &[], 1).await;
        let (addr, host) = (bellhop.addr(), bellhop.addr().to_string());
        let from = |peer: &str, claimed: &str| {
            let request = req("GET", &host, "/")
                .header("x-forwarded-for", claimed)
                .body(empty())
                .unwrap();
            send(addr, Some(peer.parse().unwrap()), request)
        };
        // Behind the trusted proxy, each forwarded client has its own bucket.
        assert_eq!(from("127.0.0.2", "203.0.113.1").await.status, 200);
        assert_eq!(from("127.0.0.2", "203.0.113.1").await.status, 429);
        assert_eq!(from("127.0.0.2", "203.0.113.2").await.status, 200);
        // An untrusted peer's claims change nothing: its own address is the key.
        assert_eq!(from("127.0.0.3", "203.0.113.3").await.status, 200);
        assert_eq!(from("127.0.0.3", "203.0.113.4").await.status, 429);
        // The log names both the peer and the client it answered for.
        let line = bellhop
            .proc
            .wait_line("the log line of the proxied client", secs(5), |l| {
                text_field(l, "client").as_deref() == Some("203.0.113.2")
            })
            .await;
        assert_eq!(text_field(&line, "peer").as_deref(), Some("127.0.0.2"));
    })
    .await
}
