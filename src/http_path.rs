//! One spelling for every request path, so that routes, access rules, auth,
//! files and the upstream all agree on what was asked for.
//!
//! A proxy that matches `/api/../admin/x` as written while the backend resolves
//! it to `/admin/x` lets a client pick an open route and reach a protected one.
//! So the path is normalized once, before anything is keyed on it, and the
//! upstream gets the normalized path:
//!
//! - percent-escapes of unreserved characters (RFC 3986 §2.3: letters, digits,
//!   `-._~`) are decoded (`%2e` → `.`, `%41` → `A`); other escapes stay, with
//!   upper-case hex (§6.2.2.1), and raw bytes outside ASCII are escaped;
//! - empty segments collapse (`//` → `/`, like nginx's `merge_slashes`): a
//!   backend that merges slashes itself must not see `//admin` while the
//!   router saw something else than `/admin`;
//! - dot segments are removed (§5.2.4); `..` never climbs above `/`;
//! - what cannot be made unambiguous is refused (the caller answers 400):
//!   `%00`, a raw `\` (some servers read it as `/`), a bad escape, overlong
//!   UTF-8 (`%c0%ae` is a `.` to a lax decoder), a dot segment hidden behind
//!   an encoded separator (`..%2F`, `%5C..`) or a path parameter (`..;x`,
//!   which Java servers read as `..`), and a path not starting with `/`.
//!
//! An encoded `/` (`%2F`) or `\` (`%5C`) in a segment stays encoded and is not
//! a separator. Matching is case-sensitive, as paths are (RFC 3986 §6.2.2.1).
//!
//! The common case, a path without escapes that is already normal, is
//! recognised in one pass over its bytes and costs no allocation.

use std::borrow::Cow;

use http::uri::PathAndQuery;
use http::Uri;

/// Why a request path cannot be given one meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The path does not start with `/` (and is not `*` for OPTIONS).
    #[error("the request path must start with `/`")]
    NotAbsolute,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape in the request path")]
    BadEscape,
    /// `%00`.
    #[error("NUL in the request path")]
    Nul,
    /// A raw backslash, which some servers treat as `/`.
    #[error("backslash in the request path")]
    Backslash,
    /// An overlong UTF-8 sequence, e.g. `%c0%ae` for `.`.
    #[error("overlong UTF-8 in the request path")]
    Overlong,
    /// A dot segment behind `%2F`/`%5C` or before `;`, which a next hop may resolve.
    #[error("ambiguous dot segment in the request path")]
    HiddenDotSegment,
}

/// The normal form of `path` (no query), borrowed when it already is normal.
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, Refused> {
    if !path.starts_with('/') {
        return Err(Refused::NotAbsolute);
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(path).map(Cow::Owned)
}

/// `uri` with its path replaced by `path`, query and authority kept.
/// `None` only if `path` holds bytes a URI may not (never for a path that
/// [`normalize`] or a prefix strip produced from a valid URI).
pub(crate) fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(target).ok()?);
    Uri::from_parts(parts).ok()
}

/// Whether a path starting with `/` is already in normal form: no escape, no
/// backslash, no byte outside ASCII, no empty segment except a final one (the
/// trailing slash), no dot segment.
fn is_normal(path: &[u8]) -> bool {
    if path
        .iter()
        .any(|&b| b == b'%' || b == b'\\' || !b.is_ascii())
    {
        return false;
    }
    let mut segments = path[1..].split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || dots(segment).is_some() {
            return false;
        }
    }
    true
}

/// A dot segment, `.` or `..`, also with a `;parameter` behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dots {
    One,
    Two,
}

/// Which dot segment `segment` is, reading only up to a `;`.
fn dots(segment: &[u8]) -> Option<Dots> {
    let name = segment.split(|&b| b == b';').next().unwrap_or(segment);
    match name {
        b"." => Some(Dots::One),
        b".." => Some(Dots::Two),
        _ => None,
    }
}

/// The slow path: decode, check and resolve each segment.
fn rebuild(path: &str) -> Result<String, Refused> {
    let mut out = String::with_capacity(path.len());
    // Where each segment written to `out` starts (at its `/`), for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut trailing_slash = false;
    for raw in path[1..].split('/') {
        let segment = decode(raw)?;
        trailing_slash = false;
        if segment.contains(';') || segment.contains("%2F") || segment.contains("%5C") {
            check_hidden_dots(&segment)?;
        }
        match dots(segment.as_bytes()) {
            _ if segment.is_empty() => trailing_slash = true,
            Some(Dots::One) => trailing_slash = true,
            Some(Dots::Two) => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                trailing_slash = true;
            }
            None => {
                starts.push(out.len());
                out.push('/');
                out.push_str(&segment);
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Refuses a segment that holds a dot segment once `%2F`/`%5C` are read as
/// separators, or before a `;` (only the plain `.;x` / `..;x` forms reach
/// here as whole segments; these catch `a%2F..`, `..%5Cb`).
fn check_hidden_dots(segment: &str) -> Result<(), Refused> {
    let hidden = segment
        .split("%2F")
        .flat_map(|part| part.split("%5C"))
        .any(|part| dots(part.as_bytes()).is_some());
    if hidden {
        Err(Refused::HiddenDotSegment)
    } else {
        Ok(())
    }
}

/// One raw segment with unreserved escapes decoded, the others in upper case
/// and raw non-ASCII bytes escaped; refuses NUL, backslashes, bad escapes and overlong UTF-8.
fn decode(raw: &str) -> Result<String, Refused> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    // The previous byte as decoded, to spot overlong multi-byte sequences.
    let mut previous = 0u8;
    let mut i = 0;
    while i < bytes.len() {
        let (byte, escaped) = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(Refused::BadEscape)?;
                let value = (hex_digit(hex[0])? << 4) | hex_digit(hex[1])?;
                i += 3;
                (value, true)
            }
            b'\\' => return Err(Refused::Backslash),
            b => {
                i += 1;
                (b, false)
            }
        };
        if byte == 0 {
            return Err(Refused::Nul);
        }
        if overlong(previous, byte) {
            return Err(Refused::Overlong);
        }
        previous = byte;
        // Raw non-ASCII bytes are escaped too, so the normal form is ASCII.
        if is_unreserved(byte) || (!escaped && byte.is_ascii()) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        }
    }
    Ok(out)
}

const HEX: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F',
];

fn hex_digit(b: u8) -> Result<u8, Refused> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(Refused::BadEscape),
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `byte` after `previous` makes an overlong UTF-8 encoding: `C0`/`C1`
/// lead bytes always do, `E0` needs a second byte from `A0`, `F0` from `90`.
fn overlong(previous: u8, byte: u8) -> bool {
    matches!(byte, 0xC0 | 0xC1)
        || (previous == 0xE0 && (0x80..0xA0).contains(&byte))
        || (previous == 0xF0 && (0x80..0x90).contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, Refused> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/",
            "/a/b.html",
            "/.well-known/x",
            "/a..b/..c/c..",
            "/a;b=c",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_in_every_spelling_are_removed() {
        for (input, want) in [
            ("/api/../style.css", "/style.css"),
            ("/api/%2e%2e/style.css", "/style.css"),
            ("/api/.%2E/style.css", "/style.css"),
            ("/api/%2E./style.css", "/style.css"),
            ("/a/./b", "/a/b"),
            ("/a/%2e/b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a//b", "/a/b"),
            ("//admin/x", "/admin/x"),
            ("/a/b//", "/a/b/"),
            ("/%41%7e%5f", "/A~_"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%5Cb", "/a%5Cb"),
            ("/%20x", "/%20x"),
        ] {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (input, why) in [
            ("api", Refused::NotAbsolute),
            ("*", Refused::NotAbsolute),
            ("", Refused::NotAbsolute),
            ("/a%00b", Refused::Nul),
            ("/a%0", Refused::BadEscape),
            ("/a%zz", Refused::BadEscape),
            ("/a\\..\\b", Refused::Backslash),
            ("/%c0%ae%c0%ae/x", Refused::Overlong),
            ("/%C1%9C", Refused::Overlong),
            ("/%e0%80%ae", Refused::Overlong),
            ("/%f0%80%80%ae", Refused::Overlong),
            ("/a/..%2fadmin", Refused::HiddenDotSegment),
            ("/a/%2e%2e%2Fadmin", Refused::HiddenDotSegment),
            ("/a/x%5C..", Refused::HiddenDotSegment),
            ("/public/..;/admin", Refused::HiddenDotSegment),
            ("/public/.;x/admin", Refused::HiddenDotSegment),
        ] {
            assert_eq!(norm(input), Err(why), "{input}");
        }
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for p in ["/a/../b//c/./%2e%2E/d%2f%41", "/x/%C3%A9/", "/.."] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).as_deref(), Ok(once.as_str()));
        }
    }

    #[test]
    fn the_query_is_kept_when_the_path_changes() {
        let uri: Uri = "http://a.test/x/../y?q=%2e%2e/..".parse().unwrap();
        let new = with_path(&uri, "/y").unwrap();
        assert_eq!(new.to_string(), "http://a.test/y?q=%2e%2e/..");
        let origin: Uri = "/a/./b".parse().unwrap();
        assert_eq!(with_path(&origin, "/a/b").unwrap(), "/a/b");
    }
}
