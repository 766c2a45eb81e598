//! The `options { }` block: global settings, each optional with a default from
//! [`defaults`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;

use kdl::KdlNode;
use miette::SourceSpan;

use super::directives::PROXY_SETTINGS;
use super::error::{Problem, Problems};
use super::limits::{self, LIMIT_OPTIONS};
use super::model::{defaults, Options};
use super::reader::{list, Directive, Seen, Value};
use super::site::SITE_DIRECTIVES;
use super::suggest::did_you_mean;
use super::values::{self, DURATION_HELP};

/// Every name allowed inside `options { }`.
pub(crate) const OPTION_NAMES: &[&str] = &[
    "email",
    "acme-ca",
    "acme-ca-root",
    "profile",
    "state-dir",
    "http-port",
    "https-port",
    "admin",
    "trusted-proxies",
    "grace-period",
    "client-header-timeout",
    "workers",
    "bind",
    "storage",
    "max-connections",
    "max-connections-per-ip",
    "client-body-timeout",
    "client-write-timeout",
    "drain-timeout",
];

/// Parsed options plus where each one was written, for later cross-checks
/// (e.g. a site that uses the `http-port` for HTTPS points back at it).
#[derive(Default)]
pub(crate) struct OptionsBlock {
    pub options: Options,
    seen: Seen,
}

impl OptionsBlock {
    /// The main file's options, for checking an imported file's sites.
    pub(super) fn inherited(options: Options) -> Self {
        OptionsBlock {
            options,
            seen: Seen::default(),
        }
    }

    /// The span of option `name`'s name, if it was set in the file.
    pub(super) fn span_of(&self, name: &str) -> Option<SourceSpan> {
        self.seen.span_of(name)
    }
}

/// Reads an `options` node.
pub(crate) fn options(node: &KdlNode, src: &str, problems: &mut Problems) -> OptionsBlock {
    let block = Directive::new(node, src);
    block.check_props(&[], None, problems);
    block.check_arg_count(0, 0, "options { email \"ops@example.com\" }", problems);
    let mut out = OptionsBlock::default();
    let Some(children) = block.children() else {
        problems.push(
            Problem::new("`options` needs a block")
                .at(block.name_span(), "no block")
                .help("for example: options { email \"ops@example.com\" }"),
        );
        return out;
    };
    for node in children.nodes() {
        let d = Directive::new(node, src);
        if !OPTION_NAMES.contains(&d.name()) {
            problems.push(unknown_option(&d));
            continue;
        }
        if !out.seen.first(&d, problems) {
            continue;
        }
        if d.name() == "storage" {
            super::storage::storage(&d, &mut out.options.storage, problems);
            continue;
        }
        if d.name() == "trusted-proxies" {
            super::trusted::read(&d, &mut out.options, problems);
            continue;
        }
        d.check_props(&[], None, problems);
        d.check_no_children(problems);
        option(&d, &mut out.options, problems);
    }
    let o = &out.options;
    if o.http_port == o.https_port && o.http_port != 0 {
        let span = out
            .span_of("https-port")
            .or(out.span_of("http-port"))
            .unwrap_or(block.name_span());
        problems.push(
            Problem::new(format!("http-port and https-port are both {}", o.http_port))
                .at(span, "same port as http-port")
                .help("plain HTTP and HTTPS need different ports, e.g. http-port 80 and https-port 443"),
        );
    }
    out
}

fn unknown_option(d: &Directive<'_>) -> Problem {
    let problem =
        Problem::new(format!("unknown option `{}`", d.name())).at(d.name_span(), "unknown option");
    if SITE_DIRECTIVES.contains(&d.name()) {
        problem.help(format!(
            "`{}` belongs in a site block, e.g. app.example.com {{ {} … }}",
            d.name(),
            d.name()
        ))
    } else if PROXY_SETTINGS.contains(&d.name()) {
        problem.help(format!(
            "`{}` belongs in a proxy block, e.g. proxy 8000 {{ {} \"30s\" }}",
            d.name(),
            d.name()
        ))
    } else if let Some(s) = did_you_mean(d.name(), OPTION_NAMES) {
        problem.help(format!("did you mean `{s}`?"))
    } else {
        problem.help(format!("the options are {}", list(OPTION_NAMES)))
    }
}

/// An example of each option, for "expected …" messages.
fn usage(name: &str) -> &'static str {
    match name {
        "email" => "email \"ops@example.com\"",
        "acme-ca" => "acme-ca \"staging\"",
        "acme-ca-root" => "acme-ca-root \"/etc/bellhop/pebble.pem\"",
        "profile" => "profile \"shortlived\"",
        "state-dir" => "state-dir \"/var/lib/bellhop\"",
        "http-port" => "http-port 80",
        "https-port" => "https-port 443",
        "admin" => "admin \"127.0.0.1:2019\"",
        "trusted-proxies" => "trusted-proxies cloudflare \"10.0.0.0/8\" \"192.168.1.7\"",
        "grace-period" => "grace-period \"10s\"",
        "client-header-timeout" => "client-header-timeout \"30s\"",
        "workers" => "workers 2",
        "bind" => "bind \"127.0.0.1\"",
        "storage" => "storage \"redis://127.0.0.1:6379/0\"",
        name if LIMIT_OPTIONS.contains(&name) => limits::usage(name),
        "drain-timeout" => "drain-timeout \"24h\"",
        // The caller only passes names from OPTION_NAMES; a test checks that each
        // of them has an arm in `option`.
        _ => "",
    }
}

/// Reads one option into `o`.
fn option(d: &Directive<'_>, o: &mut Options, problems: &mut Problems) {
    let usage = usage(d.name());
    if !d.check_arg_count(1, 1, usage, problems) {
        return;
    }
    let args = d.args();
    let Some(arg) = args.first() else { return };
    match d.name() {
        "email" => {
            if let Some(email) = arg.parse_string("an email address", usage, email, problems) {
                o.email = Some(email);
            }
        }
        "acme-ca" => {
            if let Some(ca) = arg.parse_string("an ACME directory URL", usage, acme_ca, problems) {
                o.acme_ca = ca;
            }
        }
        "acme-ca-root" => {
            if let Some(p) = arg.parse_string("a file path", usage, path, problems) {
                o.acme_ca_root = Some(p);
            }
        }
        "profile" => {
            if let Some(p) = arg.parse_string("an ACME profile name", usage, profile, problems) {
                o.acme_profile = Some(p);
            }
        }
        "state-dir" => {
            if let Some(p) = arg.parse_string("a directory path", usage, path, problems) {
                o.state_dir = p;
            }
        }
        "http-port" => o.http_port = listen_port(arg, usage, problems).unwrap_or(o.http_port),
        "https-port" => o.https_port = listen_port(arg, usage, problems).unwrap_or(o.https_port),
        "admin" => {
            if let Some(addr) = admin(arg, usage, problems) {
                o.admin = Some(addr);
            }
        }
        "grace-period" => {
            if let Some(t) = arg.parse_string("a duration", usage, values::duration, problems) {
                o.grace_period = t;
            }
        }
        "drain-timeout" => {
            if let Some(t) = arg.parse_string("a duration", usage, values::duration, problems) {
                o.drain_timeout = t;
            }
        }
        "client-header-timeout" => {
            if let Some(t) = arg.parse_string("a duration", usage, positive_duration, problems) {
                o.client_header_timeout = t;
            }
        }
        "bind" => o.bind = super::bind::parse(d, problems),
        "workers" => {
            if let Some(n) = arg.integer("a number of threads", usage, problems) {
                if let Some(n) = arg.check(workers(n), "worker count", problems) {
                    o.workers = Some(n);
                }
            }
        }
        name if LIMIT_OPTIONS.contains(&name) => limits::option(name, arg, o, problems),
        _ => {}
    }
}

/// `http-port` / `https-port`: a number from 0 to 65535.
fn listen_port(arg: &Value<'_>, usage: &str, problems: &mut Problems) -> Option<u16> {
    let n = arg.integer("a port number", usage, problems)?;
    let port = u16::try_from(n).map_err(|_| values::Invalid {
        message: format!("port {n} is out of range"),
        help: Some("ports are whole numbers from 0 to 65535 (0 picks a free port)".into()),
    });
    arg.check(port, "port", problems)
}

/// `admin "127.0.0.1:2019"`, or a bare port as a convenience for the usual
/// local-only address.
fn admin(arg: &Value<'_>, usage: &str, problems: &mut Problems) -> Option<SocketAddr> {
    match arg.value.as_integer() {
        Some(n) => arg.check(
            values::port(&n.to_string())
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)),
            "port",
            problems,
        ),
        None => arg.parse_string("an address", usage, values::admin_address, problems),
    }
}

/// A duration longer than zero (a zero timeout would refuse every client).
fn positive_duration(s: &str) -> Result<std::time::Duration, values::Invalid> {
    values::duration(s).and_then(|t| {
        if t.is_zero() {
            Err(values::Invalid {
                message: "the timeout must be longer than zero".into(),
                help: Some(DURATION_HELP.into()),
            })
        } else {
            Ok(t)
        }
    })
}

/// A `workers` count: at least one thread, at most [`defaults::MAX_WORKERS`].
fn workers(n: i128) -> Result<NonZeroUsize, values::Invalid> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= defaults::MAX_WORKERS)
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| values::Invalid {
            message: format!("{n} is not a usable number of workers"),
            help: Some(format!(
                "write a whole number from 1 to {}, or leave `workers` out for one per CPU",
                defaults::MAX_WORKERS
            )),
        })
}

fn email(s: &str) -> Result<String, values::Invalid> {
    let s = s.strip_prefix("mailto:").unwrap_or(s);
    match s.split_once('@') {
        Some((user, domain))
            if !user.is_empty() && domain.contains('.') && !s.contains(char::is_whitespace) =>
        {
            Ok(s.to_string())
        }
        _ => Err(values::Invalid {
            message: format!("`{s}` is not an email address"),
            help: Some("Let's Encrypt uses it to warn about expiring certificates, e.g. \"ops@example.com\"".into()),
        }),
    }
}

/// An ACME profile name (draft-aaron-acme-profiles): whether the CA offers it is
/// only known at run time, so only the shape is checked here.
fn profile(s: &str) -> Result<String, values::Invalid> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(s.to_string())
    } else {
        Err(values::Invalid {
            message: format!("`{s}` is not an ACME profile name"),
            help: Some(
                "profiles are names the CA lists in its directory, e.g. \"classic\", \"tlsserver\" or \"shortlived\" at Let's Encrypt".into(),
            ),
        })
    }
}

fn acme_ca(s: &str) -> Result<String, values::Invalid> {
    match s {
        "staging" => Ok(defaults::ACME_CA_STAGING.to_string()),
        "production" => Ok(defaults::ACME_CA.to_string()),
        url if url.to_ascii_lowercase().starts_with("https://") => Ok(url.to_string()),
        other => Err(values::Invalid {
            message: format!("`{other}` is not an ACME directory URL"),
            help: Some(
                "write \"staging\" or \"production\" for Let's Encrypt, or the directory's https:// URL"
                    .into(),
            ),
        }),
    }
}

fn path(s: &str) -> Result<PathBuf, values::Invalid> {
    if s.is_empty() {
        Err(values::Invalid {
            message: "the path is empty".into(),
            help: None,
        })
    } else {
        Ok(PathBuf::from(s))
    }
}
