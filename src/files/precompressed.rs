//! Precompressed siblings: `app.css.zst` and `app.css.gz` next to `app.css`,
//! made at build time with the strongest settings, sent instead of compressing
//! on every request.
//!
//! A sibling is sent when the client's `Accept-Encoding` allows its coding
//! (zstd preferred over gzip), with `Content-Encoding`, the plain file's
//! `Content-Type` and its own validators. Whenever any sibling exists, every
//! answer for the file carries `Vary: Accept-Encoding`, so a cache never hands
//! the compressed bytes to a client that cannot read them.

use std::path::{Path, PathBuf};

use http::HeaderValue;

use crate::config::Encoding;
use crate::encode;

/// Codings looked for, in preference order, with their file suffix.
const SIBLINGS: [(Encoding, &str); 2] = [(Encoding::Zstd, "zst"), (Encoding::Gzip, "gz")];

/// The sibling to send for `path`, and whether any exists (for `Vary`).
pub(super) struct Choice {
    /// The sibling's path and coding, when the client accepts one that exists.
    pub sibling: Option<(PathBuf, Encoding)>,
    /// Some sibling exists, so the answer depends on `Accept-Encoding`.
    pub vary: bool,
}

/// Looks for siblings of `path` (already resolved under `root`); a sibling
/// must itself be a regular file under `root` (a symlink out is ignored).
/// Blocking: called from the file handler's blocking trip.
pub(super) fn choose(root: &Path, path: &Path, accept: Option<&HeaderValue>) -> Choice {
    let mut existing: Vec<(PathBuf, Encoding)> = Vec::new();
    for (encoding, suffix) in SIBLINGS {
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(suffix);
        let candidate = PathBuf::from(name);
        let inside = std::fs::canonicalize(&candidate)
            .is_ok_and(|resolved| resolved.starts_with(root) && resolved.is_file());
        if inside {
            existing.push((candidate, encoding));
        }
    }
    let vary = !existing.is_empty();
    let codings: Vec<Encoding> = existing.iter().map(|(_, e)| *e).collect();
    let sibling = encode::negotiate(accept, &codings)
        .and_then(|chosen| existing.into_iter().find(|(_, e)| *e == chosen));
    Choice { sibling, vary }
}
