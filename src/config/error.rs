//! The error type of the config module and how it is rendered.
//!
//! Every check in the parser records a [`Problem`]: a message, the spans it is about
//! and a suggested fix. A [`ConfigError`] holds all problems found in one file, the
//! first one in front and the others as miette `related` diagnostics, so one run
//! of `bellhop validate` shows as many mistakes as could be found.

use std::fmt;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use miette::{SourceCode, SourceSpan};

/// A Proxyfile that could not be read, parsed or validated.
///
/// It is a [`miette::Diagnostic`]: print it with [`ConfigError::render`] for the
/// plain-text report with file name, line, column, caret and help, or hand it to
/// miette's own report handler for colour.
#[derive(Debug)]
pub struct ConfigError {
    /// The file as read, named for the report; `None` when it could not be read.
    source_code: Option<NamedSource<String>>,
    /// What went wrong, in source order; never empty.
    problems: Vec<Problem>,
}

impl ConfigError {
    /// An error for a file that exists as text; `problems` must not be empty.
    pub(crate) fn new(file_name: &str, source: &str, problems: Vec<Problem>) -> Self {
        ConfigError {
            source_code: Some(NamedSource::new(file_name, source.to_string())),
            problems: nonempty(problems),
        }
    }

    /// An error that has no source text to point into (e.g. the file is unreadable).
    pub(crate) fn without_source(problem: Problem) -> Self {
        ConfigError {
            source_code: None,
            problems: vec![problem],
        }
    }

    /// All problems, the primary one first.
    pub(crate) fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The report as plain text (no ANSI colour) in miette's graphical style:
    /// message, `file:line:col`, the source line with a caret under the offending
    /// text, and the help. The CLI prints this; snapshot tests compare it.
    pub fn render(&self) -> String {
        // A fixed width keeps the output identical on every terminal and in tests.
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_links(false)
            .with_width(100)
            .with_context_lines(1);
        let mut out = String::new();
        if handler.render_report(&mut out, self).is_err() {
            // Rendering into a String only fails if a span lies outside the source,
            // which would be a bug here; still give the user the messages.
            out = self
                .problems
                .iter()
                .map(|p| format!("error: {p}\n"))
                .collect();
        }
        out
    }
}

/// Guards the "never empty" invariant without panicking.
fn nonempty(mut problems: Vec<Problem>) -> Vec<Problem> {
    if problems.is_empty() {
        problems.push(Problem::new("invalid Proxyfile"));
    }
    problems
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.first() {
            Some(first) => write!(f, "{first}"),
            None => write!(f, "invalid Proxyfile"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Diagnostic for ConfigError {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source_code.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.problems.first().and_then(|p| p.labels())
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problems.first().and_then(|p| p.help())
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.problems.len() < 2 {
            return None;
        }
        Some(Box::new(
            self.problems[1..].iter().map(|p| p as &dyn Diagnostic),
        ))
    }
}

/// One mistake in a Proxyfile: what is wrong, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// One sentence saying what is wrong (and, where useful, what was expected).
    pub message: String,
    /// The primary span first, then any secondary ones (e.g. an earlier duplicate).
    pub labels: Vec<(SourceSpan, String)>,
    /// How to fix it, ideally with the corrected Proxyfile text.
    pub help: Option<String>,
}

impl Problem {
    /// A problem with a message and nothing else yet.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    /// Adds a labelled span; the first one added is where the caret goes.
    pub(crate) fn at(mut self, span: SourceSpan, label: impl Into<String>) -> Self {
        self.labels.push((span, label.into()));
        self
    }

    /// Sets the suggested fix.
    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Byte offset of the primary span, for ordering problems by position.
    pub(crate) fn offset(&self) -> usize {
        self.labels.first().map_or(0, |(s, _)| s.offset())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().enumerate().map(
            |(i, (span, text))| {
                let text = (!text.is_empty()).then(|| text.clone());
                if i == 0 {
                    LabeledSpan::new_primary_with_span(text, *span)
                } else {
                    LabeledSpan::new_with_span(text, *span)
                }
            },
        )))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

/// Problems found so far while checking one file.
///
/// Checks record problems here and carry on where they can, so one run reports
/// several independent mistakes instead of stopping at the first.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    /// Records a problem.
    pub(super) fn push(&mut self, problem: Problem) {
        self.list.push(problem);
    }

    /// Whether nothing has been recorded.
    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many problems have been recorded; comparing counts before and after a
    /// step tells whether that step failed, so follow-up errors can be skipped.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Turns the recorded problems, ordered by position in the file, into an error.
    pub(super) fn into_error(mut self, file_name: &str, source: &str) -> ConfigError {
        // Stable sort: problems at the same place keep the order they were found in.
        self.list.sort_by_key(Problem::offset);
        ConfigError::new(file_name, source, self.list)
    }
}
