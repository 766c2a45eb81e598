//! Every upstream form: `ip:port`, `localhost:port` (resolved), unix socket, several
//! upstreams (balancing), and the Proxyfile spellings (bare port, quoted, `http://`,
//! `unix:`) through the real binary. Also: upstream connections are pooled.

use crate::support::backends::echo::Echo;
use crate::support::binary::Bellhop;
use crate::support::client::{empty, get, h1, req, send};
use crate::support::config::{named, site, tcp, unix, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, secs, TempDir};

async fn one_site(upstream: bellhop::config::Upstream) -> TestServer {
    TestServer::start(
        ConfigBuilder::new()
            .site(site("127.0.0.1").proxy(upstream))
            .build(),
    )
    .await
}

#[tokio::test]
async fn ip_and_port_upstream() {
    bounded(secs(20), "test", async {
        let echo = Echo::start("ip").await;
        let server = one_site(tcp(echo.addr())).await;
        let r = get(server.addr(), &server.addr().to_string(), "/x").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["backend"], "ip");
    })
    .await
}

#[tokio::test]
async fn localhost_name_upstream_reaches_an_ipv4_only_backend() {
    bounded(secs(20), "test", async {
        // "localhost" may resolve to ::1 first; the backend listens on 127.0.0.1 only.
        let echo = Echo::start("localhost").await;
        let server = one_site(named("localhost", echo.addr().port())).await;
        let r = get(server.addr(), &server.addr().to_string(), "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["backend"], "localhost");
    })
    .await
}

#[tokio::test]
async fn unix_socket_upstream() {
    bounded(secs(20), "test", async {
        let dir = TempDir::new("unix");
        let path = dir.path().join("app.sock");
        let _echo = Echo::start_unix("unix", &path).await;
        let server = one_site(unix(&path)).await;
        let host = server.addr().to_string();
        let r = send(
            server.addr(),
            None,
            req("POST", &host, "/u?q=1")
                .body(crate::support::client::body("over unix"))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["backend"], "unix");
        assert_eq!(j["uri"], "/u?q=1");
        assert_eq!(j["body"], "over unix");
        assert_eq!(j["peer"], "unix");
    })
    .await
}

#[tokio::test]
async fn several_upstreams_share_the_load() {
    bounded(secs(30), "test", async {
        let a = Echo::start("a").await;
        let b = Echo::start("b").await;
        let handler =
            crate::support::config::proxy_with(vec![tcp(a.addr()), tcp(b.addr())], |_| {});
        let server = TestServer::start(
            ConfigBuilder::new()
                .site(site("127.0.0.1").handle(handler))
                .build(),
        )
        .await;
        for _ in 0..20 {
            let r = get(server.addr(), &server.addr().to_string(), "/").await;
            assert_eq!(r.status, 200);
        }
        let (na, nb) = (a.http.stats.requests(), b.http.stats.requests());
        assert_eq!(na + nb, 20);
        assert!(
            na > 0 && nb > 0,
            "one upstream got everything: a={na} b={nb}"
        );
    })
    .await
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    bounded(secs(20), "test", async {
        let echo = Echo::start("pool").await;
        // Idle upstream connections are pooled per worker thread, and each
        // client connection lands on any worker: with one worker the count
        // of upstream connections is exact.
        let server = TestServer::start(
            ConfigBuilder::new()
                .options(|o| o.workers = std::num::NonZeroUsize::new(1))
                .site(site("127.0.0.1").proxy(tcp(echo.addr())))
                .build(),
        )
        .await;
        let host = server.addr().to_string();
        // Sequential requests, each on its own client connection.
        for i in 0..10 {
            let r = send(
                server.addr(),
                None,
                req("GET", &host, &format!("/{i}")).body(empty()).unwrap(),
            )
            .await;
            assert_eq!(r.status, 200);
        }
        assert_eq!(echo.http.stats.requests(), 10);
        assert_eq!(
            echo.http.stats.accepted(),
            1,
            "10 sequential requests should reuse one pooled upstream connection"
        );
        // And on one client keep-alive connection.
        let mut c = h1(server.addr(), None).await;
        for i in 0..5 {
            let resp = c
                .send_request(req("GET", &host, &format!("/k{i}")).body(empty()).unwrap())
                .await
                .expect("request");
            let r = crate::support::client::collect(resp).await;
            assert_eq!(r.json()["path"], format!("/k{i}"));
        }
        assert_eq!(echo.http.stats.accepted(), 1);
    })
    .await
}

/// Every Proxyfile spelling of an upstream, one route each, through the binary.
#[tokio::test]
async fn proxyfile_upstream_forms_all_forward() {
    bounded(secs(60), "test", async {
        let dir = TempDir::new("forms");
        let sock = dir.path().join("app.sock");
        let bare = Echo::start("bare").await;
        let quoted = Echo::start("quoted").await;
        let name = Echo::start("name").await;
        let quoted_name = Echo::start("quoted-name").await;
        let url = Echo::start("url").await;
        let _unix = Echo::start_unix("unix", &sock).await;
        let proxyfile = format!(
            r#""http://127.0.0.1:0" {{
    route "/bare/*" {{ proxy {} }}
    route "/quoted/*" {{ proxy "127.0.0.1:{}" }}
    route "/name/*" {{ proxy localhost:{} }}
    route "/quoted-name/*" {{ proxy "localhost:{}" }}
    route "/url/*" {{ proxy "http://127.0.0.1:{}" }}
    route "/unix/*" {{ proxy "unix:{}" }}
    respond "no route" status=418
}}
"#,
            bare.addr().port(),
            quoted.addr().port(),
            name.addr().port(),
            quoted_name.addr().port(),
            url.addr().port(),
            sock.display()
        );
        let file = dir.write("Proxyfile", &proxyfile);
        let bellhop = Bellhop::run_config(&file, &[], 1).await;
        let host = bellhop.addr().to_string();
        for form in ["bare", "quoted", "name", "quoted-name", "url", "unix"] {
            let r = get(bellhop.addr(), &host, &format!("/{form}/x")).await;
            assert_eq!(r.status, 200, "{form}: {}", r.text());
            let j = r.json();
            assert_eq!(j["backend"], form);
            assert_eq!(j["path"], format!("/{form}/x"));
        }
        let r = get(bellhop.addr(), &host, "/elsewhere").await;
        assert_eq!(r.status, 418);
        assert_eq!(r.text().trim(), "no route");
    })
    .await
}

#[tokio::test]
async fn one_shot_proxy_command_needs_no_file() {
    bounded(secs(30), "test", async {
        let echo = Echo::start("oneshot").await;
        let bellhop = Bellhop::proxy(&echo.addr().to_string(), &[]).await;
        let r = get(bellhop.addr(), &bellhop.addr().to_string(), "/one?shot").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["backend"], "oneshot");
        assert_eq!(j["uri"], "/one?shot");
    })
    .await
}
