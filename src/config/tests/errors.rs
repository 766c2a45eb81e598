//! Every kind of config error, rendered and compared to a reviewed snapshot in
//! `tests/snapshots/config/NAME.txt`. Run with `UPDATE_SNAPSHOTS=1` to rewrite
//! the files after a deliberate change, then review the diff by eye.

use std::path::PathBuf;

use super::parse_err;

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots/config")
        .join(format!("{name}.txt"))
}

/// Renders the error for `src` and compares it to the snapshot `name`.
pub(super) fn check(name: &str, src: &str) {
    let report = parse_err(src).render();
    // Every report must say where (file:line:col) and how to fix it.
    assert!(
        report.contains("╭─[Proxyfile:"),
        "{name}: no location in\n{report}"
    );
    assert!(report.contains("help:"), "{name}: no help in\n{report}");
    assert!(
        !report.contains('\u{1b}'),
        "{name}: ANSI escape in\n{report}"
    );
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &report).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_SNAPSHOTS=1 to create it. Report:\n{report}",
            path.display()
        )
    });
    assert!(
        expected == report,
        "{name}: report differs from {}\n--- expected\n{expected}\n--- actual\n{report}",
        path.display()
    );
}

macro_rules! snapshots {
    ($($name:ident: $src:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), $src);
            }
        )*
    };
}

snapshots! {
    // KDL rejects these bare words; the report points at the word and quotes it.
    syntax_bare_ip_upstream: "app.example.com { proxy 127.0.0.1:8000 }\n";
    syntax_bare_route_path: "app.example.com {\n    route /api/* { proxy 3000 }\n    proxy 8000\n}\n";
    syntax_bare_duration: "app.example.com {\n    proxy 8000 {\n        idle-timeout 24h\n    }\n}\n";
    syntax_bare_rate: "app.example.com {\n    rate-limit 20/s burst=40\n    proxy 8000\n}\n";
    syntax_bare_ipv6_upstream: "app.example.com {\n    proxy [::1]:8000\n}\n";
    syntax_bare_ip_site_address: "127.0.0.1:8080 { proxy 8000 }\n";
    syntax_root_path_opens_comment: "app.example.com {\n    route /* { proxy 3000 }\n}\n";
    syntax_reserved_word: "app.example.com {\n    respond true\n}\n";
    // `//` inside a bare word: on one line KDL fails, across lines it silently cuts.
    syntax_url_swallowed_one_line: "old.example.org { redirect https://example.org{uri} }\n";
    syntax_url_swallowed_multiline: "old.example.org {\n    redirect https://example.org\n}\n";
    syntax_unix_socket_swallowed: "app.example.com {\n    proxy unix//run/app.sock\n}\n";
    syntax_site_url_swallowed: "app.example.com { proxy 1 }\nhttp://127.0.0.1:18080 {\n    proxy 9000\n}\n";
    // Plain KDL mistakes keep kdl's diagnosis with a fix added.
    syntax_unclosed_block: "app.example.com {\n    proxy 8000\n";
    syntax_stray_close: "app.example.com { proxy 8000 }\n}\n";
    syntax_unclosed_string: "app.example.com { proxy \"localhost:8000 }\n";

    // Unknown names get a did-you-mean.
    unknown_site_directive: "app.example.com {\n    prxy localhost:8000\n}\n";
    unknown_option: "options {\n    emial \"ops@example.com\"\n}\napp.example.com { proxy 8000 }\n";
    unknown_proxy_setting: "app.example.com {\n    proxy 8000 {\n        idle_timeout \"1h\"\n    }\n}\n";
    unknown_property: "app.example.com {\n    rate-limit \"20/s\" brust=40\n    proxy 8000\n}\n";
    unknown_route_directive: "app.example.com {\n    route \"/api/*\" { proxi 3000 }\n    proxy 8000\n}\n";
    unknown_encoding: "app.example.com {\n    encode zstd brotli\n    proxy 8000\n}\n";
    unknown_challenge: "app.example.com {\n    tls challenge=\"http01\"\n    proxy 8000\n}\n";
    unknown_placeholder: "old.example.org { redirect \"https://example.org{path}\" }\n";
    option_in_site: "app.example.com {\n    email \"ops@example.com\"\n    proxy 8000\n}\n";
    proxy_setting_in_site: "app.example.com {\n    proxy 8000\n    idle-timeout \"1h\"\n}\n";
    proxy_setting_as_property: "app.example.com {\n    proxy 8000 idle-timeout=\"1h\"\n}\n";
    tls_in_route: "app.example.com {\n    route \"/api/*\" { tls internal; proxy 3000 }\n    proxy 8000\n}\n";
    nested_route: "app.example.com {\n    route \"/api/*\" {\n        route \"/api/v1/*\" { proxy 3001 }\n        proxy 3000\n    }\n    proxy 8000\n}\n";
    directive_at_top_level: "proxy localhost:8000\n";

    // Values out of range or malformed.
    port_too_large: "options {\n    http-port 70000\n}\napp.example.com { proxy 8000 }\n";
    port_negative: "options {\n    https-port -1\n}\napp.example.com { proxy 8000 }\n";
    port_quoted: "options {\n    http-port \"8080\"\n}\napp.example.com { proxy 8000 }\n";
    workers_zero: "options {\n    workers 0\n}\napp.example.com { proxy 8000 }\n";
    workers_too_many: "options {\n    workers 20000\n}\napp.example.com { proxy 8000 }\n";
    upstream_port_too_large: "app.example.com {\n    proxy 70000\n}\n";
    upstream_without_port: "app.example.com {\n    proxy localhost\n}\n";
    upstream_https: "app.example.com {\n    proxy \"https://backend:8443\"\n}\n";
    upstream_listed_twice: "app.example.com {\n    proxy 8000 \"127.0.0.1:8000\"\n}\n";
    site_address_with_path: "\"example.com/api\" { proxy 8000 }\n";
    site_address_bad_port: "\"example.com:99999\" { proxy 8000 }\n";
    duration_bad_unit: "app.example.com {\n    proxy 8000 {\n        header-timeout \"5x\"\n    }\n}\n";
    duration_without_unit: "app.example.com {\n    proxy 8000 {\n        idle-timeout 30\n    }\n}\n";
    drain_timeout_bare: "options {\n    drain-timeout 24h\n}\napp.example.com { proxy 8000 }\n";
    drain_timeout_bad_unit: "options {\n    drain-timeout \"1y\"\n}\napp.example.com { proxy 8000 }\n";
    duration_zero_timeout: "app.example.com {\n    proxy 8000 {\n        connect-timeout \"0s\"\n    }\n}\n";
    bind_not_an_ip: "app.example.com {\n    bind \"localhost\"\n    proxy 8000\n}\n";
    bind_in_a_route: "app.example.com {\n    route \"/api/*\" {\n        bind \"127.0.0.1\"\n        proxy 3000\n    }\n    proxy 8000\n}\n";
    bind_conflict_on_a_shared_port: "\"http://127.0.0.1:8080\" {\n    bind \"127.0.0.1\"\n    proxy 8000\n}\n\"http://example.com:8080\" { proxy 8001 }\n";
    bind_conflict_with_redirects: "options { http-port 8080 }\napp.example.com { proxy 8000 }\n\"http://127.0.0.1:8080\" {\n    bind \"127.0.0.1\"\n    respond \"hi\"\n}\n";
    upstream_wait_too_long: "app.example.com {\n    proxy 8000 {\n        upstream-wait \"5m\"\n    }\n}\n";
    upstream_wait_misspelt: "app.example.com {\n    proxy 8000 {\n        upstream_wait \"5s\"\n    }\n}\n";
    cidr_bad_prefix: "options {\n    trusted-proxies \"10.0.0.0/8\" \"192.168.0.0/33\"\n}\napp.example.com { proxy 8000 }\n";
    rate_bad_unit: "app.example.com {\n    rate-limit \"20/d\"\n    proxy 8000\n}\n";
    rate_zero_burst: "app.example.com {\n    rate-limit \"20/s\" burst=0\n    proxy 8000\n}\n";
    redirect_bad_code: "old.example.org { redirect \"https://example.org{uri}\" code=200 }\n";
    respond_status_as_argument: "app.example.com { respond 404 }\n";
    respond_bad_status: "app.example.com { respond \"hi\" status=99 }\n";
    route_path_without_slash: "app.example.com {\n    route \"api/*\" { proxy 3000 }\n    proxy 8000\n}\n";
    route_path_bad_wildcard: "app.example.com {\n    route \"/api*\" { proxy 3000 }\n    proxy 8000\n}\n";
    admin_not_loopback: "options {\n    admin \"0.0.0.0:2019\"\n}\napp.example.com { proxy 8000 }\n";
    email_invalid: "options {\n    email \"ops.example.com\"\n}\napp.example.com { proxy 8000 }\n";
    profile_invalid: "options {\n    profile \"short lived\"\n}\napp.example.com { proxy 8000 }\n";
    acme_ca_not_https: "options {\n    acme-ca \"letsencrypt\"\n}\napp.example.com { proxy 8000 }\n";
    tls_only_cert: "app.example.com {\n    tls \"/etc/ssl/site.pem\"\n    proxy 8000\n}\n";
    tls_internal_with_challenge: "app.example.com {\n    tls internal challenge=\"http-01\"\n    proxy 8000\n}\n";
    wrong_value_type: "app.example.com {\n    files 42\n}\n";

    // Missing or conflicting pieces.
    missing_argument: "app.example.com {\n    proxy\n}\n";
    too_many_arguments: "app.example.com {\n    files \"/srv/a\" \"/srv/b\"\n}\n";
    empty_site: "app.example.com {\n}\n";
    site_without_block: "app.example.com\n";
    site_without_handler: "app.example.com {\n    rate-limit \"20/s\"\n}\n";
    empty_route: "app.example.com {\n    route \"/api/*\" {}\n    proxy 8000\n}\n";
    route_without_handler: "app.example.com {\n    route \"/api/*\" { rate-limit \"5/s\" }\n    respond \"hi\"\n    route \"/ws\" { encode gzip }\n}\nb.example.com {\n    route \"/x\" { encode gzip }\n}\n";
    route_never_used: "app.example.com {\n    route \"/api/*\" { proxy 3000 }\n    route \"/api/v2/*\" { proxy 3002 }\n    proxy 8000\n}\n";
    two_handlers: "app.example.com {\n    proxy 8000\n    redirect \"https://example.org{uri}\"\n}\n";
    two_proxies: "app.example.com {\n    proxy 8000\n    proxy 8001\n}\n";
    directive_twice: "app.example.com {\n    rate-limit \"20/s\"\n    proxy 8000\n    rate-limit \"10/s\"\n}\n";
    option_twice: "options {\n    email \"a@example.com\"\n    email \"b@example.com\"\n}\napp.example.com { proxy 8000 }\n";
    options_twice: "options { email \"a@example.com\" }\noptions { http-port 8080 }\napp.example.com { proxy 8000 }\n";
    duplicate_address: "app.example.com { proxy 8000 }\nwww.example.com \"https://App.Example.com:443\" { proxy 8001 }\n";
    http_and_https_on_one_port: "\"http://127.0.0.1:8443\" { proxy 9000 }\n\"https://127.0.0.1:8443\" { tls internal; proxy 9001 }\n";
    https_on_http_port: "options {\n    http-port 8080\n}\n\"https://app.example.com:8080\" { proxy 8000 }\n";
    http_port_equals_https_port: "options {\n    http-port 8443\n    https-port 8443\n}\n\"http://127.0.0.1:9000\" { proxy 8000 }\n";
    admin_port_taken: "options {\n    admin \"127.0.0.1:8080\"\n}\n\":8080\" { proxy 8000 }\n";
    tls_on_http_site: "\"http://127.0.0.1:18080\" {\n    tls internal\n    proxy 9000\n}\n";
    hsts_on_http_site: "\":8080\" {\n    hsts\n    proxy 9000\n}\n";
    wildcard_needs_dns: "*.example.com { proxy 8000 }\n";
    https_without_host: "\"https://:8443\" { proxy 8000 }\n";
    type_annotation: "app.example.com {\n    proxy (port)8000\n}\n";
    no_sites: "options {\n    email \"ops@example.com\"\n}\n";

    // Several independent mistakes are all reported, in file order.
    several_errors: "options {\n    http-prot 8080\n}\napp.example.com {\n    proxy 8000 {\n        idle-timeout \"1y\"\n    }\n    rate-limit \"20/x\"\n}\n\"example.org/blog\" { files \"/srv/blog\" }\n";
}

#[test]
fn several_errors_are_related_diagnostics() {
    let err = parse_err(
        "app.example.com { prxy 8000 }\nb.example.com { proxy 70000 }\nc.example.com { hsts \"1y\"; proxy 1 }\n",
    );
    let messages: Vec<&str> = err.problems().iter().map(|p| p.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("prxy"));
    assert!(messages[1].contains("70000"));
    assert!(messages[2].contains("1y"));
    assert_eq!(err.to_string(), messages[0]);
    let related = miette::Diagnostic::related(&err).map_or(0, |r| r.count());
    assert_eq!(related, 2);
}
