//! The site-level `log` directive: where a site's access-log lines go.
//!
//! ```kdl
//! log                                          // stderr, with bellhop's own log (the default)
//! log "/var/log/bellhop/app.log"               // a file of its own, text lines
//! log "/var/log/bellhop/app.log" format="json" // a file of its own, one JSON object a line
//! ```
//! The stderr lines follow `--log-format`, so `format=` is only accepted with
//! a file.

use super::directives::non_empty_path;
use super::error::{Problem, Problems};
use super::model::{AccessLogFile, AccessLogFormat};
use super::reader::Directive;
use super::suggest::did_you_mean;

const USAGE: &str = "log \"/var/log/bellhop/app.log\" format=\"json\"";

/// Reads `log [PATH] [format=json|text]`: `Some(None)` is stderr.
pub(crate) fn log(d: &Directive<'_>, problems: &mut Problems) -> Option<Option<AccessLogFile>> {
    d.check_props(&["format"], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(0, 1, USAGE, problems) {
        return None;
    }
    let format = match d.prop("format") {
        None => Some(AccessLogFormat::Text),
        Some(v) => match v.string("a log format", USAGE, problems)? {
            "json" => Some(AccessLogFormat::Json),
            "text" => Some(AccessLogFormat::Text),
            other => {
                problems.push(
                    Problem::new(format!("unknown log format `{other}`"))
                        .at(v.span, "unknown format")
                        .help(match did_you_mean(other, &["json", "text"]) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "the formats are `text` and `json`".to_string(),
                        }),
                );
                None
            }
        },
    };
    let Some(arg) = d.args().into_iter().next() else {
        if let Some(v) = d.prop("format") {
            problems.push(
                Problem::new("`format` needs a log file")
                    .at(v.span, "format of stderr lines")
                    .help(format!(
                        "stderr lines follow `bellhop run --log-format`; to write a file, say which: {USAGE}"
                    )),
            );
            return None;
        }
        return Some(None);
    };
    let path = arg.parse_string("a log file path", USAGE, non_empty_path, problems)?;
    Some(Some(AccessLogFile {
        path,
        format: format?,
    }))
}
