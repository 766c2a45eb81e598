//! The site-level `log` directive: its forms, its errors (snapshots) and
//! its formatting.

use std::path::PathBuf;

use super::errors::check;
use super::{parse, parse_ok};
use crate::config::{format, AccessLogFile, AccessLogFormat};

fn site_log(src: &str) -> Option<AccessLogFile> {
    parse_ok(src).sites.remove(0).log
}

#[test]
fn log_forms() {
    assert_eq!(site_log("a.example.com { proxy 1 }"), None);
    assert_eq!(site_log("a.example.com { log; proxy 1 }"), None);
    assert_eq!(
        site_log("a.example.com { log \"/var/log/bellhop/a.log\"; proxy 1 }"),
        Some(AccessLogFile {
            path: PathBuf::from("/var/log/bellhop/a.log"),
            format: AccessLogFormat::Text,
        })
    );
    assert_eq!(
        site_log("a.example.com { log \"/var/log/a.log\" format=\"json\"; proxy 1 }"),
        Some(AccessLogFile {
            path: PathBuf::from("/var/log/a.log"),
            format: AccessLogFormat::Json,
        })
    );
}

#[test]
fn a_relative_log_path_is_relative_to_the_proxyfile() {
    let dir = std::env::temp_dir().join(format!("bellhop-log-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Proxyfile");
    std::fs::write(
        &file,
        "a.example.com {\n    log \"logs/a.log\"\n    proxy 1\n}\n",
    )
    .unwrap();
    let config = crate::config::load(&file).unwrap();
    assert_eq!(
        config.sites[0].log.as_ref().map(|l| l.path.clone()),
        Some(dir.join("logs/a.log"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn log_is_formatted_and_keeps_its_meaning() {
    let src = "a.example.com {\n  log   \"/var/log/a.log\"   format=\"json\"\n  proxy 1\n}\n";
    let once = format(src, "Proxyfile").unwrap();
    assert_eq!(format(&once, "Proxyfile").unwrap(), once);
    assert_eq!(parse(src, "Proxyfile").ok(), parse(&once, "Proxyfile").ok());
    assert!(
        once.contains("    log \"/var/log/a.log\" format=\"json\"\n"),
        "{once}"
    );
}

#[test]
fn log_format_unknown() {
    check(
        "log_format_unknown",
        "app.example.com {\n    log \"/var/log/app.log\" format=\"jsno\"\n    proxy 8000\n}\n",
    );
}

#[test]
fn log_format_without_file() {
    check(
        "log_format_without_file",
        "app.example.com {\n    log format=\"json\"\n    proxy 8000\n}\n",
    );
}

#[test]
fn log_in_route() {
    check(
        "log_in_route",
        "app.example.com {\n    route \"/api/*\" {\n        log \"/var/log/api.log\"\n        proxy 3000\n    }\n    proxy 8000\n}\n",
    );
}

#[test]
fn log_property_misspelt() {
    check(
        "log_property_misspelt",
        "app.example.com {\n    log \"/var/log/app.log\" fromat=\"json\"\n    proxy 8000\n}\n",
    );
}
