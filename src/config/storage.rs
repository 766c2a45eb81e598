//! `options { storage "redis://host:6379/0" key-file="/etc/bellhop/storage.key" }`:
//! where the state that several instances must agree on lives (docs/cluster.md).
//! `password-file="…"` reads the Redis password from a file (so it needs no
//! URL escaping and stays out of the Proxyfile); `ca-root="…"` is the CA a
//! `rediss://` server's certificate must chain to, instead of the system roots.
//!
//! Without it everything stays in `state-dir`, as before. With a Redis URL the
//! ACME account, certificates, challenge answers, renewal locks and `shared=#true`
//! rate limits go to Redis; `state-dir` becomes the local cache that lets an
//! instance serve while Redis is down. Only the shape of the URL is checked
//! here: whether Redis answers is a run-time matter.

use std::path::PathBuf;

use super::error::{Problem, Problems};
use super::model::{Storage, StorageRedis};
use super::options::OptionsBlock;
use super::reader::Directive;
use super::site::SiteBlock;
use super::values;

const USAGE: &str = "storage \"redis://127.0.0.1:6379/0\" key-file=\"/etc/bellhop/storage.key\" password-file=\"/etc/bellhop/redis.pass\" ca-root=\"/etc/bellhop/redis-ca.pem\"";
/// The properties that only mean something with Redis.
const REDIS_PROPS: [&str; 3] = ["key-file", "password-file", "ca-root"];

/// Reads the `storage` option into `out`.
pub(super) fn storage(d: &Directive<'_>, out: &mut Storage, problems: &mut Problems) {
    d.check_props(&REDIS_PROPS, None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return;
    }
    let Some(arg) = d.args().into_iter().next() else {
        return;
    };
    let Some(url) = arg.parse_string("a storage URL", USAGE, storage_url, problems) else {
        return;
    };
    let mut paths = [None, None, None];
    for (prop, slot) in REDIS_PROPS.iter().zip(paths.iter_mut()) {
        if let Some(v) = d.prop(prop) {
            match v.parse_string("a file path", USAGE, file_path, problems) {
                Some(p) => *slot = Some(p),
                None => return,
            }
        }
    }
    let [key_file, password_file, ca_root] = paths;
    let Some(url) = url else {
        if let Some(prop) = REDIS_PROPS.iter().find(|p| d.prop(p).is_some()) {
            let span = d.prop(prop).map_or(d.name_span(), |v| v.span);
            problems.push(
                Problem::new(format!("`{prop}` has no effect with the state directory"))
                    .at(span, "unused")
                    .help(format!(
                        "{prop} is for a Redis storage; remove it or use a redis:// URL"
                    )),
            );
            return;
        }
        *out = Storage::Dir;
        return;
    };
    if let Some(problem) = conflicts(d, &url, password_file.is_some(), ca_root.is_some()) {
        problems.push(problem);
        return;
    }
    *out = Storage::Redis(StorageRedis {
        url,
        key_file,
        password_file,
        ca_root,
    });
}

/// A password given twice, or a CA for a connection without TLS: both would
/// leave the operator guessing which setting is in force.
fn conflicts(d: &Directive<'_>, url: &str, password_file: bool, ca_root: bool) -> Option<Problem> {
    let span = |prop: &str| d.prop(prop).map_or(d.name_span(), |v| v.span);
    if password_file && url_has_password(url) {
        return Some(
            Problem::new("the Redis password is given twice")
                .at(span("password-file"), "here, and in the URL as well")
                .help("keep either password-file or the password in the URL"),
        );
    }
    if ca_root && !url.to_ascii_lowercase().starts_with("rediss://") {
        return Some(
            Problem::new("`ca-root` needs a TLS connection")
                .at(span("ca-root"), "for rediss:// only")
                .help("write the URL as rediss://host:port/db, or remove ca-root"),
        );
    }
    None
}

/// Whether `url` carries a password (`redis://[user]:password@host`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `"dir"` (the default, spelled out) → `None`; a `redis://` or `rediss://`
/// URL with a host → `Some(url)`.
fn storage_url(s: &str) -> Result<Option<String>, values::Invalid> {
    if s == "dir" {
        return Ok(None);
    }
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("redis://")
        .or_else(|| lower.strip_prefix("rediss://"));
    let Some(rest) = rest else {
        return Err(values::Invalid {
            message: format!("`{}` is not a storage URL", redact(s)),
            help: Some(
                "write \"redis://host:6379/0\", \"rediss://host:6380/0\" for TLS, or \"dir\" for the state directory"
                    .into(),
            ),
        });
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(values::Invalid {
            message: format!("`{}` names no Redis host", redact(s)),
            help: Some("for example: \"redis://127.0.0.1:6379/0\"".into()),
        });
    }
    if let Some((_, db)) = rest.split_once('/') {
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(values::Invalid {
                message: format!("`{db}` is not a Redis database number"),
                help: Some(
                    "the path is the database number, e.g. \"redis://127.0.0.1:6379/0\"".into(),
                ),
            });
        }
    }
    Ok(Some(s.to_string()))
}

fn file_path(s: &str) -> Result<PathBuf, values::Invalid> {
    if s.is_empty() {
        Err(values::Invalid {
            message: "the path is empty".into(),
            help: Some("give the path of a file readable by bellhop".into()),
        })
    } else {
        Ok(PathBuf::from(s))
    }
}

/// A Redis URL with its password replaced by `***`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// `rate-limit … shared=#true` needs Redis to share through: without it the
/// limit would silently be per instance, so it is an error.
pub(super) fn check_shared_limits(
    options: &OptionsBlock,
    sites: &[SiteBlock],
    problems: &mut Problems,
) {
    if matches!(options.options.storage, Storage::Redis(_)) {
        return;
    }
    for block in sites {
        let shared = block
            .site
            .routes
            .iter()
            .any(|r| r.rate_limit.is_some_and(|l| l.shared));
        if let (true, Some(span)) = (shared, block.address_spans.first()) {
            problems.push(
                Problem::new("`rate-limit … shared=#true` needs shared storage")
                    .at(*span, "this site shares a rate limit")
                    .help("add options { storage \"redis://127.0.0.1:6379/0\" }, or drop shared=#true for a per-instance limit"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(storage_url("dir").unwrap(), None);
        assert!(storage_url("redis://127.0.0.1:6379/0").unwrap().is_some());
        assert!(storage_url("rediss://:pw@redis.example.com:6380")
            .unwrap()
            .is_some());
        assert!(storage_url("http://x").is_err());
        assert!(storage_url("redis://").is_err());
        assert!(storage_url("redis://h/x").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://u:pw@h/0"), "redis://u:***@h/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
