//! `{env.NAME}` in any string of a Proxyfile: replaced by the environment
//! variable before anything reads the value.
//!
//! `{env.NAME}` must be set (an unset variable is an error at its line and
//! column: a secret that silently became empty is worse than a refused start);
//! `{env.NAME:-fallback}` uses `fallback` when it is unset or empty, as a shell
//! does. Expansion runs on the parsed tree, so a value cannot inject KDL, and
//! spans keep pointing at what the user wrote. `bellhop fmt` works on the text
//! and never expands.

use kdl::{KdlDocument, KdlNode, KdlValue};
use miette::SourceSpan;

use super::error::{Problem, Problems};
use super::syntax::value_span;

/// Looks a variable up; the process environment in production, a map in tests.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment (a variable that is not UTF-8 counts as unset).
/// The end of the message for a variable that is unset and has no default.
const UNSET: &str = "is not set";

/// Whether a problem is only an unset variable: `fmt` can still lay such a
/// file out (on a machine without the service's environment).
pub(crate) fn is_unset(problem: &Problem) -> bool {
    problem.message.starts_with("environment variable `") && problem.message.ends_with(UNSET)
}

pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Expands every `{env.…}` in node names and string values of `doc`.
pub(crate) fn expand(doc: &mut KdlDocument, src: &str, env: Lookup<'_>, problems: &mut Problems) {
    for node in doc.nodes_mut() {
        expand_node(node, src, env, problems);
    }
}

fn expand_node(node: &mut KdlNode, src: &str, env: Lookup<'_>, problems: &mut Problems) {
    let name = node.name().value();
    if name.contains("{env.") {
        let span = node.name().span();
        if let Some(value) = substitute(name, span, src, env, problems) {
            node.name_mut().set_value(value);
        }
    }
    for entry in node.entries_mut() {
        let KdlValue::String(text) = entry.value() else {
            continue;
        };
        if !text.contains("{env.") {
            continue;
        }
        let span = value_span(entry, src);
        if let Some(value) = substitute(text, span, src, env, problems) {
            entry.set_value(KdlValue::String(value));
        }
    }
    if let Some(children) = node.children_mut() {
        expand(children, src, env, problems);
    }
}

/// `text` with each placeholder replaced; `None` after recording a problem.
fn substitute(
    text: &str,
    span: SourceSpan,
    src: &str,
    env: Lookup<'_>,
    problems: &mut Problems,
) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut ok = true;
    while let Some(start) = rest.find("{env.") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('}') else {
            problems.push(
                Problem::new("`{env.` is not closed")
                    .at(narrow(span, src, after), "no closing `}`")
                    .help("write {env.NAME} or {env.NAME:-default}"),
            );
            return None;
        };
        let placeholder = &after[..=end];
        let inner = &after[5..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !valid_name(name) {
            problems.push(
                Problem::new(format!("`{name}` is not an environment variable name"))
                    .at(narrow(span, src, placeholder), "invalid name")
                    .help("names are letters, digits and _, not starting with a digit, e.g. {env.APP_ENV}"),
            );
            ok = false;
        } else {
            match (env(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    problems.push(
                        Problem::new(format!("environment variable `{name}` {UNSET}"))
                            .at(narrow(span, src, placeholder), "unset")
                            .help(format!(
                                "set {name} in bellhop's environment (systemd: Environment= or EnvironmentFile=), or give a default: {{env.{name}:-value}}"
                            )),
                    );
                    ok = false;
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    ok.then_some(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The span of `piece` inside the literal at `span`, when the source spells it
/// out as is (no escapes); otherwise the whole literal.
fn narrow(span: SourceSpan, src: &str, piece: &str) -> SourceSpan {
    let literal = src
        .get(span.offset()..span.offset() + span.len())
        .unwrap_or("");
    let piece = piece.split('}').next().map_or(piece, |p| {
        // Up to and including the `}` when there is one.
        &piece[..(p.len() + 1).min(piece.len())]
    });
    match literal.find(piece) {
        Some(i) => SourceSpan::from(span.offset() + i..span.offset() + i + piece.len()),
        None => span,
    }
}
