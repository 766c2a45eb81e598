//! `encode`: compresses responses of any handler (proxy, files, respond) as they
//! stream, when the client accepts one of the configured codings.
//!
//! A response is compressed only when all of these hold:
//! - the client's `Accept-Encoding` allows a configured coding (`q=0` refuses;
//!   the configured order, not the client's q-values, picks among the allowed);
//! - it has no `Content-Encoding` yet and no `Cache-Control: no-transform`;
//! - its status carries a whole body (not 1xx, 204, 206 or 304);
//! - its `Content-Type` is textual ([`compressible`]); `text/event-stream` is not,
//!   so SSE events are never held in a compressor;
//! - it is not tiny: a known length (`Content-Length`, or the size of a body
//!   bellhop wrote) below [`MIN_LENGTH`] is sent as is.
//!
//! A compressed response loses `Content-Length` and `Accept-Ranges`, gets
//! `Content-Encoding`, and a strong `ETag` becomes weak. Every response that could
//! have been compressed gets `Vary: Accept-Encoding`, for caches.
//!
//! A static file's compressed form is kept per version ([`cache`]), so only its
//! first request after a change pays for compressing it.

mod body;
mod cache;
mod gzip;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::body::Body;
use crate::config::Encoding;
pub(crate) use body::EncodedBody;
pub(crate) use cache::Source;

/// Bodies with a known length below this are not worth a compression header.
pub(crate) const MIN_LENGTH: u64 = 256;

/// Applies `encode` to a response: compresses it when the client and the
/// response allow (see the module docs), otherwise returns it unchanged (but for
/// `Vary`).
pub(crate) fn apply(
    mut response: Response<Body>,
    method: &Method,
    accept_encoding: Option<&HeaderValue>,
    configured: &[Encoding],
) -> Response<Body> {
    if configured.is_empty() || !eligible(response.status(), response.headers()) {
        return response;
    }
    // A body bellhop wrote itself may have no Content-Length header yet.
    if http_body::Body::size_hint(response.body())
        .exact()
        .is_some_and(|len| len < MIN_LENGTH)
        && method != Method::HEAD
    {
        return response;
    }
    add_vary(response.headers_mut());
    let Some(encoding) = negotiate(accept_encoding, configured) else {
        return response;
    };
    // Read before the headers change: a kept form is for whole static files only.
    let source = response
        .extensions_mut()
        .remove::<Source>()
        .filter(|s| s.len <= cache::MAX_SOURCE);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    if let Some(etag) = headers.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(header::ETAG, weak);
            }
        }
    }
    if method == Method::HEAD {
        // Same headers as the GET would get; no body to compress.
        return response;
    }
    let (mut parts, inner) = response.into_parts();
    let body = match source {
        None => EncodedBody::new(inner, encoding),
        Some(source) => match cache::lookup(&source, encoding) {
            Some(kept) => {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(kept.len()));
                return Response::from_parts(parts, Body::full(kept));
            }
            None => EncodedBody::kept(inner, encoding, source),
        },
    };
    Response::from_parts(parts, Body::Encoded(Box::new(body)))
}

/// The first configured coding the client accepts, by `Accept-Encoding`: an
/// explicit entry for the coding decides (`q=0` refuses), otherwise `*` does,
/// otherwise it is not accepted.
pub(crate) fn negotiate(
    accept_encoding: Option<&HeaderValue>,
    configured: &[Encoding],
) -> Option<Encoding> {
    let accept = accept_encoding?.to_str().ok()?;
    let mut star: Option<bool> = None;
    let mut explicit: Vec<(&str, bool)> = Vec::new();
    for item in accept.split(',') {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or("").trim();
        if coding.is_empty() {
            continue;
        }
        let allowed = params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .is_none_or(|(_, q)| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
        if coding == "*" {
            star = Some(allowed);
        } else {
            explicit.push((coding, allowed));
        }
    }
    configured.iter().copied().find(|encoding| {
        match explicit
            .iter()
            .find(|(coding, _)| coding.eq_ignore_ascii_case(encoding.token()))
        {
            Some((_, allowed)) => *allowed,
            None => star.unwrap_or(false),
        }
    })
}

/// Whether this response could be compressed at all (independent of the client).
fn eligible(status: StatusCode, headers: &HeaderMap) -> bool {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    if headers.contains_key(header::CONTENT_ENCODING) || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let no_transform = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"));
    if no_transform {
        return false;
    }
    let tiny = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len < MIN_LENGTH);
    if tiny {
        return false;
    }
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible)
}

/// Whether a `Content-Type` is worth compressing: text (but not SSE), JSON,
/// JavaScript, XML, SVG, WebAssembly and uncompressed font formats.
pub(crate) fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "text/event-stream" {
        return false;
    }
    if essence.starts_with("text/") || essence.ends_with("+json") || essence.ends_with("+xml") {
        return true;
    }
    matches!(
        essence.as_str(),
        "application/json"
            | "application/javascript"
            | "application/x-javascript"
            | "application/ecmascript"
            | "application/xml"
            | "application/wasm"
            | "application/x-ndjson"
            | "image/svg+xml"
            | "image/x-icon"
            | "font/ttf"
            | "font/otf"
    )
}

/// Adds `Accept-Encoding` to `Vary` unless it (or `*`) is already there.
fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let v = v.trim();
            v == "*" || v.eq_ignore_ascii_case("accept-encoding")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Gzip, Zstd};

    fn pick(accept: &str, configured: &[Encoding]) -> Option<Encoding> {
        negotiate(Some(&HeaderValue::from_str(accept).unwrap()), configured)
    }

    #[test]
    fn configured_order_is_the_preference() {
        assert_eq!(pick("gzip, deflate, br, zstd", &[Zstd, Gzip]), Some(Zstd));
        assert_eq!(pick("gzip;q=1, zstd;q=0.1", &[Zstd, Gzip]), Some(Zstd));
        assert_eq!(pick("gzip, zstd", &[Gzip, Zstd]), Some(Gzip));
        assert_eq!(pick("gzip", &[Zstd, Gzip]), Some(Gzip));
        assert_eq!(pick("br", &[Zstd, Gzip]), None);
        assert_eq!(negotiate(None, &[Zstd, Gzip]), None);
    }

    #[test]
    fn q_zero_refuses() {
        assert_eq!(pick("zstd;q=0, gzip", &[Zstd, Gzip]), Some(Gzip));
        assert_eq!(pick("zstd;q=0, gzip;q=0.0", &[Zstd, Gzip]), None);
        assert_eq!(pick("*;q=0", &[Zstd, Gzip]), None);
        assert_eq!(pick("*", &[Zstd, Gzip]), Some(Zstd));
        assert_eq!(pick("zstd; q=0, *", &[Zstd, Gzip]), Some(Gzip));
        assert_eq!(pick("GZIP", &[Gzip]), Some(Gzip));
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/html; charset=utf-8",
            "application/json",
            "application/problem+json",
            "text/javascript",
            "application/javascript",
            "image/svg+xml",
            "application/xml",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "text/event-stream",
            "image/png",
            "application/octet-stream",
            "application/zip",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }

    #[test]
    fn ineligible_responses() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(eligible(StatusCode::OK, &h));
        assert!(!eligible(StatusCode::PARTIAL_CONTENT, &h));
        assert!(!eligible(StatusCode::NOT_MODIFIED, &h));
        assert!(!eligible(StatusCode::NO_CONTENT, &h));
        assert!(!eligible(StatusCode::SWITCHING_PROTOCOLS, &h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(255));
        assert!(!eligible(StatusCode::OK, &h));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(256));
        assert!(eligible(StatusCode::OK, &h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, no-transform"),
        );
        assert!(!eligible(StatusCode::OK, &h));
        h.remove(header::CACHE_CONTROL);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(!eligible(StatusCode::OK, &h));
    }

    #[test]
    fn vary_is_added_once() {
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h);
        add_vary(&mut h);
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);
    }
}
