//! `header` and `request-header`: apply a route's header operations to a
//! header map, in place.
//!
//! The names and values were parsed when the config was loaded
//! ([`HeaderOp`]), so applying them only inserts, appends or removes: no
//! parsing and no allocation beyond the map's own.

use http::HeaderMap;

use crate::config::HeaderOp;

/// Applies `ops` in order: a later operation on the same name wins, which is
/// how a route's `header` overrides the site's and `security-headers`.
pub(crate) fn apply(headers: &mut HeaderMap, ops: &[HeaderOp]) {
    for op in ops {
        match op {
            HeaderOp::Set(name, value) => {
                headers.insert(name.clone(), value.clone());
            }
            HeaderOp::Add(name, value) => {
                headers.append(name.clone(), value.clone());
            }
            HeaderOp::Remove(name) => {
                headers.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    #[test]
    fn set_add_remove_in_order() {
        let link = HeaderName::from_static("link");
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("uvicorn"));
        headers.insert(&link, HeaderValue::from_static("</a.css>"));
        headers.insert("x-frame-options", HeaderValue::from_static("ALLOW"));
        apply(
            &mut headers,
            &[
                HeaderOp::Set(
                    HeaderName::from_static("x-frame-options"),
                    HeaderValue::from_static("SAMEORIGIN"),
                ),
                HeaderOp::Remove(HeaderName::from_static("server")),
                HeaderOp::Add(link.clone(), HeaderValue::from_static("</b.js>")),
                HeaderOp::Set(
                    HeaderName::from_static("x-frame-options"),
                    HeaderValue::from_static("DENY"),
                ),
            ],
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert!(!headers.contains_key("server"));
        let links: Vec<_> = headers.get_all(&link).iter().collect();
        assert_eq!(links, ["</a.css>", "</b.js>"]);
    }
}
