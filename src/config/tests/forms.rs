//! Every normative Proxyfile form parses into the typed values it promises.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::parse_ok;
use crate::config::directives::HSTS_DEFAULT;
use crate::config::{
    defaults, AcmeChallenge, Encoding, Handler, HostPattern, IpNet, Options, PathPattern,
    ProxyConfig, RateLimit, Route, Scheme, Site, SiteAddress, TlsMode, Upstream,
};

/// The normative block of DESIGN.md, verbatim (the build must not read /work/shared).
const DESIGN_EXAMPLE: &str = r#"
options {                          // all optional
    email "ops@example.com"        // ACME account contact
    acme-ca "https://acme-v02.api.letsencrypt.org/directory"  // default; "staging" = LE staging
    acme-ca-root "/path/root.pem"  // extra root to trust for the ACME server's HTTPS (tests: Pebble)
    state-dir "/var/lib/bellhop"   // account, certificates, internal CA
    http-port 80
    https-port 443
    admin "127.0.0.1:2019"         // local-only admin/metrics listener; off when absent
    trusted-proxies "10.0.0.0/8"   // peers whose X-Forwarded-For is believed
}

app.example.com www.app.example.com {      // site: first address is the node name, more as arguments
    proxy localhost:8000 {                 // upstream: host:port, a bare port (= 127.0.0.1),
        idle-timeout "24h"                 //   "ip:port", "unix:/path.sock", "http://host:port";
    }                                      //   several upstreams = load balancing
    route "/api/*" { proxy 3000 }          // path routes, first match wins, site-level directives inherited
    rate-limit "20/s" burst=40             // per client IP (IPv6: per /64), 429 + Retry-After
}

"http://127.0.0.1:18080" { proxy 9000 }    // explicit http:// address: plain HTTP, no certificate
"https://127.0.0.1:8443" {                  // explicit https:// address with its own port
    tls "/etc/ssl/site.pem" "/etc/ssl/site.key"   // given certificate chain and key, no ACME
    proxy 9000
}
localhost { tls internal; proxy 8000 }     // bellhop's own local CA (default for localhost and IPs)

example.org www.example.org {
    encode zstd gzip                       // preference order
    route "/api/*" { proxy "spark.tailnet.local:3000" }
    files "/srv/site"                      // static files; index.html for directories
}
old.example.org { redirect "https://example.org{uri}" code=301 }
"#;

/// The annotated example shipped at the repository root.
pub(super) const PROXYFILE_EXAMPLE: &str = include_str!("../../../Proxyfile.example");

pub(super) fn design_example() -> &'static str {
    DESIGN_EXAMPLE
}

fn tcp(host: &str, port: u16) -> Upstream {
    Upstream::Tcp {
        host: host.into(),
        port,
    }
}

fn https(name: &str) -> SiteAddress {
    SiteAddress {
        scheme: Scheme::Https,
        host: HostPattern::Name(name.into()),
        port: None,
    }
}

pub(super) fn proxy(upstreams: Vec<Upstream>) -> Handler {
    Handler::Proxy(ProxyConfig::new(upstreams))
}

fn route(path: PathPattern, handler: Handler) -> Route {
    Route::new(path, handler)
}

/// The only site of a one-site config.
fn only_site(src: &str) -> Site {
    let mut config = parse_ok(src);
    assert_eq!(config.sites.len(), 1, "{src}");
    config.sites.remove(0)
}

/// The handler of a one-site, one-route config.
fn only_handler(src: &str) -> Handler {
    let site = only_site(src);
    assert_eq!(site.routes.len(), 1, "{src}");
    site.routes[0].handler.clone()
}

#[test]
fn design_example_options() {
    let config = parse_ok(DESIGN_EXAMPLE);
    let o = &config.options;
    assert_eq!(o.email.as_deref(), Some("ops@example.com"));
    assert_eq!(o.acme_ca, defaults::ACME_CA);
    assert_eq!(o.acme_ca_root, Some(PathBuf::from("/path/root.pem")));
    assert_eq!(o.state_dir, PathBuf::from("/var/lib/bellhop"));
    assert_eq!((o.http_port, o.https_port), (80, 443));
    assert_eq!(o.admin, Some(SocketAddr::from(([127, 0, 0, 1], 2019))));
    assert_eq!(
        o.trusted_proxies,
        vec![IpNet {
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
            prefix: 8
        }]
    );
    assert_eq!(o.grace_period, defaults::SHUTDOWN_GRACE);
    assert_eq!(o.client_header_timeout, defaults::CLIENT_HEADER_TIMEOUT);
    assert_eq!(o.workers, None);
    assert_eq!(config.sites.len(), 6);
}

#[test]
fn design_example_app_site() {
    let config = parse_ok(DESIGN_EXAMPLE);
    let app = &config.sites[0];
    assert_eq!(
        app.addresses,
        vec![https("app.example.com"), https("www.app.example.com")]
    );
    assert_eq!(app.tls, TlsMode::Auto);
    assert_eq!(app.hsts, None);
    let limit = Some(RateLimit {
        shared: false,
        per_second: 20.0,
        burst: 40,
    });
    let mut main = ProxyConfig::new(vec![tcp("localhost", 8000)]);
    main.idle_timeout = Duration::from_secs(24 * 3600);
    assert_eq!(
        app.routes,
        vec![
            // The route inherits the site's rate limit, though written before it.
            Route {
                rate_limit: limit,
                ..route(
                    PathPattern::Prefix("/api".into()),
                    proxy(vec![tcp("127.0.0.1", 3000)])
                )
            },
            Route {
                rate_limit: limit,
                ..route(PathPattern::Any, Handler::Proxy(main))
            },
        ]
    );
}

#[test]
fn design_example_explicit_schemes_and_tls() {
    let config = parse_ok(DESIGN_EXAMPLE);
    let plain = &config.sites[1];
    assert_eq!(
        plain.addresses,
        vec![SiteAddress {
            scheme: Scheme::Http,
            host: HostPattern::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: Some(18080)
        }]
    );
    assert_eq!(
        plain.routes,
        vec![route(PathPattern::Any, proxy(vec![tcp("127.0.0.1", 9000)]))]
    );

    let given = &config.sites[2];
    assert_eq!(
        given.addresses,
        vec![SiteAddress {
            scheme: Scheme::Https,
            host: HostPattern::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: Some(8443)
        }]
    );
    assert_eq!(
        given.tls,
        TlsMode::Files {
            cert: "/etc/ssl/site.pem".into(),
            key: "/etc/ssl/site.key".into()
        }
    );

    let local = &config.sites[3];
    assert_eq!(local.addresses, vec![https("localhost")]);
    assert_eq!(local.tls, TlsMode::Internal);
    assert_eq!(
        local.routes,
        vec![route(PathPattern::Any, proxy(vec![tcp("127.0.0.1", 8000)]))]
    );
}

#[test]
fn design_example_static_site_and_redirect() {
    let config = parse_ok(DESIGN_EXAMPLE);
    let static_site = &config.sites[4];
    assert_eq!(
        static_site.addresses,
        vec![https("example.org"), https("www.example.org")]
    );
    let encode = vec![Encoding::Zstd, Encoding::Gzip];
    assert_eq!(
        static_site.routes,
        vec![
            Route {
                encode: encode.clone(),
                ..route(
                    PathPattern::Prefix("/api".into()),
                    proxy(vec![tcp("spark.tailnet.local", 3000)])
                )
            },
            Route {
                encode,
                ..route(
                    PathPattern::Any,
                    Handler::Files {
                        root: "/srv/site".into(),
                        fallback: None,
                    }
                )
            },
        ]
    );

    let old = &config.sites[5];
    assert_eq!(
        old.routes,
        vec![route(
            PathPattern::Any,
            Handler::Redirect {
                to: "https://example.org{uri}".into(),
                code: 301
            }
        )]
    );
}

#[test]
fn one_line_config() {
    let config = parse_ok("app.example.com { proxy localhost:8000 }");
    assert_eq!(config.options, Options::default());
    assert_eq!(
        config.sites,
        vec![Site {
            addresses: vec![https("app.example.com")],
            tls: TlsMode::Auto,
            hsts: None,
            routes: vec![route(PathPattern::Any, proxy(vec![tcp("localhost", 8000)]))],
            bind: None,
            log: None,
        }]
    );
}

#[test]
fn proxyfile_example_parses() {
    let config = parse_ok(PROXYFILE_EXAMPLE);
    assert!(!config.sites.is_empty());
}

#[test]
fn proxy_settings_and_upstream_forms() {
    let handler = only_handler(
        r#"a.example.com {
            proxy 8000 localhost:8001 "127.0.0.1:8002" "[::1]:8003" "unix:/run/app.sock" "http://backend:8004" {
                idle-timeout "1h"
                header-timeout "30s"
                connect-timeout "2s"
                pool-idle-timeout "3s"
            }
        }"#,
    );
    let Handler::Proxy(p) = handler else {
        panic!("expected proxy, got {handler:?}")
    };
    assert_eq!(
        p.upstreams,
        vec![
            tcp("127.0.0.1", 8000),
            tcp("localhost", 8001),
            tcp("127.0.0.1", 8002),
            tcp("::1", 8003),
            Upstream::Unix {
                path: "/run/app.sock".into()
            },
            tcp("backend", 8004),
        ]
    );
    assert_eq!(p.idle_timeout, Duration::from_secs(3600));
    assert_eq!(p.header_timeout, Duration::from_secs(30));
    assert_eq!(p.connect_timeout, Duration::from_secs(2));
    assert_eq!(p.pool_idle_timeout, Duration::from_secs(3));
}

#[test]
fn proxy_defaults() {
    let Handler::Proxy(p) = only_handler("a.example.com { proxy 8000 }") else {
        panic!("expected proxy")
    };
    assert_eq!(p.idle_timeout, defaults::UPGRADE_IDLE_TIMEOUT);
    assert_eq!(p.header_timeout, defaults::UPSTREAM_HEADER_TIMEOUT);
    assert_eq!(p.connect_timeout, defaults::UPSTREAM_CONNECT_TIMEOUT);
    assert_eq!(p.pool_idle_timeout, defaults::UPSTREAM_POOL_IDLE_TIMEOUT);
}

#[test]
fn routes_first_match_and_inheritance() {
    let site = only_site(
        r#"a.example.com {
            rate-limit "10/s"
            encode gzip
            route "/ws" { proxy 9000; rate-limit off }
            route "/api/*" "/graphql" { rate-limit "100/m" burst=5; encode zstd }
            route "/static/*" { files "/srv/static"; encode off }
            proxy 8000
        }"#,
    );
    let site_limit = Some(RateLimit {
        shared: false,
        per_second: 10.0,
        burst: 10,
    });
    let api_limit = Some(RateLimit {
        shared: false,
        per_second: 100.0 / 60.0,
        burst: 5,
    });
    let main = proxy(vec![tcp("127.0.0.1", 8000)]);
    let expected = vec![
        Route {
            rate_limit: None,
            encode: vec![Encoding::Gzip],
            ..route(
                PathPattern::Exact("/ws".into()),
                proxy(vec![tcp("127.0.0.1", 9000)]),
            )
        },
        Route {
            rate_limit: api_limit,
            encode: vec![Encoding::Zstd],
            ..route(PathPattern::Prefix("/api".into()), main.clone())
        },
        Route {
            rate_limit: api_limit,
            encode: vec![Encoding::Zstd],
            ..route(PathPattern::Exact("/graphql".into()), main.clone())
        },
        Route {
            rate_limit: site_limit,
            encode: vec![],
            ..route(
                PathPattern::Prefix("/static".into()),
                Handler::Files {
                    root: "/srv/static".into(),
                    fallback: None,
                },
            )
        },
        Route {
            rate_limit: site_limit,
            encode: vec![Encoding::Gzip],
            ..route(PathPattern::Any, main)
        },
    ];
    assert_eq!(site.routes, expected);
}

#[test]
fn routes_without_site_handler_get_404_catch_all() {
    let site = only_site(r#"a.example.com { route "/api/*" { proxy 3000 } }"#);
    assert_eq!(site.routes.len(), 2);
    assert_eq!(
        site.routes[1],
        route(
            PathPattern::Any,
            Handler::Respond {
                status: 404,
                body: "Not Found".into(),
                content_type: None,
            }
        )
    );
}

#[test]
fn rate_limit_burst_defaults_to_one_second() {
    let limit = |src: &str| only_site(src).routes[0].rate_limit;
    let case = |rate: &str| format!("a.example.com {{ proxy 1; rate-limit \"{rate}\" }}");
    assert_eq!(limit(&case("20/s")).map(|l| l.burst), Some(20));
    assert_eq!(limit(&case("90/m")).map(|l| l.burst), Some(2));
    assert_eq!(limit(&case("30/h")).map(|l| l.burst), Some(1));
    assert_eq!(
        limit(&case("30/h")).map(|l| l.per_second),
        Some(30.0 / 3600.0)
    );
}

#[test]
fn tls_forms() {
    let tls = |src: &str| only_site(src).tls;
    assert_eq!(
        tls(r#"a.example.com { tls challenge="http-01"; proxy 1 }"#),
        TlsMode::Acme {
            challenge: AcmeChallenge::Http01
        }
    );
    assert_eq!(
        tls(r#"a.example.com { tls challenge="tls-alpn-01"; proxy 1 }"#),
        TlsMode::Acme {
            challenge: AcmeChallenge::TlsAlpn01
        }
    );
    assert_eq!(
        tls("a.example.com { tls internal; proxy 1 }"),
        TlsMode::Internal
    );
    assert_eq!(
        tls(r#"a.example.com { tls "cert.pem" "key.pem"; proxy 1 }"#),
        TlsMode::Files {
            cert: "cert.pem".into(),
            key: "key.pem".into()
        }
    );
    // Wildcards and host-less HTTPS work with a certificate bellhop doesn't need ACME for.
    assert_eq!(
        tls("*.example.com { tls internal; proxy 1 }"),
        TlsMode::Internal
    );
    assert_eq!(tls("*.localhost { proxy 1 }"), TlsMode::Auto);
    assert_eq!(
        tls(r#""https://:8443" { tls "c.pem" "k.pem"; proxy 1 }"#),
        TlsMode::Files {
            cert: "c.pem".into(),
            key: "k.pem".into()
        }
    );
}

#[test]
fn hsts_forms() {
    assert_eq!(
        only_site("a.example.com { hsts; proxy 1 }").hsts,
        Some(HSTS_DEFAULT)
    );
    assert_eq!(HSTS_DEFAULT, Duration::from_secs(365 * 86_400));
    assert_eq!(
        only_site("a.example.com { hsts \"180d\"; proxy 1 }").hsts,
        Some(Duration::from_secs(180 * 86_400))
    );
}

#[test]
fn handler_forms() {
    assert_eq!(
        only_handler(r#"a.example.com { redirect "/new" }"#),
        Handler::Redirect {
            to: "/new".into(),
            code: defaults::REDIRECT_CODE
        }
    );
    assert_eq!(
        only_handler(r#"a.example.com { respond "hello" }"#),
        Handler::Respond {
            status: 200,
            body: "hello".into(),
            content_type: None,
        }
    );
    assert_eq!(
        only_handler(r#"a.example.com { respond "gone" status=410 }"#),
        Handler::Respond {
            status: 410,
            body: "gone".into(),
            content_type: None,
        }
    );
    assert_eq!(
        only_handler("a.example.com { respond status=204 }"),
        Handler::Respond {
            status: 204,
            body: String::new(),
            content_type: None,
        }
    );
    assert_eq!(
        only_handler(r#"a.example.com { files "/srv/site" }"#),
        Handler::Files {
            root: "/srv/site".into(),
            fallback: None,
        }
    );
    for code in [301, 302, 303, 307, 308] {
        let src = format!(r#"a.example.com {{ redirect "https://b.example{{uri}}" code={code} }}"#);
        assert!(matches!(only_handler(&src), Handler::Redirect { code: c, .. } if c == code));
    }
}

#[test]
fn address_forms_in_a_file() {
    let config = parse_ok(
        r#"
        ":8080" { respond "any host" }
        "http://:8081" { respond "any host too" }
        "[::1]:8443" { tls internal; respond "v6" }
        "http://127.0.0.1:0" { respond "ephemeral" }
        *.example.com { tls "wild.pem" "wild.key"; respond "wildcard" }
        Mixed.Example.COM. { respond "name" }
        "#,
    );
    let addresses: Vec<String> = config
        .sites
        .iter()
        .map(|s| s.addresses[0].to_string())
        .collect();
    assert_eq!(
        addresses,
        [
            ":8080",
            ":8081",
            "[::1]:8443",
            "http://127.0.0.1:0",
            "*.example.com",
            "mixed.example.com"
        ]
    );
}

#[test]
fn http_and_https_sites_share_hosts_on_their_own_ports() {
    // An explicit http:// site takes over plain HTTP for that name (no redirect).
    let config = parse_ok("example.com { proxy 1 }\n\"http://example.com\" { proxy 2 }");
    assert_eq!(config.sites.len(), 2);
}

#[test]
fn semicolons_and_comments_are_layout_only() {
    let a = parse_ok("localhost { tls internal; proxy 8000 }");
    let b = parse_ok(
        "// a comment\nlocalhost {\n    /* inline */ tls internal\n    /-rate-limit \"1/s\"\n    proxy 8000 // trailing\n}\n",
    );
    assert_eq!(a, b);
}

#[test]
fn upstream_wait_default_value_and_zero() {
    let wait = |src: &str| match only_handler(src) {
        Handler::Proxy(p) => p.upstream_wait,
        other => panic!("expected proxy, got {other:?}"),
    };
    assert_eq!(
        wait("a.example.com { proxy 8000 }"),
        defaults::UPSTREAM_WAIT
    );
    assert_eq!(
        wait("a.example.com { proxy 8000 { upstream-wait \"2s\" } }"),
        Duration::from_secs(2)
    );
    // Zero is allowed and means "502 at once".
    assert_eq!(
        wait("a.example.com { proxy 8000 { upstream-wait \"0s\" } }"),
        Duration::ZERO
    );
}

#[test]
fn bind_in_options_and_in_a_site() {
    let config = parse_ok(
        "options { bind \"127.0.0.1\" }\na.example.com { proxy 8000 }\n\"http://b.example.com:8081\" { bind \"[::1]\"; proxy 8001 }\n",
    );
    assert_eq!(config.options.bind, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(config.sites[0].bind, None);
    assert_eq!(config.sites[1].bind, Some("::1".parse().unwrap()));
}
