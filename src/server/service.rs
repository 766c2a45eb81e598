//! Handles one request: find the site and route, run its action, log it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::access_log::{LoggedBody, RequestLog};
use super::connection::{ConnContext, InFlight};
use crate::body::{text_response, Body};
use crate::encode;
use crate::limit::ClientKey;
use crate::proxy::headers::X_FORWARDED_FOR;
use crate::proxy::ClientInfo;
use crate::router::{normalize_host, Action, HostMatch, Router};

/// Answers one request. Never fails: every problem becomes an HTTP status.
pub async fn handle(req: Request<Incoming>, conn: Arc<ConnContext>) -> Response<LoggedBody> {
    let start = Instant::now();
    let in_flight = InFlight::new(conn.clone());
    let method = req.method().clone();
    let uri = req.uri().clone();
    let host = request_host(&req);

    let (response, upstream) = dispatch(req, host.clone(), &conn).await;

    let (parts, body) = response.into_parts();
    let log = RequestLog {
        start,
        peer: conn.peer.ip(),
        method,
        host,
        uri,
        status: parts.status,
        upstream,
    };
    Response::from_parts(parts, LoggedBody::new(body, log, in_flight))
}

async fn dispatch(
    req: Request<Incoming>,
    host: Option<HeaderValue>,
    conn: &ConnContext,
) -> (Response<Body>, Option<Arc<str>>) {
    if !conn.tls {
        if let Some(https) = &conn.shared.https {
            if let Some(answer) = https.http01_response(req.uri().path()) {
                return (answer, None);
            }
        }
    }
    let router = conn.shared.router.load();
    let Some(port) = router.port(conn.port) else {
        return (not_found(), None);
    };
    let host_name = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(normalize_host)
        .unwrap_or_default();

    let site = match port.lookup(&host_name) {
        HostMatch::Site(site) => site,
        HostMatch::RedirectToHttps(_) if super::https::is_http01_path(req.uri().path()) => {
            return (not_found(), None)
        }
        HostMatch::RedirectToHttps(https_port) => {
            return (redirect_to_https(&host_name, https_port, req.uri()), None)
        }
        HostMatch::Unknown => return (not_found(), None),
    };
    let Some(route) = site.route(req.uri().path()) else {
        return (not_found(), None);
    };
    if let Some(limiter) = route.limiter {
        let client = client_ip(conn.peer.ip(), req.headers(), &router);
        if let Err(wait) = limiter.check(ClientKey::from(client), Instant::now()) {
            return (too_many_requests(wait), None);
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
            let client = ClientInfo {
                ip: conn.peer.ip(),
                scheme: if conn.tls { "https" } else { "http" },
                trusted: router.is_trusted_proxy(conn.peer.ip()),
            };
            let forwarded = proxy
                .forward(req, client, host, &conn.shared.background)
                .await;
            (forwarded.response, Some(forwarded.upstream))
        }
        Action::Files(files) => (files.serve(&method, req.uri(), req.headers()).await, None),
    };
    if !route.encode.is_empty() {
        response = encode::apply(response, &method, accept_encoding.as_ref(), route.encode);
    }
    if conn.tls {
        if let Some(hsts) = &site.hsts {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    (response, upstream)
}

/// The address to hold responsible for a request: the peer, or behind trusted
/// proxies the right-most `X-Forwarded-For` entry that is not one of them.
fn client_ip(peer: IpAddr, headers: &HeaderMap, router: &Router) -> IpAddr {
    if !router.is_trusted_proxy(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !router.is_trusted_proxy(*ip))
        .unwrap_or(peer)
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
