//! `allow` / `deny`, `basic-auth`, `strip-prefix` and `trusted-proxies
//! cloudflare`: the forms, inheritance, formatting, and error reports
//! (snapshots, as in `errors`).

use super::errors::check;
use super::fmt::check_stable;
use super::{parse_err, parse_ok};
use crate::config::{AccessRule, IpNet, PathPattern};

/// A real argon2id hash (of "pw"), as `bellhop hash-password` prints one.
const ARGON: &str = "$argon2id$v=19$m=19456,t=2,p=1$dZA8tUkSNp4sIjYcOMcNIQ$0jCpjnrtD4BlOrGCY6/7kgzu2PB5plcAdJhQY3rLsn8";
/// A bcrypt hash (cost 4).
const BCRYPT: &str = "$2b$04$EGdrhbKUv8Oc9vOf.iqvLu6Hzuyl1Zj8OjhbHq2gj7aP7t1gyOnHe";

fn net(s: &str) -> IpNet {
    crate::config::values::ip_net(s).unwrap()
}

#[test]
fn rules_and_users_are_inherited_unless_a_route_has_its_own() {
    let src = format!(
        r#"example.org {{
    deny "10.0.0.66"
    allow "10.0.0.0/8"
    basic-auth "alice" "{ARGON}" realm="staff"
    basic-auth "bob" "{BCRYPT}"
    route "/admin/*" {{
        allow "203.0.113.7"
        proxy 8000
    }}
    route "/health" {{
        basic-auth off
        allow all
        respond "ok"
    }}
    proxy 3000
}}"#
    );
    let config = parse_ok(&src);
    let routes = &config.sites[0].routes;
    let [admin, health, site] = routes.as_slice() else {
        panic!("{routes:#?}")
    };
    assert_eq!(
        admin.access,
        vec![AccessRule {
            allow: true,
            nets: vec![net("203.0.113.7")]
        }]
    );
    let auth = admin.basic_auth.as_ref().unwrap();
    assert_eq!(auth.realm, "staff");
    assert_eq!(auth.users.len(), 2);
    assert_eq!(health.basic_auth, None);
    assert_eq!(health.access[0].nets, vec![net("0.0.0.0/0"), net("::/0")]);
    assert_eq!(site.access.len(), 2);
    assert_eq!(site.basic_auth.as_ref().unwrap().users[1].name, "bob");
    check_stable(&src);
}

#[test]
fn first_matching_rule_wins_and_an_allow_list_excludes_the_rest() {
    let rules = |text: &str| {
        let src = format!("example.org {{\n{text}\nproxy 3000\n}}");
        parse_ok(&src).sites[0].routes[0].access.clone()
    };
    let ip = |s: &str| s.parse().unwrap();
    let r = rules("deny \"10.0.0.66\"\nallow \"10.0.0.0/8\"");
    assert!(AccessRule::admits(&r, ip("10.1.2.3")));
    assert!(!AccessRule::admits(&r, ip("10.0.0.66")));
    assert!(
        !AccessRule::admits(&r, ip("192.0.2.1")),
        "allow list: nobody else"
    );
    let r = rules("deny \"192.0.2.0/24\"");
    assert!(
        AccessRule::admits(&r, ip("198.51.100.1")),
        "deny list: everybody else"
    );
    assert!(
        !AccessRule::admits(&r, ip("::ffff:192.0.2.9")),
        "mapped IPv4"
    );
    assert!(AccessRule::admits(&[], ip("192.0.2.1")));
}

#[test]
fn strip_prefix_is_a_route_property() {
    let config = parse_ok(
        "example.org {\n    route \"/api/*\" strip-prefix=#true { proxy 3000 }\n    proxy 8000\n}",
    );
    let route = &config.sites[0].routes[0];
    assert_eq!(route.path, PathPattern::Prefix("/api".into()));
    assert!(route.strip_prefix);
    assert!(!config.sites[0].routes[1].strip_prefix);
}

#[test]
fn rewrite_is_a_route_property() {
    let config = parse_ok(
        "example.org {\n    route \"/old/*\" \"/older/*\" rewrite=\"/new/*\" { proxy 3000 }\n    route \"/about\" rewrite=\"/about.html\" { files \"/srv\" }\n    proxy 8000\n}",
    );
    let routes = &config.sites[0].routes;
    assert_eq!(routes[0].rewrite, Some(PathPattern::Prefix("/new".into())));
    assert_eq!(routes[1].path, PathPattern::Prefix("/older".into()));
    assert_eq!(routes[1].rewrite, Some(PathPattern::Prefix("/new".into())));
    assert_eq!(
        routes[2].rewrite,
        Some(PathPattern::Exact("/about.html".into()))
    );
    assert_eq!(routes[3].rewrite, None);
    assert!(!routes[0].strip_prefix);
}

#[test]
fn trusted_proxies_cloudflare_expands_to_the_published_ranges() {
    let config = parse_ok(
        "options {\n    trusted-proxies cloudflare \"10.0.0.0/8\"\n}\nexample.org { proxy 8000 }",
    );
    let o = &config.options;
    assert_eq!(
        o.cloudflare_proxies.len(),
        crate::config::trusted::CLOUDFLARE.len()
    );
    assert!(o.trusted_proxies.contains(&net("10.0.0.0/8")));
    assert!(o.trusted_proxies.contains(&net("173.245.48.0/20")));
    assert!(!o.cloudflare_proxies.contains(&net("10.0.0.0/8")));
    // Without `cloudflare`, nothing is Cloudflare's.
    let plain =
        parse_ok("options {\n    trusted-proxies \"10.0.0.0/8\"\n}\nexample.org { proxy 8000 }");
    assert!(plain.options.cloudflare_proxies.is_empty());
}

#[test]
fn error_reports() {
    let site = |body: &str| format!("example.org {{\n{body}\n    proxy 8000\n}}\n");
    check(
        "access_allow_bad_network",
        &site("    allow \"10.0.0.0/33\""),
    );
    check("access_allow_unquoted_number", &site("    deny 10"));
    check("access_allow_without_address", &site("    allow"));
    check(
        "basic_auth_plain_password",
        &site("    basic-auth \"alice\" \"hunter2\""),
    );
    check(
        "basic_auth_cut_hash",
        &site("    basic-auth \"alice\" \"$argon2id$v=19$m=19456,t=2,p=1$\""),
    );
    check(
        "basic_auth_user_twice",
        &site(&format!(
            "    basic-auth \"alice\" \"{BCRYPT}\"\n    basic-auth \"alice\" \"{ARGON}\""
        )),
    );
    check(
        "basic_auth_colon_in_user",
        &site(&format!("    basic-auth \"a:b\" \"{BCRYPT}\"")),
    );
    check(
        "basic_auth_off_and_users",
        &site(&format!(
            "    basic-auth off\n    basic-auth \"alice\" \"{BCRYPT}\""
        )),
    );
    check(
        "basic_auth_two_realms",
        &site(&format!(
            "    basic-auth \"a\" \"{BCRYPT}\" realm=\"x\"\n    basic-auth \"b\" \"{BCRYPT}\" realm=\"y\""
        )),
    );
    check(
        "strip_prefix_on_exact_route",
        "example.org {\n    route \"/api\" strip-prefix=#true { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "strip_prefix_not_boolean",
        "example.org {\n    route \"/api/*\" strip-prefix=\"yes\" { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "rewrite_prefix_on_exact_route",
        "example.org {\n    route \"/about\" rewrite=\"/new/*\" { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "rewrite_and_strip_prefix",
        "example.org {\n    route \"/api/*\" strip-prefix=#true rewrite=\"/v2/*\" { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "rewrite_not_normal",
        "example.org {\n    route \"/api/*\" rewrite=\"/v2/../x/*\" { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "rewrite_not_a_path",
        "example.org {\n    route \"/api/*\" rewrite=\"v2\" { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "route_path_not_normal",
        "example.org {\n    route \"/api/../admin/*\" { proxy 3000 }\n    proxy 8000\n}\n",
    );
    check(
        "trusted_proxies_cloudflare_file_missing",
        "options {\n    trusted-proxies cloudflare=\"/nonexistent/cf-ips.txt\"\n}\nexample.org { proxy 8000 }\n",
    );
    check(
        "trusted_proxies_cloudflare_relative_file",
        "options {\n    trusted-proxies cloudflare=\"cf-ips.txt\"\n}\nexample.org { proxy 8000 }\n",
    );
}

#[test]
fn a_hash_in_an_error_is_never_echoed() {
    // A mistyped hash may be a real password: the report does not repeat it.
    let report =
        parse_err("example.org {\n    basic-auth \"alice\" \"MySecret1\"\n    proxy 8000\n}\n")
            .render();
    assert!(report.contains("not a password hash"), "{report}");
    assert_eq!(
        report.matches("MySecret1").count(),
        1,
        "only the source line: {report}"
    );
}
