//! The limit forms (`max-connections`, `max-connections-per-ip`,
//! `client-body-timeout`, `client-write-timeout`, `max-body`): what they set,
//! their defaults, and errors that point at the line and column with a fix.

use std::time::Duration;

use super::{parse_err, parse_ok};
use crate::config::defaults;

#[test]
fn limit_options_take_effect() {
    let o = parse_ok(
        r#"
        options {
            max-connections 5000
            max-connections-per-ip 16
            client-body-timeout "10s"
            client-write-timeout "1m"
        }
        a.example.com { proxy 1 }
        "#,
    )
    .options;
    assert_eq!(o.max_connections, Some(5000));
    assert_eq!(o.max_connections_per_ip, 16);
    assert_eq!(o.client_body_timeout, Duration::from_secs(10));
    assert_eq!(o.client_write_timeout, Duration::from_secs(60));

    let o = parse_ok("a.example.com { proxy 1 }").options;
    assert_eq!(
        o.max_connections, None,
        "derived from the fd limit at start"
    );
    assert_eq!(o.max_connections_per_ip, defaults::MAX_CONNECTIONS_PER_IP);
    assert_eq!(o.client_body_timeout, defaults::CLIENT_BODY_TIMEOUT);
    assert_eq!(o.client_write_timeout, defaults::CLIENT_WRITE_TIMEOUT);
}

#[test]
fn max_body_at_site_and_route_level() {
    let config = parse_ok(
        r#"
        a.example.com {
            max-body "10MB"
            route "/upload/*" {
                max-body "1GiB"
                proxy 3000
            }
            route "/api/*" { proxy 3000 }
            proxy 8000
        }
        b.example.com { proxy 8000 }
        "#,
    );
    let limits: Vec<u64> = config.sites[0].routes.iter().map(|r| r.max_body).collect();
    assert_eq!(limits, vec![1 << 30, 10_000_000, 10_000_000]);
    assert_eq!(config.sites[1].routes[0].max_body, defaults::MAX_BODY);
}

/// The rendered report of `src` names `line:column` and carries `message` and a help.
fn assert_error_at(src: &str, at: &str, message: &str) {
    let report = parse_err(src).render();
    assert!(
        report.contains(&format!("╭─[Proxyfile:{at}]")),
        "expected the error at {at}:\n{report}"
    );
    assert!(
        report.contains(message),
        "expected {message:?} in:\n{report}"
    );
    assert!(report.contains("help:"), "no help in:\n{report}");
}

#[test]
fn limit_errors_point_at_the_value() {
    let site = "a.example.com { proxy 1 }\n";
    assert_error_at(
        &format!("options {{\n    max-connections 0\n}}\n{site}"),
        "2:21",
        "0 is not a usable number of connections",
    );
    assert_error_at(
        &format!("options {{\n    max-connections-per-ip \"10\"\n}}\n{site}"),
        "2:28",
        "quoted number",
    );
    assert_error_at(
        &format!("options {{\n    client-body-timeout \"0s\"\n}}\n{site}"),
        "2:25",
        "longer than zero",
    );
    assert_error_at(
        &format!("options {{\n    client-write-timeout \"30x\"\n}}\n{site}"),
        "2:26",
        "not a duration unit",
    );
    assert_error_at(
        &format!("options {{\n    max-conections 10\n}}\n{site}"),
        "2:5",
        "did you mean `max-connections`?",
    );
    assert_error_at(
        "a.example.com {\n    max-body 10\n    proxy 1\n}\n",
        "2:14",
        "size 10 has no unit",
    );
    assert_error_at(
        "a.example.com {\n    max-body \"10XB\"\n    proxy 1\n}\n",
        "2:14",
        "`xb` is not a size unit",
    );
    assert_error_at(
        "a.example.com {\n    route \"/a/*\" { max-body \"0MB\"; proxy 1 }\n    proxy 1\n}\n",
        "2:29",
        "more than zero",
    );
    assert_error_at(
        "options {\n    max-body \"10MB\"\n}\na.example.com { proxy 1 }\n",
        "2:5",
        "belongs in a site block",
    );
}

#[test]
fn limit_forms_survive_fmt() {
    let src = "options {\n    max-connections 100\n    client-body-timeout \"30s\"\n}\na.example.com {\n    max-body \"10MB\"\n    route \"/u/*\" { max-body \"1GB\"; proxy 2 }\n    proxy 1\n}\n";
    let formatted = crate::config::format(src, "Proxyfile").expect("formats");
    assert_eq!(parse_ok(&formatted), parse_ok(src));
}
