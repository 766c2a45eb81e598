//! The string-value parsers the CLI also uses.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::values::{ip_net, path_pattern, rate};
use crate::config::{
    parse_duration, parse_site_address, parse_upstream, HostPattern, IpNet, PathPattern, Scheme,
    SiteAddress, Upstream,
};

fn tcp(host: &str, port: u16) -> Upstream {
    Upstream::Tcp {
        host: host.into(),
        port,
    }
}

#[test]
fn durations() {
    let ok = [
        ("500ms", Duration::from_millis(500)),
        ("90s", Duration::from_secs(90)),
        ("5m", Duration::from_secs(300)),
        ("24h", Duration::from_secs(86_400)),
        ("7d", Duration::from_secs(604_800)),
        ("1h30m", Duration::from_secs(5_400)),
        ("1m30s250ms", Duration::from_millis(90_250)),
        ("0s", Duration::ZERO),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for bad in [
        "",
        "24",
        "5x",
        "h",
        "1.5h",
        "-5s",
        "1h 30m",
        "5 s",
        "99999999999999999999d",
        "1hh",
    ] {
        let err = parse_duration(bad).expect_err(bad);
        assert!(err.contains("\"1h30m\""), "{bad}: help missing in {err}");
    }
}

#[test]
fn upstream_forms() {
    let ok = [
        ("localhost:8000", tcp("localhost", 8000)),
        ("8000", tcp("127.0.0.1", 8000)),
        (":8000", tcp("127.0.0.1", 8000)),
        ("127.0.0.1:8000", tcp("127.0.0.1", 8000)),
        ("[::1]:8000", tcp("::1", 8000)),
        ("Spark.Tailnet.Local:3000", tcp("spark.tailnet.local", 3000)),
        ("http://backend:9000", tcp("backend", 9000)),
        ("http://backend", tcp("backend", 80)),
        ("HTTP://backend:9000/", tcp("backend", 9000)),
        ("http://[::1]:9000", tcp("::1", 9000)),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_upstream(text), Ok(expected), "{text}");
    }
    for (text, path) in [
        ("unix:/run/app.sock", "/run/app.sock"),
        ("unix:///run/app.sock", "/run/app.sock"),
        ("unix//run/app.sock", "/run/app.sock"),
        ("unix:app.sock", "app.sock"),
    ] {
        assert_eq!(
            parse_upstream(text),
            Ok(Upstream::Unix {
                path: PathBuf::from(path)
            }),
            "{text}"
        );
    }
}

#[test]
fn upstream_errors_explain() {
    let cases = [
        ("https://backend:443", "not supported yet"),
        ("localhost", "has no port"),
        ("localhost:0", "port 0"),
        ("localhost:65536", "out of range"),
        ("localhost:http", "not a port number"),
        ("::1:8000", "brackets"),
        ("http://backend:9000/api", "can't have a path"),
        ("ftp://backend:21", "unknown scheme"),
        ("unix:", "path is empty"),
        ("", "empty"),
        ("bad host:80", "not allowed"),
        ("0", "port 0"),
    ];
    for (text, needle) in cases {
        let err = parse_upstream(text).expect_err(text);
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn upstream_display_round_trips() {
    for text in [
        "localhost:8000",
        "127.0.0.1:8000",
        "[::1]:8000",
        "unix:/run/app.sock",
    ] {
        let upstream = parse_upstream(text).unwrap();
        assert_eq!(upstream.to_string(), text);
        assert_eq!(parse_upstream(&upstream.to_string()), Ok(upstream));
    }
}

fn address(scheme: Scheme, host: HostPattern, port: Option<u16>) -> SiteAddress {
    SiteAddress { scheme, host, port }
}

#[test]
fn site_address_forms() {
    let name = |n: &str| HostPattern::Name(n.into());
    let ip = |s: &str| HostPattern::Ip(s.parse().unwrap());
    let ok = [
        (
            "app.example.com",
            address(Scheme::Https, name("app.example.com"), None),
        ),
        (
            "App.Example.COM.",
            address(Scheme::Https, name("app.example.com"), None),
        ),
        (
            "*.example.com",
            address(
                Scheme::Https,
                HostPattern::Wildcard("example.com".into()),
                None,
            ),
        ),
        ("localhost", address(Scheme::Https, name("localhost"), None)),
        (
            "localhost:8443",
            address(Scheme::Https, name("localhost"), Some(8443)),
        ),
        (
            "http://127.0.0.1:18080",
            address(Scheme::Http, ip("127.0.0.1"), Some(18080)),
        ),
        (
            "https://127.0.0.1:8443",
            address(Scheme::Https, ip("127.0.0.1"), Some(8443)),
        ),
        ("[::1]:8443", address(Scheme::Https, ip("::1"), Some(8443))),
        (":8080", address(Scheme::Http, HostPattern::Any, Some(8080))),
        (
            "http://:8080",
            address(Scheme::Http, HostPattern::Any, Some(8080)),
        ),
        (
            "https://:8443",
            address(Scheme::Https, HostPattern::Any, Some(8443)),
        ),
        ("http://", address(Scheme::Http, HostPattern::Any, None)),
        (
            "http://127.0.0.1:0",
            address(Scheme::Http, ip("127.0.0.1"), Some(0)),
        ),
        (
            "https://example.com/",
            address(Scheme::Https, name("example.com"), None),
        ),
    ];
    for (text, expected) in ok {
        assert_eq!(parse_site_address(text), Ok(expected), "{text}");
    }
}

#[test]
fn site_address_errors_explain() {
    let cases = [
        ("example.com/api", "can't have a path"),
        ("ws://example.com", "unknown scheme"),
        ("example.com:99999", "out of range"),
        ("example.com:-1", "not a port number"),
        ("::1", "brackets"),
        ("a.*.example.com", "first label"),
        ("exa mple.com", "not allowed"),
        ("bücher.example", "punycode"),
        ("a..b", "empty label"),
        ("-a.example", "start or end with `-`"),
        ("", "empty"),
        (":", "not a port number"),
    ];
    for (text, needle) in cases {
        let err = parse_site_address(text).expect_err(text);
        assert!(err.contains(needle), "{text}: {err}");
    }
}

#[test]
fn site_address_display_round_trips() {
    for text in [
        "app.example.com",
        "*.example.com",
        "localhost:8443",
        "http://127.0.0.1:18080",
        "127.0.0.1:8443",
        "[::1]:8443",
        "http://[::1]:80",
        ":8080",
        "https://:8443",
        "http://",
        "http://example.com",
    ] {
        let address = parse_site_address(text).unwrap();
        assert_eq!(address.to_string(), text);
    }
    // Spellings that mean the same thing print the same way.
    assert_eq!(
        parse_site_address("http://:8080").unwrap().to_string(),
        ":8080"
    );
    assert_eq!(
        parse_site_address("https://example.com")
            .unwrap()
            .to_string(),
        "example.com"
    );
    assert_eq!(
        parse_site_address("https://127.0.0.1:8443")
            .unwrap()
            .to_string(),
        "127.0.0.1:8443"
    );
}

#[test]
fn networks() {
    let v6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0));
    assert_eq!(
        ip_net("fd00::/8"),
        Ok(IpNet {
            addr: v6,
            prefix: 8
        })
    );
    assert_eq!(ip_net("10.0.0.0/8").map(|n| n.prefix), Ok(8));
    assert_eq!(ip_net("192.0.2.7").map(|n| n.prefix), Ok(32));
    assert_eq!(ip_net("::1").map(|n| n.prefix), Ok(128));
    assert_eq!(ip_net("[::1]").map(|n| n.prefix), Ok(128));
    assert_eq!(ip_net("0.0.0.0/0").map(|n| n.prefix), Ok(0));
    for bad in [
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "example.com",
        "",
    ] {
        assert!(ip_net(bad).is_err(), "{bad}");
    }
}

#[test]
fn rates() {
    assert_eq!(rate("20/s"), Ok(20.0));
    assert_eq!(rate("120/m"), Ok(2.0));
    assert_eq!(rate("1800/h"), Ok(0.5));
    for bad in ["20", "20/d", "0/s", "-1/s", "1.5/s", "x/s", "/s", "20/"] {
        assert!(rate(bad).is_err(), "{bad}");
    }
}

#[test]
fn path_patterns() {
    assert_eq!(
        path_pattern("/exact"),
        Ok(PathPattern::Exact("/exact".into()))
    );
    assert_eq!(path_pattern("/"), Ok(PathPattern::Exact("/".into())));
    assert_eq!(
        path_pattern("/api/*"),
        Ok(PathPattern::Prefix("/api".into()))
    );
    assert_eq!(path_pattern("/*"), Ok(PathPattern::Prefix(String::new())));
    for (bad, needle) in [
        ("api/*", "\"/api/*\""),
        ("*", "\"/*\""),
        ("/api*", "\"/api/*\""),
        ("/a/*/b", "\"/a/*\""),
        ("/search?q=1", "query"),
        ("", "empty"),
    ] {
        let err = path_pattern(bad).expect_err(bad).to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}
