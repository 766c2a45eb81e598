//! Proxyfile → typed [`Config`].
//!
//! This module does no I/O beyond reading the file: it parses KDL, validates every
//! value and reports errors with file, line, column and a suggested fix.
//!
//! The pipeline, one file per step:
//! - `syntax`: text → KDL tree, explaining KDL's quoting traps (uses `lexer`);
//! - `parse` → `options`, `site` → `directives`: tree → typed values, each node
//!   read through `reader`, with string values parsed by `values`;
//! - `validate`: checks that need every site at once (addresses, ports);
//! - `paths`: relative paths made relative to the Proxyfile (in [`load`]).
//!
//! Every check records a problem and carries on, so one run reports as many
//! mistakes as it can; `error` turns them into a [`ConfigError`]. `format` lays a
//! valid file out canonically, keeping its comments.

mod access;
mod bind;
mod directives;
mod env;
mod error;
mod error_page;
mod format;
mod headers;
mod hosts;
mod import;
mod lexer;
mod limits;
mod log;
mod model;
mod options;
mod parse;
mod paths;
mod reader;
mod rewrite;
mod site;
mod storage;
mod suggest;
mod syntax;
mod trusted;
mod upstream_wait;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

pub(crate) use bind::{port_uses, Need};
pub use error::ConfigError;
pub use hosts::{canonical_ip, normalize_host, wildcard_suffix, HostPattern, IpNet};
pub use model::*;
pub(crate) use storage::redact as redact_url;
pub use values::{parse_duration, parse_site_address, parse_upstream};

use error::{Problem, Problems};

/// Reads and parses the Proxyfile at `path`.
///
/// Relative paths inside it (`files`, `tls`, `state-dir`, `acme-ca-root`, unix
/// sockets) are taken relative to the Proxyfile's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        let problem = Problem::new(format!("cannot read Proxyfile {}: {e}", path.display()));
        ConfigError::without_source(match e.kind() {
            std::io::ErrorKind::NotFound => problem.help(
                "check the path; the smallest Proxyfile is one line: app.example.com { proxy localhost:8000 }",
            ),
            std::io::ErrorKind::InvalidData => problem.help("a Proxyfile must be UTF-8 text"),
            _ => problem,
        })
    })?;
    let name = path.display().to_string();
    let parsed = parse_source(&source, &name, &env::process_env, None)?;
    let mut config = parsed.config;
    if let Some(dir) = path.parent() {
        paths::resolve(&mut config, dir);
    }
    if parsed.imports.is_empty() {
        return Ok(config);
    }
    let mut walk = import::Walk {
        env: &env::process_env,
        chain: vec![std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())],
        origins: vec![path.to_path_buf(); config.sites.len()],
    };
    let file = import::File {
        path,
        source: &source,
    };
    import::follow(&file, parsed.imports, &mut config, &mut walk)?;
    import::check_across(&config, &walk.origins)?;
    Ok(config)
}

/// Parses and validates Proxyfile text; `file_name` is only used in error reports.
/// `{env.NAME}` is taken from the process environment.
pub fn parse(source: &str, file_name: &str) -> Result<Config, ConfigError> {
    parse_with_env(source, file_name, &env::process_env)
}

/// [`parse`] with `{env.NAME}` looked up by `env` (tests pass a map).
/// Text alone cannot follow an `import`, so one is an error here; [`load`]
/// follows them.
pub(crate) fn parse_with_env(
    source: &str,
    file_name: &str,
    env: env::Lookup<'_>,
) -> Result<Config, ConfigError> {
    let parsed = parse_source(source, file_name, env, None)?;
    match parsed.imports.first() {
        None => Ok(parsed.config),
        Some((_, span)) => Err(ConfigError::new(
            file_name,
            source,
            vec![Problem::new("`import` needs the Proxyfile's location")
                .at(*span, "import")
                .help("load the Proxyfile from its path (bellhop run/validate), so imports can be found next to it")],
        )),
    }
}

/// One file's text → its config and its `import` lines, unfollowed.
/// `inherited` is the main file's options when this file is imported.
fn parse_source(
    source: &str,
    file_name: &str,
    env: env::Lookup<'_>,
    inherited: Option<&Options>,
) -> Result<parse::Parsed, ConfigError> {
    let mut doc = syntax::parse_kdl(source, file_name)?;
    let mut problems = Problems::default();
    // A value cut short by `//` would only cause confusing follow-up errors
    // ("upstream `unix` has no port"), so stop at the root cause.
    syntax::check_tree(&doc, source, &mut problems);
    if problems.is_empty() {
        env::expand(&mut doc, source, env, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems.into_error(file_name, source));
    }
    match parse::config(&doc, source, inherited, &mut problems) {
        Some(parsed) if problems.is_empty() => Ok(parsed),
        _ => Err(problems.into_error(file_name, source)),
    }
}

/// Lays out a valid Proxyfile canonically, keeping comments.
///
/// The file must parse (so `fmt` never sets a mistake in stone); the result
/// parses to the same [`Config`], and formatting it again changes nothing.
///
/// `import` lines are kept as they are and not followed: each file is
/// formatted on its own (`bellhop fmt sites/a.kdl`).
pub fn format(source: &str, file_name: &str) -> Result<String, ConfigError> {
    let check = |text: &str| {
        parse_source(text, file_name, &env::process_env, None).map(|p| (p.config, p.imports))
    };
    let bug = |what: &str| {
        let problem = Problem::new(format!("cannot format {file_name}: {what}"))
            .help("this is a bug in bellhop; the file itself is valid and was left as it is");
        ConfigError::new(file_name, source, vec![problem])
    };
    let before = match check(source) {
        Ok(before) => Some(before),
        // Formatting is layout: a file that reads variables this shell lacks
        // (`{env.PORT}`, set only in the service's environment) is still
        // formatted, checked by its tree instead of its meaning.
        Err(e) if e.problems().iter().all(env::is_unset) => None,
        Err(e) => return Err(e),
    };
    let formatted = format::format(source).map_err(|_| bug("unexpected token layout"))?;
    // Never hand back text that means something else: check before returning.
    let same = match before {
        Some(before) => check(&formatted)
            .is_ok_and(|after| after.0 == before.0 && same_imports(&after.1, &before.1)),
        None => match (
            syntax::parse_kdl(source, file_name),
            syntax::parse_kdl(&formatted, file_name),
        ) {
            (Ok(a), Ok(b)) => syntax::same_tree(&a, &b),
            _ => false,
        },
    };
    if same {
        Ok(formatted)
    } else {
        Err(bug("the formatted text would change the configuration"))
    }
}

/// Whether two files import the same patterns in the same order (spans aside).
fn same_imports(a: &[(String, miette::SourceSpan)], b: &[(String, miette::SourceSpan)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}
