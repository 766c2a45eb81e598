//! Handles one request: find the site and route, run its action, log it.

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::access_log::{LoggedBody, RequestLog};
use super::connection::{ConnContext, InFlight};
use crate::body::{text_response, Body};
use crate::config::normalize_host;
use crate::config::Scheme;
use crate::encode;
use crate::limit::ClientKey;
use crate::metrics::RouteMetrics;
use crate::proxy::ClientInfo;
use crate::router::{Action, HostMatch, Router};

/// Answers one request. Never fails: every problem becomes an HTTP status.
pub async fn handle(req: Request<Incoming>, conn: Arc<ConnContext>) -> Response<LoggedBody> {
    let start = Instant::now();
    let in_flight = InFlight::new(conn.clone());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let host = request_host(&req);
    let router = conn.shared.router.load();
    let accepted = conn.accepted;
    let client = ClientInfo::resolve(accepted.peer.ip(), accepted.scheme, req.headers(), |ip| {
        router.is_trusted_proxy(ip)
    });

    let (response, upstream, counters) = dispatch(req, host.clone(), &client, &conn, &router).await;
    counters
        .unwrap_or(router.unrouted())
        .answered(response.status());

    let (mut parts, mut body) = response.into_parts();
    if method == Method::HEAD {
        body = without_content(&mut parts.headers, body);
    }
    let log = RequestLog {
        start,
        client,
        method,
        host,
        uri,
        status: parts.status,
        upstream,
    };
    Response::from_parts(parts, LoggedBody::new(body, log, in_flight))
}

/// A HEAD response carries no content (RFC 9110 §9.3.2). hyper leaves the body
/// out on HTTP/1.1 but sends it as DATA on h2, which clients treat as a protocol
/// error. So a body bellhop made itself (`respond`, error pages) is dropped, its
/// length kept in Content-Length unless `encode` would compress the GET (then
/// the length is unknown, and `encode` already removed it). Proxied and file
/// responses to HEAD are empty already.
fn without_content(headers: &mut HeaderMap, body: Body) -> Body {
    match body {
        Body::Full(Some(bytes)) => {
            if !headers.contains_key(header::CONTENT_ENCODING) {
                headers
                    .entry(header::CONTENT_LENGTH)
                    .or_insert_with(|| HeaderValue::from(bytes.len()));
            }
            Body::empty()
        }
        other => other,
    }
}

/// The response, the upstream that produced it (for the log) and the counters
/// of the route that answered, if one did.
type Dispatched<'r> = (Response<Body>, Option<Arc<str>>, Option<&'r RouteMetrics>);

async fn dispatch<'r>(
    req: Request<Incoming>,
    host: Option<HeaderValue>,
    client: &ClientInfo,
    conn: &ConnContext,
    router: &'r Router,
) -> Dispatched<'r> {
    if let Some(refusal) = refuse_malformed(&req) {
        return (refusal, None, None);
    }
    if conn.accepted.scheme == Scheme::Http {
        if let Some(https) = &conn.shared.https {
            if let Some(answer) = https.http01_response(req.uri().path()) {
                return (answer, None, None);
            }
        }
    }
    let Some(port) = router.port(conn.accepted.port) else {
        return (not_found(), None, None);
    };
    let host_name = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(normalize_host)
        .unwrap_or_default();

    let site = match port.lookup(&host_name) {
        HostMatch::Site(site) => site,
        HostMatch::RedirectToHttps(_) if super::https::is_http01_path(req.uri().path()) => {
            return (not_found(), None, None)
        }
        HostMatch::RedirectToHttps(https_port) => {
            return (
                redirect_to_https(&host_name, https_port, req.uri()),
                None,
                None,
            )
        }
        HostMatch::Unknown => return (not_found(), None, None),
    };
    let Some(route) = site.route(req.uri().path()) else {
        return (not_found(), None, None);
    };
    if let Some(limiter) = route.limiter {
        if let Err(wait) = limiter.check(ClientKey::from(client.ip), Instant::now()) {
            route.metrics.rate_limited();
            return (too_many_requests(wait), None, Some(route.metrics));
        }
    }

    // Kept before the request moves into a handler, and only when it may matter.
    let accept_encoding = match route.encode {
        [] => None,
        _ => req.headers().get(header::ACCEPT_ENCODING).cloned(),
    };
    let method = req.method().clone();

    let (mut response, upstream) = match route.action {
        Action::Respond { status, body } => {
            let mut response = Response::new(Body::full(body.clone()));
            *response.status_mut() = *status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            (response, None)
        }
        Action::Redirect { to, code } => (redirect(to, *code, req.uri()), None),
        Action::Proxy(proxy) => {
            let forwarded = proxy.forward(req, client, host).await;
            if let Some(tunnel) = forwarded.tunnel {
                conn.shared.background.spawn_tunnel(tunnel);
            }
            (forwarded.response, Some(forwarded.upstream))
        }
        Action::Files(files) => (files.serve(&method, req.uri(), req.headers()).await, None),
    };
    if !route.encode.is_empty() {
        response = encode::apply(response, &method, accept_encoding.as_ref(), route.encode);
    }
    if conn.accepted.scheme == Scheme::Https {
        if let Some(hsts) = &site.hsts {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    (response, upstream, Some(route.metrics))
}

/// What hyper parses but leaves to us to refuse (RFC 9112), answered before any
/// routing, with the connection closed afterwards since the request may not be
/// framed the way the next hop would read it:
/// - a transfer coding other than a single `chunked` gets 501, like nginx: hyper
///   decodes only chunked, so `gzip, chunked` would reach the backend still
///   compressed and re-framed as plain bytes (codings that don't end in chunked
///   never get here, hyper answers 400);
/// - an HTTP/1.1 request without Host (and no absolute-form target), or any
///   request with more than one Host or a Host that is not `host[:port]`, gets
///   400 (§3.2), instead of reaching a catch-all site with a Host the backend
///   may read differently.
fn refuse_malformed<B>(req: &Request<B>) -> Option<Response<Body>> {
    // h2 has no Connection header (hyper would drop it): the stream just ends.
    let closing = |mut response: Response<Body>| {
        if req.version() < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    };
    let mut codings = req.headers().get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = codings.next() {
        let chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !chunked || codings.next().is_some() {
            return Some(closing(text_response(
                StatusCode::NOT_IMPLEMENTED,
                "transfer codings other than chunked are not supported",
            )));
        }
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let problem = match (hosts.next(), hosts.next()) {
        (None, _) if req.version() == Version::HTTP_11 && req.uri().authority().is_none() => {
            "missing Host header"
        }
        (Some(_), Some(_)) => "more than one Host header",
        (Some(host), None) if !valid_host(host) => "invalid Host header",
        _ => return None,
    };
    Some(closing(text_response(StatusCode::BAD_REQUEST, problem)))
}

/// `host[:port]` with a registered name or IPv4 address (RFC 3986 reg-name
/// characters) or a bracketed IPv6 address, and a numeric port. Empty is valid
/// (a target without authority).
fn valid_host(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    let (host_ok, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (ip.parse::<Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (name, port) = text.split_at(text.find(':').unwrap_or(text.len()));
            let reg_name = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b);
            (name.bytes().all(reg_name), port)
        }
    };
    host_ok
        && match port.strip_prefix(':') {
            Some(digits) => digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()),
            None => port.is_empty(),
        }
}

/// The host the client asked for: `:authority` (h2, absolute-form) or Host.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(authority) = req.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    req.headers().get(header::HOST).cloned()
}

/// 429 with `Retry-After` in whole seconds, rounded up so a client that obeys
/// it finds a token waiting.
fn too_many_requests(wait: std::time::Duration) -> Response<Body> {
    let mut response = text_response(StatusCode::TOO_MANY_REQUESTS, "slow down");
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

fn not_found() -> Response<Body> {
    text_response(StatusCode::NOT_FOUND, "no site is configured for this host")
}

/// `redirect "https://example.org{uri}"`: `{uri}` is the path and query.
fn redirect(template: &str, code: StatusCode, uri: &http::Uri) -> Response<Body> {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    location_response(code, &template.replace("{uri}", path))
}

/// 308 to the same host, path and query on HTTPS, keeping a non-443 port.
fn redirect_to_https(host: &str, https_port: u16, uri: &http::Uri) -> Response<Body> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_syntax() {
        for ok in [
            "",
            "a.test",
            "A.Test.",
            "a.test:8080",
            "a.test:",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "xn--bcher-kva.example",
            "under_score.test",
        ] {
            assert!(valid_host(&HeaderValue::from_static(ok)), "{ok:?}");
        }
        for bad in [
            "a b.test",
            "a.test/x",
            "user@a.test",
            "a.test:http",
            "a.test:123456",
            "[::1",
            "[::1]x",
            "[not-ip]:80",
            "a.test:80:80",
            "a\\b",
        ] {
            assert!(!valid_host(&HeaderValue::from_static(bad)), "{bad:?}");
        }
        assert!(!valid_host(
            &HeaderValue::from_bytes(b"\xc3\xa9.test").unwrap()
        ));
    }
}
