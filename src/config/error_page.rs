//! `error-page 502 503 504 "/srv/maint.html"` and `error-page 503 text="…"`,
//! plus the `content-type` property that `respond` shares.

use http::HeaderValue;
use kdl::KdlValue;

use super::directives::non_empty_path;
use super::error::{Problem, Problems};
use super::model::{ErrorBody, ErrorPage};
use super::reader::{Directive, Value};
use super::values::Invalid;

const USAGE: &str =
    "error-page 502 503 504 \"/srv/maint.html\" or error-page 503 text=\"back soon\"";

/// Reads one `error-page` line.
pub(crate) fn error_page(d: &Directive<'_>, problems: &mut Problems) -> Option<ErrorPage> {
    d.check_props(&["text", "content-type"], None, problems);
    d.check_no_children(problems);
    let mut statuses = Vec::new();
    let mut file = None;
    let mut ok = true;
    for arg in d.args() {
        match arg.value {
            KdlValue::Integer(n) if file.is_none() => match u16::try_from(*n) {
                Ok(s) if (400..=599).contains(&s) => statuses.push(s),
                _ => {
                    problems.push(
                        Problem::new(format!("{n} is not an error status"))
                            .at(arg.span, "not 400–599")
                            .help(format!("error pages replace 4xx and 5xx answers; {USAGE}")),
                    );
                    ok = false;
                }
            },
            KdlValue::String(_) if file.is_none() => {
                file = arg.parse_string("a file", USAGE, non_empty_path, problems);
                ok &= file.is_some();
            }
            _ => {
                problems.push(
                    Problem::new("`error-page` takes the statuses, then one file")
                        .at(arg.span, "unexpected argument")
                        .help(format!("for example: {USAGE}")),
                );
                ok = false;
            }
        }
    }
    if statuses.is_empty() && ok {
        problems.push(
            Problem::new("`error-page` needs at least one status")
                .at(d.name_span(), "no status")
                .help(format!("for example: {USAGE}")),
        );
        return None;
    }
    let body = match (file, d.prop("text")) {
        (Some(path), None) => {
            if let Some(v) = d.prop("content-type") {
                problems.push(
                    Problem::new("`content-type` is taken from the file's extension")
                        .at(v.span, "not used with a file")
                        .help("remove content-type=…, or give the page as text=\"…\""),
                );
                return None;
            }
            ErrorBody::File(path)
        }
        (None, Some(v)) => ErrorBody::Text {
            text: v.string("the page text", USAGE, problems)?.to_string(),
            content_type: match d.prop("content-type") {
                Some(t) => Some(content_type(&t, problems)?),
                None => None,
            },
        },
        (Some(_), Some(v)) => {
            problems.push(
                Problem::new("`error-page` has both a file and text")
                    .at(v.span, "second page")
                    .help("give either a file or text=\"…\""),
            );
            return None;
        }
        (None, None) => {
            if ok {
                problems.push(
                    Problem::new("`error-page` needs a file or text")
                        .at(d.name_span(), "no page")
                        .help(format!("for example: {USAGE}")),
                );
            }
            return None;
        }
    };
    ok.then_some(ErrorPage { statuses, body })
}

/// A `content-type="text/html"` property value: any valid header value.
pub(crate) fn content_type(v: &Value<'_>, problems: &mut Problems) -> Option<HeaderValue> {
    let example = "content-type=\"text/html; charset=utf-8\"";
    v.parse_string(
        "a content type",
        example,
        |s| {
            if s.is_empty() {
                return Err(Invalid::new("the content type is empty").help(example));
            }
            HeaderValue::from_str(s).map_err(|_| {
                Invalid::new(format!("`{s}` is not a valid content type")).help(example)
            })
        },
        problems,
    )
}
