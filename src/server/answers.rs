//! The answers bellhop writes itself: the phases' early answers (404, 308 to
//! HTTPS, 403, 413, 429) and the `respond` and `redirect` handlers.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode, Uri, Version};

use crate::body::{text_response, Body};

/// `respond`: a fixed status and body with its content type.
pub(super) fn respond(
    status: StatusCode,
    body: &Bytes,
    content_type: &HeaderValue,
) -> Response<Body> {
    let mut response = Response::new(Body::full(body.clone()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type.clone());
    response
}

/// 429 with `Retry-After` in whole seconds, rounded up so a client that obeys
/// it finds a token waiting.
pub(super) fn too_many_requests(wait: Duration) -> Response<Body> {
    let mut response = text_response(StatusCode::TOO_MANY_REQUESTS, "slow down");
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// 413 for a body declared larger than `max-body`, before any of it is read.
/// HTTP/1.1 closes the connection after it: the unread body would otherwise
/// be taken for the next request.
pub(super) fn body_too_large(version: Version) -> Response<Body> {
    let mut response = text_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request body is larger than this site accepts",
    );
    if version < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// 403 for a client an `allow` / `deny` list keeps out.
pub(super) fn forbidden() -> Response<Body> {
    text_response(StatusCode::FORBIDDEN, "access denied")
}

/// 404 for a host, port or path no site answers.
pub(super) fn not_found() -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, "no site is configured for this host")
}

/// `redirect "https://example.org{uri}"`: `{uri}` is the path and query.
pub(super) fn redirect(template: &str, code: StatusCode, uri: &Uri) -> Response<Body> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    location_response(code, &template.replace("{uri}", path))
}

/// 308 to the same host, path and query on HTTPS, keeping a non-443 port.
pub(super) fn redirect_to_https(host: &str, https_port: u16, uri: &Uri) -> Response<Body> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let target = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    location_response(StatusCode::PERMANENT_REDIRECT, &target)
}

fn location_response(code: StatusCode, target: &str) -> Response<Body> {
    match HeaderValue::from_str(target) {
        Ok(location) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = code;
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => text_response(StatusCode::BAD_REQUEST, "cannot redirect this request"),
    }
}
