//! Edge cases of the matching helpers in `model.rs`.

use std::net::IpAddr;

use crate::config::{IpNet, PathPattern};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(addr: &str, prefix: u8) -> IpNet {
    IpNet {
        addr: ip(addr),
        prefix,
    }
}

#[test]
fn exact_path_matches_only_itself() {
    let p = PathPattern::Exact("/health".into());
    assert!(p.matches("/health"));
    assert!(!p.matches("/health/"));
    assert!(!p.matches("/healthz"));
    assert!(!p.matches("/health/x"));
    assert!(!p.matches("/"));
}

#[test]
fn prefix_matches_itself_and_below_but_not_siblings() {
    let p = PathPattern::Prefix("/api".into());
    assert!(p.matches("/api"));
    assert!(p.matches("/api/"));
    assert!(p.matches("/api/v1/users"));
    assert!(!p.matches("/apix"));
    assert!(!p.matches("/ap"));
    assert!(!p.matches("/"));
    assert!(!p.matches("/v1/api"));
}

#[test]
fn root_prefix_and_any_match_everything() {
    let root = PathPattern::Prefix(String::new());
    for path in ["/", "/x", "/a/b/c", ""] {
        assert!(root.matches(path), "{path}");
        assert!(PathPattern::Any.matches(path), "{path}");
    }
}

#[test]
fn ipv4_networks() {
    let n = net("10.0.0.0", 8);
    assert!(n.contains(ip("10.0.0.0")));
    assert!(n.contains(ip("10.255.255.255")));
    assert!(!n.contains(ip("11.0.0.0")));
    assert!(!n.contains(ip("9.255.255.255")));
    // A single address and the whole space.
    assert!(net("192.0.2.7", 32).contains(ip("192.0.2.7")));
    assert!(!net("192.0.2.7", 32).contains(ip("192.0.2.8")));
    assert!(net("0.0.0.0", 0).contains(ip("203.0.113.9")));
    // Host bits in the network address are ignored.
    assert!(net("10.1.2.3", 8).contains(ip("10.9.9.9")));
}

#[test]
fn ipv6_networks() {
    let n = net("2001:db8::", 64);
    assert!(n.contains(ip("2001:db8::1")));
    assert!(n.contains(ip("2001:db8::ffff:ffff:ffff:ffff")));
    assert!(!n.contains(ip("2001:db8:0:1::1")));
    assert!(net("::", 0).contains(ip("fe80::1")));
    assert!(net("::1", 128).contains(ip("::1")));
    assert!(!net("::1", 128).contains(ip("::2")));
}

#[test]
fn families_do_not_mix_except_mapped_ipv4() {
    assert!(!net("10.0.0.0", 8).contains(ip("fd00::1")));
    assert!(!net("::", 0).contains(ip("10.0.0.1")));
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    assert!(net("10.0.0.0", 8).contains(ip("::ffff:10.1.2.3")));
    assert!(!net("10.0.0.0", 8).contains(ip("::ffff:11.1.2.3")));
}
