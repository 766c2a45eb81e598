//! Reading one KDL node as a Proxyfile directive: its arguments, properties and
//! block, with a precise diagnostic for every shape that doesn't fit.
//!
//! The directive parsers in `options.rs` and `site.rs` only say what they expect
//! ("one duration", "properties: burst"); this module checks it and reports the
//! mismatch at the right span.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::error::{Problem, Problems};
use super::suggest::did_you_mean;
use super::syntax::{quoted, value_span};
use super::values::Invalid;

/// A node read as a directive.
#[derive(Clone, Copy)]
pub(crate) struct Directive<'a> {
    node: &'a KdlNode,
    src: &'a str,
}

impl<'a> Directive<'a> {
    pub(super) fn new(node: &'a KdlNode, src: &'a str) -> Self {
        Directive { node, src }
    }

    /// A node of this directive's block, read as a directive.
    pub(super) fn child(&self, node: &'a KdlNode) -> Directive<'a> {
        Directive::new(node, self.src)
    }

    /// The directive's name, e.g. `proxy`.
    pub(super) fn name(&self) -> &'a str {
        self.node.name().value()
    }

    /// Where the name is written: errors about the directive as a whole point here.
    pub(super) fn name_span(&self) -> SourceSpan {
        self.node.name().span()
    }

    /// The nested block, if any.
    pub(super) fn children(&self) -> Option<&'a KdlDocument> {
        self.node.children()
    }

    /// Positional arguments in order.
    pub(super) fn args(&self) -> Vec<Value<'a>> {
        self.node
            .entries()
            .iter()
            .filter(|e| e.name().is_none())
            .map(|e| Value::new(e, self.src))
            .collect()
    }

    /// The value of property `key` (the last one if repeated; repeats are
    /// reported by [`Directive::check_props`]).
    pub(super) fn prop(&self, key: &str) -> Option<Value<'a>> {
        self.node
            .entries()
            .iter()
            .rev()
            .find(|e| e.name().is_some_and(|n| n.value() == key))
            .map(|e| Value::new(e, self.src))
    }

    /// Reports properties not in `allowed` (with a did-you-mean) and repeated ones.
    /// `hint` is extra help for unknown ones, e.g. where the setting goes instead.
    pub(super) fn check_props(
        &self,
        allowed: &[&str],
        hint: Option<&str>,
        problems: &mut Problems,
    ) {
        let mut seen: Vec<(&str, SourceSpan)> = Vec::new();
        for entry in self.node.entries() {
            let Some(key) = entry.name() else { continue };
            let span = key.span();
            if !allowed.contains(&key.value()) {
                let mut help = match (did_you_mean(key.value(), allowed), allowed) {
                    (Some(s), _) => format!("did you mean `{s}`?"),
                    (None, []) => format!("`{}` takes no properties", self.name()),
                    (None, [one]) => format!("the only property of `{}` is `{one}`", self.name()),
                    (None, many) => {
                        format!("the properties of `{}` are {}", self.name(), list(many))
                    }
                };
                if let Some(hint) = hint {
                    help = format!("{help}; {hint}");
                }
                problems.push(
                    Problem::new(format!(
                        "unknown property `{}` on `{}`",
                        key.value(),
                        self.name()
                    ))
                    .at(span, "unknown property")
                    .help(help),
                );
            } else if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key.value()) {
                problems.push(
                    Problem::new(format!("property `{}` is given twice", key.value()))
                        .at(span, "given again here")
                        .at(*first, "first given here")
                        .help("keep one of them"),
                );
            } else {
                seen.push((key.value(), span));
            }
        }
    }

    /// The span of the directive's block from `{` to `}` (kdl's own span of a
    /// block covers only what is inside the braces).
    pub(super) fn block_span(&self) -> Option<SourceSpan> {
        let inner = self.node.children()?.span();
        let start = self.src.get(..inner.offset())?.rfind('{')?;
        let after = inner.offset() + inner.len();
        let end = after + self.src.get(after..)?.find('}')? + 1;
        Some(SourceSpan::from(start..end))
    }

    /// Reports a block where none belongs.
    pub(super) fn check_no_children(&self, problems: &mut Problems) {
        if let Some(children) = self.node.children() {
            problems.push(
                Problem::new(format!("`{}` does not take a block", self.name()))
                    .at(
                        self.block_span().unwrap_or(children.span()),
                        "unexpected block",
                    )
                    .help("remove the `{ … }`"),
            );
        }
    }

    /// Checks the number of arguments; `usage` is a correct example shown as help.
    /// Returns whether the count is right.
    pub(super) fn check_arg_count(
        &self,
        min: usize,
        max: usize,
        usage: &str,
        problems: &mut Problems,
    ) -> bool {
        let args = self.args();
        if args.len() < min {
            let what = match min {
                1 => "an argument".to_string(),
                n => format!("{n} arguments"),
            };
            problems.push(
                Problem::new(format!("`{}` needs {what}", self.name()))
                    .at(self.name_span(), "missing argument")
                    .help(format!("for example: {usage}")),
            );
            return false;
        }
        if args.len() > max {
            let extra = &args[max];
            let expected = match max {
                0 => "no arguments".to_string(),
                1 => "one argument".to_string(),
                n => format!("{n} arguments"),
            };
            problems.push(
                Problem::new(format!("`{}` takes {expected}", self.name()))
                    .at(extra.span, "unexpected argument")
                    .help(format!("for example: {usage}")),
            );
            return false;
        }
        true
    }
}

/// An argument or property value and where it is written.
#[derive(Clone, Copy)]
pub(crate) struct Value<'a> {
    /// The KDL value.
    pub value: &'a KdlValue,
    /// The value's own span (for a property, without `key=`).
    pub span: SourceSpan,
}

impl<'a> Value<'a> {
    fn new(entry: &'a KdlEntry, src: &str) -> Self {
        Value {
            value: entry.value(),
            span: value_span(entry, src),
        }
    }

    /// "expected a port, found a string", pointing at this value.
    fn wrong_type(&self, what: &str, example: &str, found: &KdlValue) -> Problem {
        Problem::new(format!("expected {what}, found {}", describe(found)))
            .at(self.span, format!("expected {what}"))
            .help(format!("for example: {example}"))
    }

    /// The value as a string, or a problem saying `what` was expected.
    pub(super) fn string(
        &self,
        what: &str,
        example: &str,
        problems: &mut Problems,
    ) -> Option<&'a str> {
        match self.value {
            KdlValue::String(s) => Some(s),
            other => {
                problems.push(self.wrong_type(what, example, other));
                None
            }
        }
    }

    /// The value as an integer, or a problem saying `what` was expected.
    pub(super) fn integer(
        &self,
        what: &str,
        example: &str,
        problems: &mut Problems,
    ) -> Option<i128> {
        match self.value {
            KdlValue::Integer(n) => Some(*n),
            KdlValue::String(s) if s.parse::<i128>().is_ok() => {
                problems.push(
                    Problem::new(format!("expected {what}, found the string {}", quoted(s)))
                        .at(self.span, "quoted number")
                        .help(format!("write numbers without quotes, e.g. {example}")),
                );
                None
            }
            other => {
                problems.push(self.wrong_type(what, example, other));
                None
            }
        }
    }

    /// A string run through `parse`; failures become a problem labelled `what`.
    pub(super) fn parse_string<T>(
        &self,
        what: &str,
        example: &str,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
        problems: &mut Problems,
    ) -> Option<T> {
        let s = self.string(what, example, problems)?;
        self.check(parse(s), what, problems)
    }

    /// Turns a value parser's result into `Some`, or a problem at this value.
    pub(super) fn check<T>(
        &self,
        result: Result<T, Invalid>,
        what: &str,
        problems: &mut Problems,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let noun = what
                    .strip_prefix("a ")
                    .or_else(|| what.strip_prefix("an "))
                    .unwrap_or(what);
                let problem = Problem::new(e.message).at(self.span, format!("invalid {noun}"));
                problems.push(match e.help {
                    Some(h) => problem.help(h),
                    None => problem,
                });
                None
            }
        }
    }
}

/// How a wrong-typed value is named in a message.
fn describe(value: &KdlValue) -> String {
    match value {
        KdlValue::String(s) => format!("the string {}", quoted(s)),
        KdlValue::Integer(n) => format!("the number {n}"),
        KdlValue::Float(x) => format!("the number {x:?}"),
        KdlValue::Bool(b) => format!("#{b}"),
        KdlValue::Null => "#null".to_string(),
    }
}

/// `a`, `b` and `c` — for listing the names a user could have meant.
pub(crate) fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => format!(
            "{} and `{last}`",
            init.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Records that a once-only directive was seen; reports the second occurrence.
#[derive(Default)]
pub(crate) struct Seen {
    names: Vec<(String, SourceSpan)>,
}

impl Seen {
    /// `true` the first time `d`'s name is seen in this block.
    pub(super) fn first(&mut self, d: &Directive<'_>, problems: &mut Problems) -> bool {
        if let Some((_, first)) = self.names.iter().find(|(n, _)| n == d.name()) {
            problems.push(
                Problem::new(format!("`{}` is set twice in this block", d.name()))
                    .at(d.name_span(), "set again here")
                    .at(*first, "first set here")
                    .help("keep one of them"),
            );
            return false;
        }
        self.names.push((d.name().to_string(), d.name_span()));
        true
    }

    /// Where `name` was seen, if it was.
    pub(super) fn span_of(&self, name: &str) -> Option<SourceSpan> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }
}
