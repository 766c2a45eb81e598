//! Request and response header rewriting: Host kept, X-Forwarded-* set, appended or
//! dropped by trust, hop-by-hop headers removed in both directions.

use std::net::IpAddr;

use crate::support::backends::echo::{header_joined, header_values, Echo};
use crate::support::client::{empty, req, send};
use crate::support::config::{site, tcp, ConfigBuilder};
use crate::support::server::TestServer;
use crate::support::{bounded, secs};

/// Client source addresses: 127.0.0.1 is bellhop's own, so clients use others.
const CLIENT_A: &str = "127.0.0.2";
const CLIENT_B: &str = "127.0.0.3";

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

async fn setup(trusted: Option<&str>) -> (Echo, TestServer) {
    let echo = Echo::start("app").await;
    let mut cfg = ConfigBuilder::new().site(site("app.test").proxy(tcp(echo.addr())));
    if let Some(t) = trusted {
        cfg = cfg.trusted_proxy(t);
    }
    let server = TestServer::start(cfg.build()).await;
    (echo, server)
}

/// The backend saw exactly these `X-Forwarded-For`, `-Proto` and `-Host` values.
fn assert_forwarded(j: &serde_json::Value, for_: &str, proto: &str, host: &str) {
    assert_eq!(header_joined(j, "x-forwarded-for").as_deref(), Some(for_));
    assert_eq!(
        header_joined(j, "x-forwarded-proto").as_deref(),
        Some(proto)
    );
    assert_eq!(header_joined(j, "x-forwarded-host").as_deref(), Some(host));
}

#[tokio::test]
async fn host_header_is_kept_as_the_client_sent_it() {
    bounded(secs(20), "test", async {
        let (_echo, server) = setup(None).await;
        let host = server.host("app.test");
        let r = send(
            server.addr(),
            None,
            req("GET", &host, "/h").body(empty()).unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(header_values(&j, "host"), vec![host]);
        assert_eq!(j["path"], "/h");
        assert_eq!(j["method"], "GET");
    })
    .await
}

#[tokio::test]
async fn x_forwarded_headers_are_set_for_a_direct_client() {
    bounded(secs(20), "test", async {
        let (_echo, server) = setup(None).await;
        let host = server.host("app.test");
        let r = send(
            server.addr(),
            ip(CLIENT_A),
            req("GET", &host, "/").body(empty()).unwrap(),
        )
        .await;
        let j = r.json();
        assert_forwarded(&j, CLIENT_A, "http", &host);
    })
    .await
}

#[tokio::test]
async fn x_forwarded_headers_from_untrusted_peers_are_dropped() {
    bounded(secs(20), "test", async {
        // Nobody is trusted: whatever the client claims is replaced.
        let (_echo, server) = setup(None).await;
        let host = server.host("app.test");
        let request = req("GET", &host, "/")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-for", "198.51.100.4")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.test")
            .header("x-forwarded-port", "443")
            .body(empty())
            .unwrap();
        let j = send(server.addr(), ip(CLIENT_B), request).await.json();
        assert_forwarded(&j, CLIENT_B, "http", &host);
        // bellhop never sets X-Forwarded-Port, so the backend sees none at all
        // (not merely a value other than the client's).
        assert_eq!(
            header_values(&j, "x-forwarded-port"),
            Vec::<String>::new(),
            "X-Forwarded-Port reached the backend: {j}"
        );
    })
    .await
}

#[tokio::test]
async fn x_forwarded_headers_from_trusted_proxies_are_kept_and_appended() {
    bounded(secs(20), "test", async {
        let (_echo, server) = setup(Some("127.0.0.2/32")).await;
        let host = server.host("app.test");
        let claimed = |r: http::request::Builder| {
            r.header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "public.example")
                .body(empty())
                .unwrap()
        };
        // From the trusted proxy: its claims stand, and it is appended to the chain.
        let j = send(server.addr(), ip(CLIENT_A), claimed(req("GET", &host, "/")))
            .await
            .json();
        assert_forwarded(&j, "203.0.113.9, 127.0.0.2", "https", "public.example");
        // The same claims from a peer outside the trusted range are dropped.
        let j = send(server.addr(), ip(CLIENT_B), claimed(req("GET", &host, "/")))
            .await
            .json();
        assert_forwarded(&j, CLIENT_B, "http", &host);
    })
    .await
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    bounded(secs(20), "test", async {
        let (_echo, server) = setup(None).await;
        let host = server.host("app.test");
        let request = req("POST", &host, "/hop")
            .header("connection", "keep-alive, x-hop-a")
            .header("x-hop-a", "must not pass")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("te", "gzip")
            .header("x-end-to-end", "kept")
            .body(crate::support::client::body("payload"))
            .unwrap();
        let r = send(server.addr(), None, request).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        for h in ["x-hop-a", "keep-alive", "proxy-connection", "te"] {
            assert!(
                header_values(&j, h).is_empty(),
                "{h} reached the backend: {j}"
            );
        }
        for v in header_values(&j, "connection") {
            assert!(
                !v.to_ascii_lowercase().contains("x-hop-a"),
                "Connection forwarded as {v:?}"
            );
        }
        assert_eq!(header_values(&j, "x-end-to-end"), vec!["kept"]);
        assert_eq!(j["body"], "payload");
    })
    .await
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_not_forwarded() {
    bounded(secs(20), "test", async {
        let (_echo, server) = setup(None).await;
        let host = server.host("app.test");
        // The echo backend turns each x-echo-set into a response header.
        let request = req("GET", &host, "/hop")
            .header("x-echo-set", "Connection: x-hop-b")
            .header("x-echo-set", "X-Hop-B: must not pass")
            .header("x-echo-set", "Keep-Alive: timeout=5")
            .header("x-echo-set", "Proxy-Connection: keep-alive")
            .header("x-echo-set", "X-End-To-End: kept")
            .body(empty())
            .unwrap();
        let r = send(server.addr(), None, request).await;
        assert_eq!(r.status, 200, "{}", r.text());
        for h in ["x-hop-b", "keep-alive", "proxy-connection"] {
            assert!(
                r.headers.get(h).is_none(),
                "{h} reached the client: {:?}",
                r.headers
            );
        }
        for v in r.headers.get_all("connection") {
            let v = v.to_str().unwrap_or_default().to_ascii_lowercase();
            assert!(!v.contains("x-hop-b"), "Connection forwarded as {v:?}");
        }
        assert_eq!(r.header("x-end-to-end").as_deref(), Some("kept"));
    })
    .await
}
