//! `options { storage "redis://host:6379/0" key-file="/etc/bellhop/storage.key" }`:
//! where the state that several instances must agree on lives (docs/cluster.md).
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

const USAGE: &str = "storage \"redis://127.0.0.1:6379/0\" key-file=\"/etc/bellhop/storage.key\"";

/// Reads the `storage` option into `out`.
pub(super) fn storage(d: &Directive<'_>, out: &mut Storage, problems: &mut Problems) {
    d.check_props(&["key-file"], None, problems);
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
    let key_file = match d.prop("key-file") {
        Some(v) => match v.parse_string("a file path", USAGE, key_file, problems) {
            Some(p) => Some(p),
            None => return,
        },
        None => None,
    };
    *out = match url {
        Some(url) => Storage::Redis(StorageRedis { url, key_file }),
        None if key_file.is_some() => {
            let span = d.prop("key-file").map_or(d.name_span(), |v| v.span);
            problems.push(
                Problem::new("`key-file` has no effect with the state directory")
                    .at(span, "unused")
                    .help(
                        "key-file encrypts what is kept in Redis; remove it or use a redis:// URL",
                    ),
            );
            return;
        }
        None => Storage::Dir,
    };
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

fn key_file(s: &str) -> Result<PathBuf, values::Invalid> {
    if s.is_empty() {
        Err(values::Invalid {
            message: "the path is empty".into(),
            help: Some("a file of 32 random bytes, e.g. head -c 32 /dev/urandom".into()),
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
