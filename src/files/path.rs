//! From a request path to a path under the root, refusing every way out of it.
//!
//! This is the lexical half of the check: the path is percent-decoded *first*,
//! then split, so `%2e%2e` and `%2f` are seen for what they are, and any `..`
//! segment is refused outright rather than resolved. The other half (symlinks
//! that lead outside the root) needs the file system: see `Files::resolve`.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// The relative path a request path names, or `None` when it must not be served
/// (a `..` segment, a NUL byte, a backslash, bytes that are not UTF-8, or a
/// hidden segment). Empty and `.` segments are skipped, so `/a//./b` is `a/b`.
///
/// Hidden files and directories (`.git/`, `.env`, `.htpasswd`) are refused:
/// deployments copy them into site roots by accident far more often than on
/// purpose. `.well-known/` is the exception, as its RFC 8615 purpose is to be
/// served.
pub(super) fn relative(request_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(request_path).decode_utf8().ok()?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains(['\0', '\\']) => return None,
            s if s.starts_with('.') && s != ".well-known" => return None,
            s => out.push(s),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_map_below_the_root() {
        assert_eq!(relative("/"), Some(PathBuf::new()));
        assert_eq!(relative("/a/b.html"), Some(PathBuf::from("a/b.html")));
        assert_eq!(relative("/a//./b"), Some(PathBuf::from("a/b")));
        assert_eq!(
            relative("/my%20file.txt"),
            Some(PathBuf::from("my file.txt"))
        );
        assert_eq!(relative("/caf%C3%A9"), Some(PathBuf::from("café")));
    }

    #[test]
    fn every_spelling_of_dot_dot_is_refused() {
        for p in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/a/..",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/x",
            "/a%2f..%2f..%2fetc%2fpasswd",
            "/..%5cetc",
            "/a%00.html",
            "/%ff",
        ] {
            assert_eq!(relative(p), None, "{p}");
        }
    }

    #[test]
    fn hidden_segments_are_refused_but_well_known_is_served() {
        for p in ["/.git/config", "/.env", "/a/.htpasswd", "/%2egit/HEAD"] {
            assert_eq!(relative(p), None, "{p}");
        }
        assert_eq!(
            relative("/.well-known/security.txt"),
            Some(PathBuf::from(".well-known/security.txt"))
        );
    }
}
