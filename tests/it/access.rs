//! Who may use a route, with real requests: `allow` / `deny` on the client
//! address (also behind trusted proxies and Cloudflare), `basic-auth` with a
//! hash from `bellhop hash-password`, and `strip-prefix`.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use base64::Engine as _;

use crate::support::backends::echo::{header_joined, Echo};
use crate::support::binary::BELLHOP;
use crate::support::client::{empty, req, send, Reply};
use crate::support::server::TestServer;
use crate::support::{bounded, secs, TempDir};

/// bellhop for `body` (a site block's contents) and optional `options`, on
/// `http://app.test:0`, with `{up}` replaced by an echo backend's address.
async fn serve(options: &str, body: &str) -> (TestServer, Echo) {
    let echo = Echo::start("app").await;
    let text = format!(
        "options {{ {options} }}\n\"http://app.test:0\" {{\n{}\n}}",
        body.replace("{up}", &echo.addr().to_string())
    );
    let text = text.replace("options {  }\n", "");
    let config = bellhop::config::parse(&text, "Proxyfile").unwrap_or_else(|e| panic!("{e:?}"));
    (TestServer::start(config).await, echo)
}

/// `GET path` from source address `from` with extra headers.
async fn get_from(server: &TestServer, from: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = req("GET", "app.test", path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let from: IpAddr = from.parse().unwrap();
    send(server.addr(), Some(from), request.body(empty()).unwrap()).await
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// `bellhop hash-password`, fed the password on standard input.
fn hash_password(password: &str) -> String {
    let mut child = Command::new(BELLHOP)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bellhop hash-password");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("write password");
    drop(stdin);
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    hash
}

#[tokio::test]
async fn allow_and_deny_lists_at_site_and_route_level() {
    bounded(secs(30), "test", async {
        let (server, _echo) = serve(
            "",
            r#"
            deny "127.0.0.9"
            route "/admin/*" {
                allow "127.0.0.2" "127.0.1.0/24"
                proxy "{up}"
            }
            route "/open/*" {
                deny "127.0.0.3"
                allow "127.0.0.0/8"
                proxy "{up}"
            }
            proxy "{up}"
            "#,
        )
        .await;
        let status = |from: &'static str, path: &'static str| {
            let server = &server;
            async move { get_from(server, from, path, &[]).await.status.as_u16() }
        };
        // Route allow list: those and nobody else.
        assert_eq!(status("127.0.0.2", "/admin/x").await, 200);
        assert_eq!(status("127.0.1.77", "/admin").await, 200);
        assert_eq!(status("127.0.0.1", "/admin/x").await, 403);
        // The route's own list replaces the site's: .9 is only denied elsewhere.
        assert_eq!(status("127.0.0.9", "/").await, 403);
        assert_eq!(status("127.0.0.1", "/").await, 200);
        // First match wins: .3 is denied before the /8 allows it.
        assert_eq!(status("127.0.0.3", "/open/x").await, 403);
        assert_eq!(status("127.0.0.4", "/open/x").await, 200);
    })
    .await
}

#[tokio::test]
async fn access_lists_see_the_client_behind_trusted_proxies_and_cloudflare() {
    bounded(secs(30), "test", async {
        let dir = TempDir::new("cf");
        let ranges = dir.write("cf-ips.txt", "# test ranges\n127.0.0.2\n\n::2/128 # v6\n");
        let (server, echo) = serve(
            &format!(
                "trusted-proxies \"127.0.0.3\" cloudflare=\"{}\"",
                ranges.display()
            ),
            r#"
            allow "203.0.113.5"
            proxy "{up}"
            "#,
        )
        .await;
        let cf = [("cf-connecting-ip", "203.0.113.5")];
        // From the Cloudflare peer, CF-Connecting-IP is the client.
        let r = get_from(&server, "127.0.0.2", "/", &cf).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            header_joined(&r.json(), "cf-connecting-ip").as_deref(),
            Some("203.0.113.5")
        );
        // The same header from anyone else is a claim: 403, and not passed on.
        assert_eq!(get_from(&server, "127.0.0.1", "/", &cf).await.status, 403);
        // A trusted proxy that is not Cloudflare: X-Forwarded-For rules, not CF-Connecting-IP.
        let xff = [
            ("x-forwarded-for", "203.0.113.5"),
            ("cf-connecting-ip", "198.51.100.1"),
        ];
        assert_eq!(get_from(&server, "127.0.0.3", "/", &xff).await.status, 200);
        let xff = [
            ("x-forwarded-for", "198.51.100.1"),
            ("cf-connecting-ip", "203.0.113.5"),
        ];
        assert_eq!(get_from(&server, "127.0.0.3", "/", &xff).await.status, 403);
        drop(echo);
    })
    .await
}

#[tokio::test]
async fn untrusted_cf_connecting_ip_is_not_forwarded() {
    bounded(secs(30), "test", async {
        let (server, _echo) = serve("", r#"proxy "{up}""#).await;
        let r = get_from(
            &server,
            "127.0.0.1",
            "/",
            &[("cf-connecting-ip", "6.6.6.6")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(header_joined(&r.json(), "cf-connecting-ip"), None);
    })
    .await
}

#[tokio::test]
async fn basic_auth_with_a_hash_from_hash_password() {
    bounded(secs(60), "test", async {
        let hash = hash_password("correct horse");
        let bcrypt = bcrypt_hash();
        let (server, _echo) = serve(
            "",
            &format!(
                r#"
                basic-auth "alice" "{hash}" realm="staff"
                basic-auth "bob" "{bcrypt}"
                route "/health" {{
                    basic-auth off
                    proxy "{{up}}"
                }}
                route "/admin/*" {{ proxy "{{up}}" }}
                proxy "{{up}}"
                "#
            ),
        )
        .await;
        let get = |from: &'static str, path: &'static str, auth: Option<String>| {
            let server = &server;
            async move {
                let header = auth.map(|a| ("authorization", a));
                let headers: Vec<(&str, &str)> =
                    header.iter().map(|(n, v)| (*n, v.as_str())).collect();
                get_from(server, from, path, &headers).await
            }
        };
        let r = get("127.0.0.1", "/admin/x", None).await;
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Basic realm=\"staff\", charset=\"UTF-8\"")
        );
        let r = get("127.0.0.1", "/admin/x", Some(basic("alice:correct horse"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // The credentials are bellhop's: the backend never sees them.
        assert_eq!(header_joined(&r.json(), "authorization"), None);
        let r = get("127.0.0.1", "/admin/x", Some(basic("bob:hunter2"))).await;
        assert_eq!(r.status, 200, "bcrypt user");
        for wrong in ["alice:correct horsE", "mallory:correct horse", "alice", ""] {
            let r = get("127.0.0.1", "/admin/x", Some(basic(wrong))).await;
            assert_eq!(r.status, 401, "{wrong}");
        }
        // Routes inherit the site's users; `basic-auth off` opens one.
        assert_eq!(get("127.0.0.1", "/", None).await.status, 401);
        assert_eq!(get("127.0.0.1", "/health", None).await.status, 200);
    })
    .await
}

#[tokio::test]
async fn failed_passwords_run_into_429() {
    bounded(secs(60), "test", async {
        let hash = bcrypt_hash();
        let (server, _echo) = serve(
            "",
            &format!("basic-auth \"bob\" \"{hash}\"\nproxy \"{{up}}\""),
        )
        .await;
        let wrong = basic("bob:wrong");
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let r = get_from(&server, "127.0.0.5", "/", &[("authorization", &wrong)]).await;
            statuses.push(r.status.as_u16());
        }
        assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
        assert_eq!(&statuses[10..], &[429; 2], "{statuses:?}");
        // Another client still gets in.
        let right = basic("bob:hunter2");
        let r = get_from(&server, "127.0.0.6", "/", &[("authorization", &right)]).await;
        assert_eq!(r.status, 200);
    })
    .await
}

#[tokio::test]
async fn strip_prefix_hands_the_upstream_the_rest_of_the_path() {
    bounded(secs(30), "test", async {
        let (server, _echo) = serve(
            "",
            r#"
            route "/api/*" "/v2/api/*" strip-prefix=#true { proxy "{up}" }
            proxy "{up}"
            "#,
        )
        .await;
        for (path, want, prefix) in [
            ("/api/users?x=1", "/users?x=1", Some("/api")),
            ("/api", "/", Some("/api")),
            ("/api/", "/", Some("/api")),
            ("/v2/api/a/b", "/a/b", Some("/v2/api")),
            ("/api/../other", "/other", None),
        ] {
            let r = get_from(
                &server,
                "127.0.0.1",
                path,
                &[("x-forwarded-prefix", "/forged")],
            )
            .await;
            let j = r.json();
            assert_eq!(j["uri"], want, "{path}");
            assert_eq!(
                header_joined(&j, "x-forwarded-prefix").as_deref(),
                prefix,
                "{path}"
            );
        }
    })
    .await
}

/// `rewrite="/v2/*"` swaps the prefix (no X-Forwarded-Prefix), an exact target
/// replaces every matched path, and `files` looks the rewritten path up.
#[tokio::test]
async fn rewrite_swaps_a_prefix_or_replaces_the_path() {
    bounded(secs(30), "test", async {
        let dir = TempDir::new("rewrite");
        dir.write("about.html", "about page");
        let (server, _echo) = serve(
            "",
            &format!(
                r#"
            route "/old/*" rewrite="/v2/*" {{ proxy "{{up}}" }}
            route "/app/*" rewrite="/index.html" {{ proxy "{{up}}" }}
            route "/about" rewrite="/about.html" {{ files "{}" }}
            proxy "{{up}}"
            "#,
                dir.path().display()
            ),
        )
        .await;
        for (path, want) in [
            ("/old/users?x=1", "/v2/users?x=1"),
            ("/old", "/v2"),
            ("/old/", "/v2/"),
            ("/older", "/older"),
            ("/app/deep/link?tab=2", "/index.html?tab=2"),
            ("/old/a/../b", "/v2/b"),
        ] {
            let r = get_from(&server, "127.0.0.1", path, &[]).await;
            let j = r.json();
            assert_eq!(j["uri"], want, "{path}");
            assert_eq!(header_joined(&j, "x-forwarded-prefix"), None, "{path}");
        }
        let r = get_from(&server, "127.0.0.1", "/about", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "about page");
    })
    .await
}

/// A bcrypt hash of `hunter2` (cost 4: tests need no strength).
fn bcrypt_hash() -> String {
    bcrypt::hash("hunter2", 4).expect("bcrypt")
}
