//! KDL syntax: parsing the text into a tree, and explaining the ways Proxyfile
//! authors trip over KDL's quoting rules.
//!
//! KDL v2 rejects bare words that start with a digit or contain `/`, and it reads
//! `//` as a comment even in the middle of a word. The kdl crate reports these as
//! generic parse errors ("Expected float", "No closing '}'"), or not at all when
//! `redirect https://x.example` quietly becomes `"https:"`. This module finds the
//! word the user meant and tells them how to quote it.

use kdl::{KdlDocument, KdlEntry, KdlNode};
use miette::SourceSpan;

use super::error::{ConfigError, Problem, Problems};
use super::lexer::{self, Kind, Slashes};

/// Parses `source` as KDL v2, explaining any syntax error in Proxyfile terms.
pub(crate) fn parse_kdl(source: &str, file_name: &str) -> Result<KdlDocument, ConfigError> {
    match source.parse::<KdlDocument>() {
        Ok(doc) => Ok(doc),
        Err(err) => {
            let mut problems = Problems::default();
            for problem in unquoted_words(source) {
                problems.push(problem);
            }
            if problems.is_empty() {
                // Nothing we recognise: pass on kdl's first (root-cause) diagnostic.
                problems.push(match err.diagnostics.first() {
                    Some(d) => from_kdl(
                        source,
                        d.span,
                        d.message.as_deref(),
                        d.label.as_deref(),
                        d.help.as_deref(),
                    ),
                    None => Problem::new("the file is not valid KDL"),
                });
            }
            Err(problems.into_error(file_name, source))
        }
    }
}

/// Rewords one kdl diagnostic, adding a fix for the common cases.
fn from_kdl(
    source: &str,
    span: SourceSpan,
    message: Option<&str>,
    label: Option<&str>,
    help: Option<&str>,
) -> Problem {
    let message = message.unwrap_or("unexpected input");
    let at = source.get(span.offset()..).unwrap_or("");
    let (label, help) = if message.contains("No closing '}'") {
        (
            "this block is never closed".to_string(),
            Some("add the missing `}`".to_string()),
        )
    } else if message.contains("newline in single-line quoted string") {
        (
            "this string has no closing quote".to_string(),
            Some("close it with a `\"` on the same line; text over several lines is written \"\"\" … \"\"\"".to_string()),
        )
    } else if message.contains("end of document") && at.starts_with('}') {
        (
            "this `}` closes no block".to_string(),
            Some("remove it, or add the `{` it belongs to".to_string()),
        )
    } else {
        (
            label.unwrap_or("here").to_string(),
            help.map(str::to_string),
        )
    };
    let problem = Problem::new(format!("invalid KDL: {message}")).at(span, label);
    match help {
        Some(help) => problem.help(help),
        None => problem,
    }
}

/// Why a bare word must be quoted, if it must.
fn quoting_reason(word: &str) -> Option<&'static str> {
    let mut chars = word.chars();
    let first = chars.next()?;
    let second = chars.next();
    let starts_numeric = first.is_ascii_digit()
        || (matches!(first, '+' | '-' | '.') && second.is_some_and(|c| c.is_ascii_digit()))
        || (matches!(first, '+' | '-')
            && second == Some('.')
            && word.chars().nth(2).is_some_and(|c| c.is_ascii_digit()));
    if word.contains("//") {
        Some("`//` starts a comment in KDL, even inside a word, so the rest of the line is dropped")
    } else if first == '/' {
        Some("a bare word can't start with `/` in KDL")
    } else if word.contains('/') {
        Some("a bare word can't contain `/` in KDL")
    } else if word.contains(['[', ']']) {
        Some("a bare word can't contain `[` or `]` in KDL")
    } else if first != '#' && word.contains('#') {
        Some("a bare word can't contain `#` in KDL")
    } else if starts_numeric && !is_kdl_number(word) {
        Some("a bare word can't start with a digit in KDL, and this is not a number")
    } else if matches!(word, "true" | "false" | "null" | "inf" | "nan") {
        Some("this word is reserved in KDL")
    } else {
        None
    }
}

/// Whether `word` is a KDL v2 number (decimal, hex, octal or binary).
fn is_kdl_number(word: &str) -> bool {
    let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
    let radix_digits = |s: &str, ok: fn(char) -> bool| {
        s.chars().next().is_some_and(ok) && s.chars().all(|c| ok(c) || c == '_')
    };
    if let Some(hex) = unsigned.strip_prefix("0x") {
        return radix_digits(hex, |c| c.is_ascii_hexdigit());
    }
    if let Some(oct) = unsigned.strip_prefix("0o") {
        return radix_digits(oct, |c| matches!(c, '0'..='7'));
    }
    if let Some(bin) = unsigned.strip_prefix("0b") {
        return radix_digits(bin, |c| matches!(c, '0' | '1'));
    }
    let digits = |s: &str| radix_digits(s, |c| c.is_ascii_digit());
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// `s` as a KDL quoted string.
pub(crate) fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every bare word in a file KDL rejected that would have been fine in quotes.
fn unquoted_words(source: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for token in lexer::tokenize(source, Slashes::Glued) {
        let text = &source[token.span.clone()];
        let span = SourceSpan::from(token.span.clone());
        match token.kind {
            Kind::Word if !text.starts_with('"') && !text.starts_with("#\"") => {
                if let Some(reason) = quoting_reason(text) {
                    let problem = Problem::new(format!("`{text}` must be quoted"))
                        .at(span, reason)
                        .help(quoting_help(text));
                    problems.push(problem);
                }
            }
            Kind::BlockComment { terminated: false } => {
                let problem = Problem::new("`/*` starts a comment that never ends")
                    .at(SourceSpan::from(token.span.start..token.span.start + 2), "comment starts here")
                    .help("if this is the path pattern /*, quote it: \"/*\"; otherwise close the comment with */");
                problems.push(problem);
            }
            _ => {}
        }
    }
    problems
}

fn quoting_help(word: &str) -> String {
    if matches!(word, "true" | "false" | "null") {
        format!(
            "write {} for the string, or #{word} for the KDL value",
            quoted(word)
        )
    } else {
        format!("write it in quotes: {}", quoted(word))
    }
}

/// Tree-level checks that need the source text: `//` swallowed right after a
/// bare word (which KDL accepts silently) and type annotations (which a Proxyfile
/// never uses, so they are almost certainly a typo).
pub(crate) fn check_tree(doc: &KdlDocument, source: &str, problems: &mut Problems) {
    for node in doc.nodes() {
        check_node(node, source, problems);
    }
}

fn check_node(node: &KdlNode, source: &str, problems: &mut Problems) {
    let name = node.name();
    if name.repr().is_none_or(is_bare) {
        check_swallowed(source, name.span(), problems);
    }
    if let Some(ty) = node.ty() {
        problems.push(annotation_problem(ty.span()));
    }
    for entry in node.entries() {
        if let Some(ty) = entry.ty() {
            problems.push(annotation_problem(ty.span()));
        }
        if entry.format().is_none_or(|f| is_bare(&f.value_repr)) {
            check_swallowed(source, value_span(entry, source), problems);
        }
    }
    if let Some(children) = node.children() {
        check_tree(children, source, problems);
    }
}

fn annotation_problem(span: SourceSpan) -> Problem {
    Problem::new("type annotations are not used in a Proxyfile")
        .at(span, "type annotation")
        .help("remove the `(…)`; if it is part of a value, put the whole value in quotes")
}

fn is_bare(repr: &str) -> bool {
    !(repr.starts_with('"') || repr.starts_with('#'))
}

/// If a `//` follows the bare word at `span` directly, KDL cut the word short there.
fn check_swallowed(source: &str, span: SourceSpan, problems: &mut Problems) {
    let end = span.offset() + span.len();
    let Some(after) = source.get(end..) else {
        return;
    };
    if !after.starts_with("//") {
        return;
    }
    let rest_len = lexer::glued_word_len(after);
    let (Some(meant), Some(cut)) = (
        source.get(span.offset()..end + rest_len),
        source.get(span.offset()..end),
    ) else {
        return;
    };
    problems.push(
        Problem::new(format!("`{meant}` must be quoted"))
            .at(
                SourceSpan::from(span.offset()..end + rest_len),
                format!("KDL reads this as `{cut}` followed by a `//` comment"),
            )
            .help(format!(
                "write it in quotes: {}; if `//` starts a comment, put a space before it",
                quoted(meant)
            )),
    );
}

/// The span of an entry's value alone (a property's span also covers `key=`).
pub(crate) fn value_span(entry: &KdlEntry, source: &str) -> SourceSpan {
    let span = entry.span();
    let Some(repr) = entry.format().map(|f| f.value_repr.as_str()) else {
        return span;
    };
    let text = source
        .get(span.offset()..span.offset() + span.len())
        .unwrap_or("");
    match text.rfind(repr) {
        Some(i) if !repr.is_empty() => {
            SourceSpan::from(span.offset() + i..span.offset() + i + repr.len())
        }
        _ => span,
    }
}

/// Whether two documents hold the same nodes, values and properties in the
/// same order, whatever their layout and comments: what `fmt` must keep when
/// it cannot check a file's meaning.
pub(crate) fn same_tree(a: &KdlDocument, b: &KdlDocument) -> bool {
    a.nodes().len() == b.nodes().len()
        && a.nodes().iter().zip(b.nodes()).all(|(x, y)| {
            x.name().value() == y.name().value()
                && x.entries().len() == y.entries().len()
                && x.entries().iter().zip(y.entries()).all(|(e, f)| {
                    e.name().map(|n| n.value()) == f.name().map(|n| n.value())
                        && e.value() == f.value()
                })
                && match (x.children(), y.children()) {
                    (Some(c), Some(d)) => same_tree(c, d),
                    (None, None) => true,
                    _ => false,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdl_numbers() {
        for ok in [
            "0", "8000", "-1", "+2", "1.5", "1e3", "1.5E-3", "0xff", "0o17", "0b1_0", "1_000",
        ] {
            assert!(is_kdl_number(ok), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "24h",
            "1.",
            "0x",
            "1e",
            "20/s",
            "1.2.3",
            "8000:1",
        ] {
            assert!(!is_kdl_number(bad), "{bad}");
        }
    }

    #[test]
    fn words_that_need_quotes() {
        for word in [
            "127.0.0.1:8000",
            "/api/*",
            "24h",
            "https://x",
            "[::1]:80",
            "20/s",
            "null",
        ] {
            assert!(quoting_reason(word).is_some(), "{word}");
        }
        for word in [
            "localhost:8000",
            "8000",
            "*.example.com",
            ":8080",
            "idle-timeout",
            "#true",
        ] {
            assert_eq!(quoting_reason(word), None, "{word}");
        }
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
