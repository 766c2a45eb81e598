//! `import "sites/*.kdl"`: more sites from other files, relative to the file
//! that imports them.
//!
//! Each imported file is parsed on its own, so its errors name its own path,
//! line and column; it may hold sites and further imports, never `options`
//! (there is one options block, in the main file). The pattern is a path with
//! at most one `*`, in its last component (`sites/*.kdl`); matches are taken
//! in name order, and a pattern that matches nothing is an error (a typo would
//! otherwise drop sites silently). A file that imports itself, directly or
//! through others, is an error at the `import` line that closes the cycle.
//! Checks across files (an address given in two files, a port used for HTTP
//! in one and HTTPS in another) run once everything is read.

use std::path::{Path, PathBuf};

use miette::SourceSpan;

use super::env::Lookup;
use super::error::{ConfigError, Problem, Problems};
use super::model::{Config, Scheme, Site};
use super::paths;
use super::reader::Directive;

const USAGE: &str = "import \"sites/*.kdl\"";

/// Reads an `import` line: one path pattern.
pub(crate) fn directive(
    d: &Directive<'_>,
    problems: &mut Problems,
) -> Option<(String, SourceSpan)> {
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    let pattern = arg.parse_string("a file pattern", USAGE, pattern, problems)?;
    Some((pattern, arg.span))
}

fn pattern(s: &str) -> Result<String, super::values::Invalid> {
    let invalid = |m: &str| {
        Err(super::values::Invalid::new(m.to_string())
            .help("write a file, or files with one * in the name: import \"sites/*.kdl\""))
    };
    if s.is_empty() {
        return invalid("the import pattern is empty");
    }
    let (dir, name) = split(s);
    if dir.contains('*') || name.matches('*').count() > 1 {
        return invalid(&format!("`{s}` has a * bellhop can't expand"));
    }
    Ok(s.to_string())
}

/// `sites/*.kdl` → (`sites`, `*.kdl`).
fn split(pattern: &str) -> (&str, &str) {
    match pattern.rfind('/') {
        Some(i) => (&pattern[..i.max(1)], &pattern[i + 1..]),
        None => ("", pattern),
    }
}

/// One file of the import tree: where it is and its text, for error reports.
pub(crate) struct File<'a> {
    pub path: &'a Path,
    pub source: &'a str,
}

impl File<'_> {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn error(&self, problem: Problem) -> ConfigError {
        ConfigError::new(&self.name(), self.source, vec![problem])
    }
}

/// Everything the walk over the import tree carries along.
pub(crate) struct Walk<'e> {
    /// `{env.NAME}` lookup, the same for every file.
    pub env: Lookup<'e>,
    /// Files being read, outermost first (canonical paths): the cycle check.
    pub chain: Vec<PathBuf>,
    /// The file each site of the merged config came from, in order.
    pub origins: Vec<PathBuf>,
}

/// Reads the files `imports` (written in `file`) name and appends their sites
/// to `config`, depth first.
pub(crate) fn follow(
    file: &File<'_>,
    imports: Vec<(String, SourceSpan)>,
    config: &mut Config,
    walk: &mut Walk<'_>,
) -> Result<(), ConfigError> {
    let base = file.path.parent().unwrap_or(Path::new(""));
    for (pattern, span) in imports {
        let matches = expand(base, &pattern).map_err(|e| {
            file.error(Problem::new(e).at(span, "this import").help(
                "import paths are relative to the file that imports them, e.g. import \"sites/*.kdl\"",
            ))
        })?;
        for path in matches {
            let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if walk.chain.contains(&canonical) {
                return Err(file.error(
                    Problem::new(format!("{} imports itself", path.display()))
                        .at(span, "closes an import cycle")
                        .help("each file may be imported once along a chain; remove this import or narrow its pattern"),
                ));
            }
            let source = std::fs::read_to_string(&path).map_err(|e| {
                file.error(
                    Problem::new(format!("cannot read {}: {e}", path.display()))
                        .at(span, "imported here")
                        .help("check the file's permissions; a Proxyfile must be UTF-8 text"),
                )
            })?;
            let name = path.display().to_string();
            let parsed = super::parse_source(&source, &name, walk.env, Some(&config.options))?;
            let mut sub = parsed.config;
            if let Some(dir) = path.parent() {
                paths::resolve(&mut sub, dir);
            }
            walk.origins
                .extend(std::iter::repeat_n(path.clone(), sub.sites.len()));
            config.sites.extend(sub.sites);
            walk.chain.push(canonical);
            follow(
                &File {
                    path: &path,
                    source: &source,
                },
                parsed.imports,
                config,
                walk,
            )?;
            walk.chain.pop();
        }
    }
    Ok(())
}

/// The files a pattern names under `base`, sorted; an error when none exists.
fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let (dir, name) = split(pattern);
    let dir = base.join(dir);
    let Some((prefix, suffix)) = name.split_once('*') else {
        let path = base.join(pattern);
        return if path.is_file() {
            Ok(vec![path])
        } else {
            Err(format!("import: {} does not exist", path.display()))
        };
    };
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| format!("import: cannot list {}: {e}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let file_name = entry.file_name();
            let Some(n) = file_name.to_str() else {
                return false;
            };
            // `*` never matches a hidden file (editor swap files, `.#x.kdl`).
            !n.starts_with('.')
                && n.len() >= prefix.len() + suffix.len()
                && n.starts_with(prefix)
                && n.ends_with(suffix)
        })
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    if found.is_empty() {
        return Err(format!(
            "import: no file matches {}",
            dir.join(name).display()
        ));
    }
    found.sort();
    Ok(found)
}

/// Checks across files: an address in two files, a port used for plain HTTP
/// in one file and HTTPS in another. Within one file the parser already
/// reported these with spans; here the message names both files.
pub(crate) fn check_across(config: &Config, origins: &[PathBuf]) -> Result<(), ConfigError> {
    let mut seen: Vec<(&Site, &Path)> = Vec::new();
    for (site, origin) in config.sites.iter().zip(origins) {
        for address in &site.addresses {
            let port = address.effective_port(&config.options);
            for (other, other_origin) in &seen {
                for theirs in &other.addresses {
                    let their_port = theirs.effective_port(&config.options);
                    let message = if theirs.scheme == address.scheme
                        && theirs.host == address.host
                        && their_port == port
                    {
                        format!("address `{address}` is given twice")
                    } else if port != 0 && their_port == port && theirs.scheme != address.scheme {
                        let scheme = |s| {
                            if s == Scheme::Https {
                                "HTTPS"
                            } else {
                                "plain HTTP"
                            }
                        };
                        format!(
                            "port {port} is used for {} by `{address}` and for {} by `{theirs}`",
                            scheme(address.scheme),
                            scheme(theirs.scheme)
                        )
                    } else {
                        continue;
                    };
                    return Err(ConfigError::without_source(
                        Problem::new(format!(
                            "{message}: in {} and in {}",
                            other_origin.display(),
                            origin.display()
                        ))
                        .help("each address belongs to one site and a port speaks one protocol; change or remove one of the two"),
                    ));
                }
            }
        }
        seen.push((site, origin));
    }
    Ok(())
}
