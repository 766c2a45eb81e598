//! Path normalization against a hostile corpus: every spelling of a dot
//! segment, `//`, encoded separators, overlong UTF-8, NUL and backslashes.
//! Whatever the spelling, a request either reaches the route its normalized
//! path names (and the backend receives exactly that path) or gets a 400; no
//! spelling reaches a protected route's backend past its `allow` list or its
//! `basic-auth`, and `/api/../style.css` is a file, not an API call.

use crate::support::backends::echo::Echo;
use crate::support::client::raw;
use crate::support::server::TestServer;
use crate::support::{bounded, secs, TempDir};

/// ```text
/// "http://app.test:0" {
///     route "/api/*"    { proxy API }
///     route "/admin/*"  { allow "192.0.2.1"; proxy ADMIN }        // nobody on 127/8
///     route "/secret/*" { basic-auth "alice" HASH; proxy ADMIN }
///     route "/public/*" { proxy PUBLIC }
///     files ROOT                                                 // style.css
/// }
/// ```
struct World {
    server: TestServer,
    _backends: [Echo; 3],
    _root: TempDir,
}

async fn world() -> World {
    let api = Echo::start("api").await;
    let admin = Echo::start("admin").await;
    let public = Echo::start("public").await;
    let root = TempDir::new("paths");
    root.write("style.css", "body{}");
    let hash = bellhop::hash_password(b"pw").unwrap();
    let text = format!(
        r#""http://app.test:0" {{
            route "/api/*" {{ proxy "{api}" }}
            route "/admin/*" {{
                allow "192.0.2.1"
                proxy "{admin}"
            }}
            route "/secret/*" {{
                basic-auth "alice" "{hash}"
                proxy "{admin}"
            }}
            route "/public/*" {{ proxy "{public}" }}
            files "{root}"
        }}"#,
        api = api.addr(),
        admin = admin.addr(),
        public = public.addr(),
        root = root.path().display(),
    );
    let config = bellhop::config::parse(&text, "Proxyfile").unwrap_or_else(|e| panic!("{e:?}"));
    World {
        server: TestServer::start(config).await,
        _backends: [api, admin, public],
        _root: root,
    }
}

/// What answered a raw `GET target`: the status line's code and the body.
async fn get(w: &World, target: &str) -> (u16, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
    let response = raw(w.server.addr(), request.as_bytes()).await;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{target}: no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}

/// The backend's name and the path it received, if a backend answered.
fn echoed(body: &str) -> Option<(String, String)> {
    let start = body.find('{')?;
    let json: serde_json::Value = serde_json::from_str(&body[start..body.rfind('}')? + 1]).ok()?;
    Some((
        json["backend"].as_str()?.into(),
        json["uri"].as_str()?.into(),
    ))
}

#[tokio::test]
async fn dot_segments_reach_the_route_they_resolve_to() {
    bounded(secs(30), "test", async {
        let w = world().await;
        for target in [
            "/api/../style.css",
            "/api/%2e%2e/style.css",
            "/api/%2E%2E/style.css",
            "/api/.%2E/style.css",
            "/api/%2E./style.css",
            "/api/./../style.css",
            "//api/../style.css",
            "/api/x/../../style.css",
        ] {
            let (status, body) = get(&w, target).await;
            assert_eq!((status, body.as_str()), (200, "body{}"), "{target}");
        }
        // What the API backend receives is the normalized path, query untouched.
        for (target, want) in [
            ("/api/./v1/../users?q=/../x", "/api/users?q=/../x"),
            ("/api//users", "/api/users"),
            ("/public/../api/%75sers/", "/api/users/"),
            ("/api/caf%c3%a9/a%2fb", "/api/caf%C3%A9/a%2Fb"),
            ("/api/..", "/"),
        ] {
            let (status, body) = get(&w, target).await;
            if want == "/" {
                // `/api/..` is `/`: the files root, not the API.
                assert_ne!(echoed(&body).map(|e| e.0), Some("api".into()), "{target}");
                continue;
            }
            assert_eq!(status, 200, "{target}: {body}");
            assert_eq!(echoed(&body), Some(("api".into(), want.into())), "{target}");
        }
    })
    .await
}

#[tokio::test]
async fn no_spelling_gets_past_an_allow_list_or_basic_auth() {
    bounded(secs(30), "test", async {
        let w = world().await;
        for protected in ["admin", "secret"] {
            for dots in [
                "..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "./..", "x/../..", "%2e%2e/.",
            ] {
                for target in [
                    format!("/public/{dots}/{protected}/x"),
                    format!("/public//{dots}//{protected}/x"),
                    format!("/api/{dots}/{protected}/x?y=1"),
                ] {
                    let (status, body) = get(&w, &target).await;
                    let want = if protected == "admin" { 403 } else { 401 };
                    assert_eq!(status, want, "{target}: {body}");
                }
            }
            // Forms that cannot be given one meaning are refused outright.
            for target in [
                format!("/public/..%2f{protected}/x"),
                format!("/public/%2e%2e%2F{protected}/x"),
                format!("/public/..%5c{protected}/x"),
                format!("/public/..;/{protected}/x"),
                format!("/public/%c0%ae%c0%ae/{protected}/x"),
                format!("/public/%e0%80%ae%e0%80%ae/{protected}/x"),
                format!("/public/%00/../{protected}/x"),
                format!("/public/..\\{protected}/x"),
            ] {
                let (status, body) = get(&w, &target).await;
                assert_eq!(status, 400, "{target}: {body}");
            }
        }
    })
    .await
}

#[tokio::test]
async fn encoded_slashes_stay_inside_their_segment() {
    bounded(secs(30), "test", async {
        let w = world().await;
        // `%2F` is not a separator: `/public%2F..%2Fadmin` is one segment, no route.
        let (status, body) = get(&w, "/public%2Fadmin%2Fx").await;
        assert_eq!(status, 404, "{body}");
        let (status, body) = get(&w, "/public/a%2Fb").await;
        assert_eq!(status, 200);
        assert_eq!(
            echoed(&body),
            Some(("public".into(), "/public/a%2Fb".into()))
        );
        // Matching is case-sensitive: `/API/x` is not the API.
        let (status, _) = get(&w, "/API/x").await;
        assert_eq!(status, 404);
        // And `"/api/*"` takes `/api` itself.
        let (_, body) = get(&w, "/api").await;
        assert_eq!(echoed(&body), Some(("api".into(), "/api".into())));
    })
    .await
}

#[tokio::test]
async fn paths_not_starting_with_a_slash_are_refused() {
    bounded(secs(30), "test", async {
        let w = world().await;
        let (status, _) = get(&w, "*").await;
        assert_eq!(status, 400, "GET * is not OPTIONS *");
        let request = "OPTIONS * HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        let response = raw(w.server.addr(), request.as_bytes()).await;
        assert!(!response.starts_with("HTTP/1.1 400"), "{response}");
    })
    .await
}
