//! docs/config.md states the same defaults as `defaults`.

use std::time::Duration;

use crate::config::defaults;
use crate::config::directives::HSTS_DEFAULT;
use crate::config::parse_duration;

const DOC: &str = include_str!("../../../docs/config.md");

/// The default column of the docs' table row for `name` (the row starting
/// "| `name` |"), without its backticks.
fn default_in_docs(name: &str) -> &'static str {
    let prefix = format!("| `{name}` |");
    let row = DOC
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("docs/config.md has no table row for `{name}`"));
    row[prefix.len()..]
        .split('|')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('`')
}

fn assert_duration(name: &str, code: Duration) {
    let doc = default_in_docs(name);
    assert_eq!(
        parse_duration(doc),
        Ok(code),
        "docs/config.md gives {doc:?} as the default of `{name}`"
    );
}

#[test]
fn docs_state_the_code_defaults() {
    assert_eq!(default_in_docs("acme-ca"), defaults::ACME_CA);
    assert_eq!(default_in_docs("state-dir"), defaults::STATE_DIR);
    assert_eq!(
        default_in_docs("http-port"),
        defaults::HTTP_PORT.to_string()
    );
    assert_eq!(
        default_in_docs("https-port"),
        defaults::HTTPS_PORT.to_string()
    );
    assert_duration("grace-period", defaults::SHUTDOWN_GRACE);
    assert_duration("drain-timeout", defaults::DRAIN_TIMEOUT);
    // Resolved at start-up from the CPUs the process may use (server::worker).
    assert_eq!(default_in_docs("workers"), "one per CPU");
    assert_duration("client-header-timeout", defaults::CLIENT_HEADER_TIMEOUT);
    assert_duration("client-body-timeout", defaults::CLIENT_BODY_TIMEOUT);
    assert_duration("client-write-timeout", defaults::CLIENT_WRITE_TIMEOUT);
    assert_eq!(
        default_in_docs("max-connections-per-ip"),
        defaults::MAX_CONNECTIONS_PER_IP.to_string()
    );
    assert_eq!(
        default_in_docs("max-connections"),
        "from the open-file limit"
    );
    assert!(DOC.contains("| [`max-body`](#max-body) | site, route | `100MB` |"));
    assert_eq!(crate::config::limits::size("100MB"), Ok(defaults::MAX_BODY));
    assert_duration("idle-timeout", defaults::UPGRADE_IDLE_TIMEOUT);
    assert_duration("header-timeout", defaults::UPSTREAM_HEADER_TIMEOUT);
    assert_duration("connect-timeout", defaults::UPSTREAM_CONNECT_TIMEOUT);
    assert_duration("pool-idle-timeout", defaults::UPSTREAM_POOL_IDLE_TIMEOUT);
    assert_duration("upstream-wait", defaults::UPSTREAM_WAIT);
    assert!(DOC.contains(defaults::ACME_CA_STAGING));
    assert!(DOC.contains(&format!("default `{}`", defaults::REDIRECT_CODE)));
    assert!(DOC.contains("one year (`365d`)"));
    assert_eq!(parse_duration("365d"), Ok(HSTS_DEFAULT));
}

#[test]
fn docs_name_every_directive_and_option() {
    use crate::config::directives::PROXY_SETTINGS;
    use crate::config::options::OPTION_NAMES;
    use crate::config::site::SITE_DIRECTIVES;
    for name in SITE_DIRECTIVES
        .iter()
        .chain(OPTION_NAMES)
        .chain(PROXY_SETTINGS)
    {
        assert!(
            DOC.contains(&format!("### {name}"))
                || DOC.contains(&format!("| `{name}` |"))
                || DOC.contains(&format!("| [`{name}`](#")),
            "docs/config.md has no section or table row for `{name}`"
        );
    }
}
