//! How a route changes the path it hands on: `strip-prefix` and `rewrite`,
//! both properties of the `route` line.
//!
//! ```kdl
//! route "/api/*" strip-prefix=#true { proxy 3000 }      // /api/users -> /users
//! route "/old/*" rewrite="/new/*" { proxy 3000 }        // /old/a?q -> /new/a?q
//! route "/about" rewrite="/about.html" { files "/srv" } // one path -> another
//! ```
//!
//! The simple cases only, on purpose: a prefix swapped for another, or every
//! matched path replaced by one. No regular expressions: nginx's `rewrite`
//! needs them because its locations are regexes too; a bellhop route already
//! names its prefix.

use kdl::KdlValue;
use miette::SourceSpan;

use super::error::{Problem, Problems};
use super::model::PathPattern;
use super::reader::Directive;
use super::values;

/// `route "/api/*" strip-prefix=#true`: only a `"/prefix/*"` pattern has a
/// prefix to strip.
pub(crate) fn strip_prefix(
    d: &Directive<'_>,
    patterns: &[(PathPattern, SourceSpan)],
    problems: &mut Problems,
) -> bool {
    let Some(v) = d.prop("strip-prefix") else {
        return false;
    };
    let KdlValue::Bool(strip) = v.value else {
        problems.push(
            Problem::new("`strip-prefix` is #true or #false")
                .at(v.span, "not a boolean")
                .help("write route \"/api/*\" strip-prefix=#true { proxy 3000 }"),
        );
        return false;
    };
    if *strip {
        for (pattern, span) in patterns {
            if !has_prefix(pattern) {
                problems.push(
                    Problem::new("`strip-prefix` needs a \"/prefix/*\" pattern")
                        .at(*span, "no prefix to strip")
                        .help("strip-prefix removes the part before /* from the path, e.g. route \"/api/*\" strip-prefix=#true"),
                );
            }
        }
    }
    *strip
}

/// `route "/old/*" rewrite="/new/*"` (the prefix swapped, the rest kept) or
/// `rewrite="/one/path"` (every matched path replaced). The target is written
/// like a route pattern and must be in the same normal form.
pub(crate) fn rewrite(
    d: &Directive<'_>,
    patterns: &[(PathPattern, SourceSpan)],
    strip_prefix: bool,
    problems: &mut Problems,
) -> Option<PathPattern> {
    const USAGE: &str = "route \"/old/*\" rewrite=\"/new/*\" { proxy 3000 }";
    let v = d.prop("rewrite")?;
    let target = v.parse_string("a rewrite target", USAGE, values::rewrite_target, problems)?;
    if strip_prefix {
        problems.push(
            Problem::new("`strip-prefix` and `rewrite` on one route")
                .at(v.span, "second path change")
                .help("strip-prefix=#true is rewrite=\"/*\" plus X-Forwarded-Prefix: keep one"),
        );
        return None;
    }
    if matches!(target, PathPattern::Prefix(_)) {
        for (pattern, span) in patterns {
            if matches!(pattern, PathPattern::Exact(_)) {
                problems.push(
                    Problem::new("a \"/prefix/*\" rewrite needs a \"/prefix/*\" route")
                        .at(*span, "an exact path has no rest to keep")
                        .help("rewrite an exact route to an exact path, e.g. route \"/about\" rewrite=\"/about.html\""),
                );
                return None;
            }
        }
    }
    Some(target)
}

/// Whether a route pattern has a prefix (`"/api/*"`, not `"/*"` or an exact path).
fn has_prefix(pattern: &PathPattern) -> bool {
    matches!(pattern, PathPattern::Prefix(p) if !p.is_empty())
}
