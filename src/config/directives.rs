//! One parser per site/route directive: the four handlers (`proxy`, `redirect`,
//! `respond`, `files`) and the settings (`rate-limit`, `encode`, `tls`, `hsts`).
//!
//! Each takes the directive node and returns its typed value, or `None` after
//! recording why it can't be read. Which directives may appear where, and how
//! they combine, is `site.rs`'s business.

use std::path::PathBuf;
use std::time::Duration;

use kdl::KdlValue;

use super::error::{Problem, Problems};
use super::model::{defaults, AcmeChallenge, Encoding, Handler, ProxyConfig, RateLimit, TlsMode};
use super::reader::{list, Directive, Seen, Value};
use super::suggest::did_you_mean;
use super::syntax::quoted;
use super::upstream_wait;
use super::values::{self, Invalid, DURATION_HELP};

/// Settings allowed in a `proxy { }` block.
pub(crate) const PROXY_SETTINGS: &[&str] = &[
    "idle-timeout",
    "header-timeout",
    "connect-timeout",
    "pool-idle-timeout",
    "upstream-wait",
];

/// `hsts` without a duration: one year, the value browsers' preload lists expect.
pub(crate) const HSTS_DEFAULT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Status codes `redirect` accepts.
const REDIRECT_CODES: [u16; 5] = [301, 302, 303, 307, 308];

/// `proxy UPSTREAM… { idle-timeout "24h" … }`
pub(crate) fn proxy(d: &Directive<'_>, problems: &mut Problems) -> Option<Handler> {
    const USAGE: &str = "proxy localhost:8000";
    d.check_props(
        &[],
        Some("settings go in a block: proxy 8000 { idle-timeout \"24h\" }"),
        problems,
    );
    if !d.check_arg_count(1, usize::MAX, USAGE, problems) {
        return None;
    }
    let mut upstreams = Vec::new();
    let mut ok = true;
    for arg in d.args() {
        let parsed = match arg.value {
            KdlValue::Integer(n) => {
                let port = match u16::try_from(*n) {
                    Ok(p) => values::upstream(&p.to_string()),
                    Err(_) => Err(Invalid::new(format!("port {n} is out of range"))
                        .help("ports are whole numbers from 1 to 65535")),
                };
                arg.check(port, "upstream", problems)
            }
            _ => arg.parse_string("an upstream", USAGE, values::upstream, problems),
        };
        match parsed {
            Some(u) if upstreams.contains(&u) => {
                problems.push(
                    Problem::new(format!("upstream {u} is listed twice"))
                        .at(arg.span, "listed again here")
                        .help("list each upstream once; requests are spread evenly over them"),
                );
                ok = false;
            }
            Some(u) => upstreams.push(u),
            None => ok = false,
        }
    }
    let mut config = ProxyConfig::new(upstreams);
    if let Some(children) = d.children() {
        let mut seen = Seen::default();
        for node in children.nodes() {
            let setting = d.child(node);
            let target = match setting.name() {
                "idle-timeout" => &mut config.idle_timeout,
                "header-timeout" => &mut config.header_timeout,
                "connect-timeout" => &mut config.connect_timeout,
                "pool-idle-timeout" => &mut config.pool_idle_timeout,
                "upstream-wait" => {
                    match seen
                        .first(&setting, problems)
                        .then(|| upstream_wait::parse(&setting, problems))
                    {
                        Some(Some(wait)) => config.upstream_wait = wait,
                        _ => ok = false,
                    }
                    continue;
                }
                other => {
                    let help = match did_you_mean(other, PROXY_SETTINGS) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("the proxy settings are {}", list(PROXY_SETTINGS)),
                    };
                    problems.push(
                        Problem::new(format!("unknown proxy setting `{other}`"))
                            .at(setting.name_span(), "unknown setting")
                            .help(help),
                    );
                    ok = false;
                    continue;
                }
            };
            if !seen.first(&setting, problems) {
                ok = false;
                continue;
            }
            match positive_duration(&setting, problems) {
                Some(t) => *target = t,
                None => ok = false,
            }
        }
    }
    ok.then_some(Handler::Proxy(config))
}

/// A setting that takes exactly one duration longer than zero, e.g. a timeout.
fn positive_duration(d: &Directive<'_>, problems: &mut Problems) -> Option<Duration> {
    let usage = format!("{} \"30s\"", d.name());
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, &usage, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    let t = duration_value(&arg, &usage, problems)?;
    if t.is_zero() {
        problems.push(
            Problem::new(format!("`{}` must be longer than zero", d.name()))
                .at(arg.span, "zero")
                .help(format!("for example: {usage}")),
        );
        return None;
    }
    Some(t)
}

/// A duration value, with a specific hint when it was written as a bare number.
pub(super) fn duration_value(
    arg: &Value<'_>,
    usage: &str,
    problems: &mut Problems,
) -> Option<Duration> {
    if let KdlValue::Integer(n) = arg.value {
        problems.push(
            Problem::new(format!("duration {n} has no unit"))
                .at(arg.span, "no unit")
                .help(format!(
                    "write the number and its unit in quotes, e.g. \"{n}s\"; {DURATION_HELP}"
                )),
        );
        return None;
    }
    arg.parse_string("a duration", usage, values::duration, problems)
}

/// `redirect "https://example.org{uri}" code=301`
pub(crate) fn redirect(d: &Directive<'_>, problems: &mut Problems) -> Option<Handler> {
    const USAGE: &str = "redirect \"https://example.org{uri}\" code=301";
    d.check_props(&["code"], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    let to = arg.parse_string("a URL", USAGE, redirect_target, problems);
    let code = match d.prop("code") {
        None => Some(defaults::REDIRECT_CODE),
        Some(v) => {
            let n = v.integer("a status code", USAGE, problems)?;
            let code = u16::try_from(n).ok().filter(|c| REDIRECT_CODES.contains(c));
            if code.is_none() {
                problems.push(
                    Problem::new(format!("{n} is not a redirect status code"))
                        .at(v.span, "not 301, 302, 303, 307 or 308")
                        .help("use 301 or 308 for permanent moves (308 keeps the method), 302, 303 or 307 for temporary ones"),
                );
            }
            code
        }
    };
    Some(Handler::Redirect {
        to: to?,
        code: code?,
    })
}

/// A redirect target: not empty, and `{uri}` the only placeholder.
fn redirect_target(s: &str) -> Result<String, Invalid> {
    if s.is_empty() {
        return Err(Invalid::new("the redirect target is empty")
            .help("write a URL or path, e.g. \"https://example.org{uri}\""));
    }
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let end = after.find('}').map_or(after.len(), |i| i + 1);
        let placeholder = &after[..end];
        if placeholder != "{uri}" {
            return Err(Invalid::new(format!(
                "`{placeholder}` is not a placeholder bellhop knows"
            ))
            .help("the only placeholder is {uri}, the request's path and query"));
        }
        rest = &after[end..];
    }
    Ok(s.to_string())
}

/// `respond "text" status=200`
pub(crate) fn respond(d: &Directive<'_>, problems: &mut Problems) -> Option<Handler> {
    const USAGE: &str = "respond \"Not Found\" status=404";
    d.check_props(&["status", "content-type"], None, problems);
    d.check_no_children(problems);
    let args = d.args();
    if let Some(n) = args.first().and_then(|a| a.value.as_integer()) {
        problems.push(
            Problem::new("the status code of `respond` is a property")
                .at(args[0].span, "status code as argument")
                .help(format!(
                    "write respond status={n}, or respond \"text\" status={n}"
                )),
        );
        return None;
    }
    if args.is_empty() && d.prop("status").is_none() {
        d.check_arg_count(1, 1, USAGE, problems);
        return None;
    }
    if !d.check_arg_count(0, 1, USAGE, problems) {
        return None;
    }
    let body = match args.first() {
        Some(arg) => arg
            .string("the response text", USAGE, problems)?
            .to_string(),
        None => String::new(),
    };
    let status = match d.prop("status") {
        None => 200,
        Some(v) => {
            let n = v.integer("a status code", USAGE, problems)?;
            let Some(status) = u16::try_from(n).ok().filter(|s| (200..=599).contains(s)) else {
                problems.push(
                    Problem::new(format!("{n} is not a status code `respond` can send"))
                        .at(v.span, "not 200–599")
                        .help("use a final status from 200 to 599, e.g. status=404"),
                );
                return None;
            };
            if matches!(status, 204 | 304) && !body.is_empty() {
                problems.push(
                    Problem::new(format!("a {status} response can't have a body"))
                        .at(v.span, "no body allowed")
                        .help(format!("remove the text: respond status={status}")),
                );
                return None;
            }
            status
        }
    };
    let content_type = match d.prop("content-type") {
        Some(v) => Some(super::error_page::content_type(&v, problems)?),
        None => None,
    };
    Some(Handler::Respond {
        status,
        body,
        content_type,
    })
}

/// `files "/srv/site"` or `files "/srv/site" try="/index.html"`
pub(crate) fn files(d: &Directive<'_>, problems: &mut Problems) -> Option<Handler> {
    const USAGE: &str = "files \"/srv/site\"";
    const TRY: &str = "files \"/srv/site\" try=\"/index.html\"";
    d.check_props(&["try"], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    let root = arg.parse_string("a directory", USAGE, non_empty_path, problems);
    let fallback = match d.prop("try") {
        Some(v) => Some(v.parse_string("a file path", TRY, fallback_path, problems)?),
        None => None,
    };
    Some(Handler::Files {
        root: root?,
        fallback,
    })
}

/// The `try` file of `files`: a path under the root, written like a request path.
fn fallback_path(s: &str) -> Result<String, Invalid> {
    if !s.starts_with('/') || s.ends_with('/') {
        return Err(
            Invalid::new(format!("`{s}` is not a file path under the root"))
                .help("write it as a request path to a file, e.g. try=\"/index.html\""),
        );
    }
    Ok(s.to_string())
}

/// A file or directory path that is not empty.
pub(crate) fn non_empty_path(s: &str) -> Result<PathBuf, Invalid> {
    if s.is_empty() {
        Err(Invalid::new("the path is empty"))
    } else {
        Ok(PathBuf::from(s))
    }
}

/// `rate-limit "20/s" burst=40`, or `rate-limit off` (returns `Some(None)`).
pub(crate) fn rate_limit(d: &Directive<'_>, problems: &mut Problems) -> Option<Option<RateLimit>> {
    const USAGE: &str = "rate-limit \"20/s\" burst=40";
    d.check_props(&["burst", "shared"], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    if let KdlValue::Integer(n) = arg.value {
        problems.push(
            Problem::new(format!("rate {n} has no unit"))
                .at(arg.span, "no unit")
                .help(format!(
                    "write requests per second, minute or hour in quotes: \"{n}/s\""
                )),
        );
        return None;
    }
    let text = arg.string("a rate", USAGE, problems)?;
    if text == "off" {
        if let Some(burst) = d.prop("burst") {
            problems.push(
                Problem::new("`burst` has no effect with `rate-limit off`")
                    .at(burst.span, "unused")
                    .help("remove burst=…"),
            );
            return None;
        }
        return Some(None);
    }
    let per_second = arg.check(values::rate(text), "rate", problems)?;
    let burst = match d.prop("burst") {
        // One second's worth, and never below one request.
        None => (per_second.ceil() as u32).max(1),
        Some(v) => {
            let n = v.integer("a request count", USAGE, problems)?;
            match u32::try_from(n) {
                Ok(b) if b >= 1 => b,
                _ => {
                    problems.push(
                        Problem::new(format!("burst {n} is out of range"))
                            .at(v.span, "must be at least 1")
                            .help("burst is how many requests a client may make at once, e.g. burst=40"),
                    );
                    return None;
                }
            }
        }
    };
    let shared = shared_prop(d, problems)?;
    Some(Some(RateLimit {
        per_second,
        burst,
        shared,
    }))
}

/// `shared=#true` on `rate-limit`: a KDL boolean (a quoted "true" is a
/// mistake worth pointing at, since `#true` is easy to forget).
fn shared_prop(d: &Directive<'_>, problems: &mut Problems) -> Option<bool> {
    let Some(v) = d.prop("shared") else {
        return Some(false);
    };
    match v.value.as_bool() {
        Some(b) => Some(b),
        None => {
            problems.push(
                Problem::new("`shared` is #true or #false")
                    .at(v.span, "not a boolean")
                    .help("write shared=#true (KDL booleans start with #)"),
            );
            None
        }
    }
}

/// `encode zstd gzip`, or `encode off` (an empty list).
pub(crate) fn encode(d: &Directive<'_>, problems: &mut Problems) -> Option<Vec<Encoding>> {
    const USAGE: &str = "encode zstd gzip";
    const KNOWN: &[&str] = &["zstd", "gzip"];
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, usize::MAX, USAGE, problems) {
        return None;
    }
    let args = d.args();
    if args.len() == 1 && args[0].value.as_string() == Some("off") {
        return Some(Vec::new());
    }
    let mut out: Vec<Encoding> = Vec::new();
    let mut ok = true;
    for arg in &args {
        let Some(name) = arg.string("an encoding", USAGE, problems) else {
            ok = false;
            continue;
        };
        let encoding = match name {
            "zstd" => Encoding::Zstd,
            "gzip" => Encoding::Gzip,
            other => {
                let help = match other {
                    "br" | "brotli" | "deflate" => {
                        format!("`{other}` is not supported yet; use zstd and/or gzip")
                    }
                    _ => match did_you_mean(other, KNOWN) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "the encodings are `zstd` and `gzip`".to_string(),
                    },
                };
                problems.push(
                    Problem::new(format!("unknown encoding `{other}`"))
                        .at(arg.span, "unknown encoding")
                        .help(help),
                );
                ok = false;
                continue;
            }
        };
        if out.contains(&encoding) {
            problems.push(
                Problem::new(format!("encoding `{name}` is listed twice"))
                    .at(arg.span, "listed again here")
                    .help("list each encoding once, most preferred first"),
            );
            ok = false;
        }
        out.push(encoding);
    }
    ok.then_some(out)
}

/// `tls internal`, `tls "cert.pem" "key.pem"` or `tls challenge="http-01"`.
pub(crate) fn tls(d: &Directive<'_>, problems: &mut Problems) -> Option<TlsMode> {
    const USAGE: &str =
        "tls internal, tls \"/etc/ssl/site.pem\" \"/etc/ssl/site.key\" or tls challenge=\"http-01\"";
    d.check_props(&["challenge"], None, problems);
    d.check_no_children(problems);
    let args = d.args();
    let challenge = d.prop("challenge");
    match (args.as_slice(), challenge) {
        ([], None) => {
            d.check_arg_count(1, 2, USAGE, problems);
            None
        }
        ([], Some(v)) => Some(TlsMode::Acme {
            challenge: challenge_type(&v, problems)?,
        }),
        ([first], challenge) if first.value.as_string() == Some("internal") => {
            if let Some(v) = challenge {
                problems.push(
                    Problem::new("`challenge` has no effect with `tls internal`")
                        .at(v.span, "unused")
                        .help("the internal CA needs no ACME challenge; remove challenge=…"),
                );
                return None;
            }
            Some(TlsMode::Internal)
        }
        ([first], _) => {
            let help = match first.value.as_string() {
                Some(s) if s.ends_with(".pem") || s.ends_with(".crt") || s.ends_with(".cer") => {
                    format!(
                        "give the key file too: tls {} \"/etc/ssl/site.key\"",
                        quoted(s)
                    )
                }
                Some(s) => match did_you_mean(s, &["internal"]) {
                    Some(_) => "did you mean `internal`?".to_string(),
                    None => format!("write {USAGE}"),
                },
                None => format!("write {USAGE}"),
            };
            problems.push(
                Problem::new("`tls` takes `internal` or a certificate and a key file")
                    .at(first.span, "expected `internal` or two paths")
                    .help(help),
            );
            None
        }
        ([cert, key], challenge) => {
            if let Some(v) = challenge {
                problems.push(
                    Problem::new("`challenge` has no effect with a given certificate")
                        .at(v.span, "unused")
                        .help("bellhop does not use ACME for this site; remove challenge=…"),
                );
                return None;
            }
            let cert = cert.parse_string("a certificate path", USAGE, non_empty_path, problems);
            let key = key.parse_string("a key path", USAGE, non_empty_path, problems);
            Some(TlsMode::Files {
                cert: cert?,
                key: key?,
            })
        }
        _ => {
            d.check_arg_count(0, 2, USAGE, problems);
            None
        }
    }
}

/// The value of `tls challenge="…"`.
fn challenge_type(v: &Value<'_>, problems: &mut Problems) -> Option<AcmeChallenge> {
    let name = v.string("a challenge type", "challenge=\"http-01\"", problems)?;
    match name {
        "http-01" => Some(AcmeChallenge::Http01),
        "tls-alpn-01" => Some(AcmeChallenge::TlsAlpn01),
        other => {
            let help = if other == "dns-01" {
                "dns-01 is not supported; use \"http-01\" or \"tls-alpn-01\"".to_string()
            } else if let Some(s) = did_you_mean(other, &["http-01", "tls-alpn-01"]) {
                format!("did you mean \"{s}\"?")
            } else {
                "the challenge types are \"http-01\" and \"tls-alpn-01\"".to_string()
            };
            problems.push(
                Problem::new(format!("unknown ACME challenge type {}", quoted(other)))
                    .at(v.span, "unknown challenge")
                    .help(help),
            );
            None
        }
    }
}

/// `hsts` (one year) or `hsts "180d"`.
pub(crate) fn hsts(d: &Directive<'_>, problems: &mut Problems) -> Option<Duration> {
    const USAGE: &str = "hsts \"365d\"";
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(0, 1, USAGE, problems) {
        return None;
    }
    match d.args().first() {
        None => Some(HSTS_DEFAULT),
        Some(arg) => duration_value(arg, USAGE, problems),
    }
}
