//! Validators (`ETag`, `Last-Modified`) and the conditional request headers that
//! use them: `If-None-Match`, `If-Modified-Since` and `If-Range`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderValue};

/// What identifies one version of a file: its size and modification time,
/// and for a precompressed sibling its coding.
#[derive(Debug, Clone, Copy)]
pub(super) struct Validators {
    len: u64,
    modified: Option<SystemTime>,
    coding: Option<&'static str>,
}

impl Validators {
    /// Validators of a file of `len` bytes last modified at `modified` (if known).
    pub(super) fn new(len: u64, modified: Option<SystemTime>) -> Self {
        Validators {
            len,
            modified,
            coding: None,
        }
    }

    /// The same for a precompressed sibling sent with `Content-Encoding: coding`:
    /// its ETag names the coding, so it never equals the plain file's even if
    /// size and mtime happen to match (RFC 9110 §8.8.3: one tag per representation).
    pub(super) fn encoded(mut self, coding: &'static str) -> Self {
        self.coding = Some(coding);
        self
    }

    /// A weak ETag from size and mtime (to the nanosecond): `W/"<size>-<secs>.<nanos>"` in hex.
    /// Weak because equal size and mtime suggest, not prove, equal bytes.
    pub(super) fn etag(&self) -> HeaderValue {
        let since = self.since_epoch();
        let tag = format!(
            "W/\"{:x}-{:x}.{:x}{}{}\"",
            self.len,
            since.as_secs(),
            since.subsec_nanos(),
            if self.coding.is_some() { "-" } else { "" },
            self.coding.unwrap_or("")
        );
        HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("W/\"0\""))
    }

    /// `Last-Modified`, when the file system reports an mtime.
    pub(super) fn last_modified(&self) -> Option<HeaderValue> {
        let modified = self.modified?;
        HeaderValue::from_str(&httpdate::fmt_http_date(modified)).ok()
    }

    fn since_epoch(&self) -> Duration {
        self.modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }

    /// The opaque part of our ETag, without `W/`.
    fn opaque(&self) -> String {
        let etag = self.etag();
        let text = etag.to_str().unwrap_or_default();
        text.trim_start_matches("W/").to_string()
    }

    /// Whether a GET or HEAD with these request headers gets `304 Not Modified`
    /// (RFC 9110 §13.2.2: `If-None-Match` decides when present, otherwise
    /// `If-Modified-Since`, compared in whole seconds as HTTP dates are).
    pub(super) fn not_modified(&self, headers: &HeaderMap) -> bool {
        if let Some(inm) = headers.get(header::IF_NONE_MATCH) {
            let Ok(inm) = inm.to_str() else {
                return false;
            };
            let ours = self.opaque();
            return inm
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours);
        }
        let Some(ims) = headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return false;
        };
        match self.modified {
            Some(_) => self.since_epoch().as_secs() <= secs(ims),
            None => false,
        }
    }

    /// Whether a `Range` may be honoured under `If-Range` (RFC 9110 §13.1.5): always
    /// without it; with a date, only if it is exactly our Last-Modified; with an
    /// ETag never, since ours are weak and If-Range needs a strong match.
    pub(super) fn range_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(if_range) = headers.get(header::IF_RANGE) else {
            return true;
        };
        let Some(date) = if_range
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return false;
        };
        self.modified.is_some() && secs(date) == self.since_epoch().as_secs()
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Validators {
        Validators::new(1234, Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500)))
    }

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn etag_is_weak_and_matches_itself() {
        let v = file();
        let etag = v.etag();
        assert!(etag.to_str().unwrap().starts_with("W/\""));
        assert!(v.not_modified(&headers(header::IF_NONE_MATCH, etag.to_str().unwrap())));
        let strong = etag.to_str().unwrap().trim_start_matches("W/").to_string();
        assert!(v.not_modified(&headers(header::IF_NONE_MATCH, &format!("\"x\", {strong}"))));
        assert!(v.not_modified(&headers(header::IF_NONE_MATCH, "*")));
        assert!(!v.not_modified(&headers(header::IF_NONE_MATCH, "W/\"other\"")));
    }

    #[test]
    fn if_modified_since_in_whole_seconds() {
        let v = file();
        let lm = v.last_modified().unwrap();
        assert!(v.not_modified(&headers(header::IF_MODIFIED_SINCE, lm.to_str().unwrap())));
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_699_999_999));
        assert!(!v.not_modified(&headers(header::IF_MODIFIED_SINCE, &earlier)));
        assert!(!v.not_modified(&headers(header::IF_MODIFIED_SINCE, "not a date")));
    }

    #[test]
    fn if_none_match_beats_if_modified_since() {
        let v = file();
        let mut h = headers(header::IF_NONE_MATCH, "W/\"other\"");
        h.insert(header::IF_MODIFIED_SINCE, v.last_modified().unwrap());
        assert!(!v.not_modified(&h));
    }

    #[test]
    fn if_range_needs_the_exact_date() {
        let v = file();
        assert!(v.range_allowed(&HeaderMap::new()));
        assert!(v.range_allowed(&headers(
            header::IF_RANGE,
            v.last_modified().unwrap().to_str().unwrap()
        )));
        assert!(!v.range_allowed(&headers(header::IF_RANGE, v.etag().to_str().unwrap())));
        let other = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(5));
        assert!(!v.range_allowed(&headers(header::IF_RANGE, &other)));
    }
}
