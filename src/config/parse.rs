//! The top level of a Proxyfile: one optional `options` block and the sites.

use kdl::KdlDocument;
use miette::SourceSpan;

use super::directives::PROXY_SETTINGS;
use super::error::{Problem, Problems};
use super::model::{Config, Options};
use super::options::{self, OptionsBlock, OPTION_NAMES};
use super::reader::Directive;
use super::site::{self, SITE_DIRECTIVES};
use super::validate;

/// One file read: its config and the `import` lines still to follow.
pub(crate) struct Parsed {
    /// The options (the main file's, for an imported file) and this file's sites.
    pub config: Config,
    /// `import "sites/*.kdl"` patterns as written, with their spans.
    pub imports: Vec<(String, SourceSpan)>,
}

/// Reads a parsed KDL document into a [`Config`], recording every problem.
/// Returns `None` if anything could not be read. `inherited` is the main
/// file's options when this file is imported: it may not have its own.
pub(crate) fn config(
    doc: &KdlDocument,
    src: &str,
    inherited: Option<&Options>,
    problems: &mut Problems,
) -> Option<Parsed> {
    let mut options: Option<(OptionsBlock, Directive<'_>)> = None;
    let mut sites = Vec::new();
    let mut imports = Vec::new();
    let mut all_read = true;
    for node in doc.nodes() {
        let d = Directive::new(node, src);
        if d.name() == "import" {
            imports.extend(super::import::directive(&d, problems));
        } else if d.name() == "options" && inherited.is_some() {
            problems.push(
                Problem::new("an imported file can't have an `options` block")
                    .at(d.name_span(), "options in an imported file")
                    .help("move these options into the main Proxyfile's options block"),
            );
        } else if d.name() == "options" {
            match &options {
                Some((_, first)) => problems.push(
                    Problem::new("`options` is given twice")
                        .at(d.name_span(), "second options block")
                        .at(first.name_span(), "first options block")
                        .help("merge them into one options block"),
                ),
                None => options = Some((options::options(node, src, problems), d)),
            }
        } else if let Some(problem) = misplaced(&d) {
            problems.push(problem);
        } else {
            match site::site(&d, problems) {
                Some(s) => sites.push(s),
                None => all_read = false,
            }
        }
    }
    if sites.is_empty() && imports.is_empty() && problems.is_empty() {
        let mut problem = Problem::new("the Proxyfile defines no sites")
            .help("add one, e.g. app.example.com { proxy localhost:8000 }");
        if let Some((_, d)) = &options {
            problem = problem.at(d.name_span(), "only options here");
        }
        problems.push(problem);
    }
    let options = match inherited {
        Some(options) => OptionsBlock::inherited(options.clone()),
        None => options.map(|(o, _)| o).unwrap_or_default(),
    };
    validate::check(&options, &sites, problems);
    if !all_read || !problems.is_empty() {
        return None;
    }
    Some(Parsed {
        config: Config {
            options: options.options,
            sites: sites.into_iter().map(|s| s.site).collect(),
        },
        imports,
    })
}

/// A directive or option written at the top level, where only sites belong.
fn misplaced(d: &Directive<'_>) -> Option<Problem> {
    let name = d.name();
    let help = if SITE_DIRECTIVES.contains(&name) {
        format!("`{name}` goes inside a site block, e.g. app.example.com {{ {name} … }}")
    } else if OPTION_NAMES.contains(&name) {
        format!("`{name}` goes inside the options block, e.g. options {{ {name} … }}")
    } else if PROXY_SETTINGS.contains(&name) {
        format!(
            "`{name}` goes inside a proxy block, e.g. proxy localhost:8000 {{ {name} \"30s\" }}"
        )
    } else {
        return None;
    };
    Some(
        Problem::new(format!("`{name}` is not a site address"))
            .at(d.name_span(), "directive outside a site")
            .help(format!(
                "{help}; for a host with this name, write \"https://{name}\""
            )),
    )
}
