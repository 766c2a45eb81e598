//! `header`, `request-header` and `security-headers`: header operations on the
//! response and on the request sent upstream.
//!
//! Names and values become `http::HeaderName`/`HeaderValue` here, at load, so a
//! typo is an error with its line and column and the request path does no
//! parsing. Headers that frame the message (`Content-Length`,
//! `Transfer-Encoding`, `Connection`, …) are refused: bellhop sets those itself,
//! and a stale one would corrupt the stream.

use http::{HeaderName, HeaderValue};

use super::error::{Problem, Problems};
use super::model::HeaderOp;
use super::reader::{Directive, Value};

/// Headers no operation may touch: they describe the message's framing or the
/// connection, which bellhop owns.
const FRAMING: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// What `security-headers` sets, before any `header` of the same block, so a
/// `header` for one of these names overrides it. HSTS is not here: it turns
/// the site's `hsts` on (HTTPS only), see `site.rs`.
pub(crate) const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-frame-options", "SAMEORIGIN"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
];

/// The operations `security-headers` stands for.
pub(crate) fn security_headers() -> Vec<HeaderOp> {
    SECURITY_HEADERS
        .iter()
        .map(|(name, value)| {
            HeaderOp::Set(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        })
        .collect()
}

/// `security-headers`: takes nothing.
pub(crate) fn security_directive(d: &Directive<'_>, problems: &mut Problems) -> bool {
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    d.check_arg_count(0, 0, "security-headers", problems)
}

/// `header "Name" "value"`, `header "+Name" "value"` or `header "-Name"` (and
/// the same for `request-header`).
pub(crate) fn header_op(d: &Directive<'_>, problems: &mut Problems) -> Option<HeaderOp> {
    let usage = format!(
        "{0} \"X-Frame-Options\" \"DENY\", {0} \"+Link\" \"</app.css>; rel=preload\" or {0} \"-Server\"",
        d.name()
    );
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 2, &usage, problems) {
        return None;
    }
    let args = d.args();
    let spec = args[0].string("a header name", &usage, problems)?;
    let (kind, bare) = match spec.as_bytes().first() {
        Some(b'-') => ('-', &spec[1..]),
        Some(b'+') => ('+', &spec[1..]),
        _ => ('=', spec),
    };
    let name = header_name(&args[0], bare, problems)?;
    match (kind, args.get(1)) {
        ('-', None) => Some(HeaderOp::Remove(name)),
        ('-', Some(extra)) => {
            problems.push(
                Problem::new("removing a header takes no value")
                    .at(extra.span, "unexpected value")
                    .help(format!("write {} \"-{bare}\"", d.name())),
            );
            None
        }
        (_, None) => {
            problems.push(
                Problem::new(format!("header `{bare}` has no value"))
                    .at(args[0].span, "no value")
                    .help(format!(
                        "give a value, {} \"{bare}\" \"…\", or remove the header with {} \"-{bare}\"",
                        d.name(),
                        d.name()
                    )),
            );
            None
        }
        (kind, Some(arg)) => {
            let text = arg.string("a header value", &usage, problems)?;
            let value = arg.check(
                HeaderValue::from_str(text).map_err(|_| {
                    super::values::Invalid::new(format!(
                        "{} is not a valid header value",
                        super::syntax::quoted(text)
                    ))
                    .help("header values are visible ASCII text without line breaks")
                }),
                "a header value",
                problems,
            )?;
            Some(if kind == '+' {
                HeaderOp::Add(name, value)
            } else {
                HeaderOp::Set(name, value)
            })
        }
    }
}

/// A header name: a valid token and not one of the [`FRAMING`] headers.
fn header_name(arg: &Value<'_>, text: &str, problems: &mut Problems) -> Option<HeaderName> {
    let parsed = match HeaderName::from_bytes(text.as_bytes()) {
        Ok(name) if FRAMING.contains(&name.as_str()) => Err(super::values::Invalid::new(format!(
            "`{text}` can't be changed by a header directive"
        ))
        .help("bellhop sets the headers that frame a message (Content-Length, Transfer-Encoding, Connection, Upgrade, …) itself")),
        Ok(name) => Ok(name),
        Err(_) => Err(super::values::Invalid::new(format!(
            "`{text}` is not a header name"
        ))
        .help("a header name is letters, digits and -, optionally after + (add) or - (remove), e.g. \"X-Frame-Options\"")),
    };
    arg.check(parsed, "a header name", problems)
}
