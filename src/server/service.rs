//! Answers one request by running it through named phases, in order:
//!
//! ```text
//! facts      who (ClientInfo, resolved once), method, target, Host
//! frame      refuse what the next hop could read differently (400/501)
//! path       one normalized path from here on, and upstream (400 if ambiguous)
//! challenge  ACME HTTP-01 token on a plain-HTTP port
//! site       listener port + Host → site, or 308 to HTTPS, or 404
//! route      path → route, or 404
//! admit      access list (403), declared body size over max-body (413), rate
//!            limit (429), basic auth (401); the route's `strip-prefix` takes its
//!            prefix off the path
//! handle     respond | redirect | proxy | files
//! filter     error page, encode, HSTS, header
//! log        count the status, HEAD without content, one access-log line when the
//!            body ends (for an upgrade: when its tunnel closes), to the site's
//!            own file or to stderr
//! ```
//!
//! A phase either passes what it found on to the next (`Continue`) or answers
//! the request itself (`Break`), so every early answer leaves by one path and
//! still reaches the log. Answers given before a route is known count as
//! unrouted in the metrics, the rest for their route.

use std::borrow::Cow;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};

use super::access_line::RequestLog;
use super::access_log::{self, LoggedBody};
use super::answers::{
    body_too_large, forbidden, not_found, redirect, redirect_to_https, respond, too_many_requests,
};
use super::boxed::pin_in_place;
use super::connection::{Accepted, ConnContext, InFlight};
use super::malformed::refuse_malformed;
use crate::access::{AccessRule, Verdict};
use crate::body::{text_response, Body};
use crate::config::{normalize_host, Encoding, HeaderOp, Scheme};
use crate::encode;
use crate::error_pages::ErrorPages;
use crate::header_ops;
use crate::http_path;
use crate::limit::{BodyLimits, ClientKey, RequestBody};
use crate::metrics::RouteMetrics;
use crate::proxy::{ClientInfo, LogStatus, Tunnel};
use crate::router::{Action, HostMatch, Routed, Router, SiteLog, SiteRoutes};

/// The result of a phase: what it found, or the request's answer.
type Phase<T> = ControlFlow<Response<Body>, T>;

/// What is known of a request before its phases run: they read it, and the
/// log keeps it (the request itself moves into the handler).
#[derive(Debug)]
struct Facts {
    /// When the request head was received.
    start: Instant,
    /// The peer, and the client behind it when the peer is a trusted proxy.
    client: ClientInfo,
    method: Method,
    uri: Uri,
    /// Host or `:authority` as the client sent it.
    host: Option<HeaderValue>,
    version: Version,
    /// For the access log only: `None` when nothing logs.
    user_agent: Option<HeaderValue>,
}

/// How a request was answered, as far as the log and the metrics care.
#[derive(Debug)]
struct Outcome<'r> {
    response: Response<Body>,
    /// The upstream that answered, for proxied requests.
    upstream: Option<Arc<str>>,
    /// The counters this answer goes to: its route's, or the router's
    /// unrouted ones.
    counters: &'r RouteMetrics,
    /// The site's own access-log file, once the site is known.
    site_log: Option<&'r SiteLog>,
    /// On `101 Switching Protocols`: the upgraded streams to splice.
    tunnel: Option<Tunnel>,
}

impl<'r> Outcome<'r> {
    /// A response bellhop made itself, no upstream involved.
    fn local(response: Response<Body>, counters: &'r RouteMetrics) -> Outcome<'r> {
        Outcome {
            response,
            upstream: None,
            counters,
            site_log: None,
            tunnel: None,
        }
    }
}

/// Answers one request. Never fails: every problem becomes an HTTP status.
///
/// The request comes boxed and goes boxed through every phase to the
/// handler: an `async fn` keeps a by-value argument twice in its future
/// (the argument and the local it becomes), so each of the five layers down
/// to the proxy held and copied 528 bytes of it (callgrind: ~20 copies a
/// request, and futures too large for the allocator's fast path).
pub(super) async fn handle(
    req: Box<Request<RequestBody>>,
    conn: Arc<ConnContext>,
) -> Response<LoggedBody> {
    let in_flight = InFlight::new(conn.clone());
    // One router snapshot for the whole request, whatever a reload swaps in.
    let router = conn.shared.router.load();
    let facts = Facts::of(&req, conn.accepted, &router);
    let outcome = dispatch(req, &facts, &router, &conn).await;
    log(outcome, facts, &conn, in_flight)
}

/// The phases from the module docs: those that find the route, then those
/// that serve it.
async fn dispatch<'r>(
    mut req: Box<Request<RequestBody>>,
    facts: &Facts,
    router: &'r Router,
    conn: &Arc<ConnContext>,
) -> Outcome<'r> {
    if let Some(answer) = shared_challenge(&req, conn).await {
        return Outcome::local(answer, router.unrouted());
    }
    let (site, route) = match locate(&mut req, facts, router, conn) {
        Continue(found) => found,
        Break(answer) => return Outcome::local(answer, router.unrouted()),
    };
    let outcome = match serve(req, site, route, facts, conn).await {
        Continue(outcome) => outcome,
        Break(answer) => Outcome::local(answer, route.metrics),
    };
    Outcome {
        site_log: site.log.as_ref(),
        ..outcome
    }
}

/// frame ─► path ─► challenge ─► site ─► route.
fn locate<'r, B>(
    req: &mut Request<B>,
    facts: &Facts,
    router: &'r Router,
    conn: &ConnContext,
) -> Phase<(&'r SiteRoutes, Routed<'r>)> {
    frame(req)?;
    path(req)?;
    challenge(req, conn)?;
    let site = site(router, conn.accepted.port, facts)?;
    conn.serves(&site.bytes);
    let route = route(site, req.uri())?;
    Continue((site, route))
}

/// admit ─► handle ─► filter, for a request whose route is known.
async fn serve<'r>(
    mut req: Box<Request<RequestBody>>,
    site: &'r SiteRoutes,
    route: Routed<'r>,
    facts: &Facts,
    conn: &Arc<ConnContext>,
) -> Phase<Outcome<'r>> {
    admit(&mut req, &route, &facts.client).await?;
    if let Some(rewrite) = route.rewrite {
        rewrite.apply(&mut req);
    }
    let filters = Filters::new(&req, &route, site, conn.accepted.scheme);
    let outcome = handle_action(req, &route, facts, conn).await;
    Continue(filters.apply(outcome, &facts.method))
}

impl Facts {
    fn of<B>(req: &Request<B>, accepted: Accepted, router: &Router) -> Facts {
        let client = ClientInfo::resolve(
            accepted.peer.ip(),
            accepted.scheme,
            req.headers(),
            |ip| router.is_trusted_proxy(ip),
            |ip| router.is_cloudflare(ip),
        );
        Facts {
            start: Instant::now(),
            client,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: request_host(req),
            version: req.version(),
            user_agent: (router.site_logs() || access_log::enabled())
                .then(|| req.headers().get(header::USER_AGENT).cloned())
                .flatten(),
        }
    }
}

/// Malformed framing or Host: answered before anything routes on it.
fn frame<B>(req: &Request<B>) -> Phase<()> {
    match refuse_malformed(req) {
        Some(refusal) => Break(refusal),
        None => Continue(()),
    }
}

/// Puts the request path in its normal form ([`http_path`]) in place, so
/// the route, access rules, auth, files and the upstream all see the same
/// path; the access log keeps the target as the client sent it. A path that
/// cannot be given one meaning is refused. `OPTIONS *` stays as it is.
fn path<B>(req: &mut Request<B>) -> Phase<()> {
    let raw = req.uri().path();
    if raw == "*" && req.method() == Method::OPTIONS {
        return Continue(());
    }
    let normal = match http_path::normalize(raw) {
        Ok(Cow::Borrowed(_)) => return Continue(()),
        Ok(Cow::Owned(normal)) if normal == raw => return Continue(()),
        Ok(Cow::Owned(normal)) => normal,
        Err(refused) => return Break(text_response(StatusCode::BAD_REQUEST, &refused.to_string())),
    };
    match http_path::with_path(req.uri(), &normal) {
        Some(uri) => {
            *req.uri_mut() = uri;
            Continue(())
        }
        None => Break(text_response(
            StatusCode::BAD_REQUEST,
            "invalid request path",
        )),
    }
}

/// ACME HTTP-01 on a plain-HTTP port: a pending token is answered for any host,
/// before site lookup (tokens are unguessable, see `Https::http01_response`).
fn challenge<B>(req: &Request<B>, conn: &ConnContext) -> Phase<()> {
    let https = conn.shared.https.as_ref();
    match https.filter(|_| conn.accepted.scheme == Scheme::Http) {
        Some(https) => https
            .http01_response(req.uri().path())
            .map_or(Continue(()), Break),
        None => Continue(()),
    }
}

/// ACME HTTP-01 for a challenge another instance of a cluster started: only
/// plain-HTTP challenge paths reach the (async) shared lookup.
async fn shared_challenge<B>(req: &Request<B>, conn: &ConnContext) -> Option<Response<Body>> {
    if conn.accepted.scheme != Scheme::Http || !super::https::is_http01_path(req.uri().path()) {
        return None;
    }
    let https = conn.shared.https.as_ref()?;
    https.shared_http01_response(req.uri().path()).await
}

/// The site for the listener's port and the request's Host. A plain-HTTP
/// request for an HTTPS site is redirected there, except ACME HTTP-01 paths
/// (the validator must not be sent to a port that may lack a certificate).
fn site<'r>(router: &'r Router, port: u16, facts: &Facts) -> Phase<&'r SiteRoutes> {
    let Some(port) = router.port(port) else {
        return Break(not_found());
    };
    let host_name = facts
        .host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(normalize_host)
        .unwrap_or_default();
    match port.lookup(&host_name) {
        HostMatch::Site(site) => Continue(site),
        HostMatch::RedirectToHttps(_) if super::https::is_http01_path(facts.uri.path()) => {
            Break(not_found())
        }
        HostMatch::RedirectToHttps(https_port) => {
            Break(redirect_to_https(&host_name, https_port, &facts.uri))
        }
        HostMatch::Unknown => Break(not_found()),
    }
}

/// The site's first route whose pattern matches the path.
fn route<'s>(site: &'s SiteRoutes, uri: &Uri) -> Phase<Routed<'s>> {
    site.route(uri.path())
        .map_or_else(|| Break(not_found()), Continue)
}

/// Whether the client may have this request served, all keyed by the
/// resolved client (not a trusted proxy in front of it): the route's access
/// list; a body declared larger than `max-body` (Content-Length) is refused
/// before any handler or upstream sees it (a body without a declared length is
/// held to `max-body` as it streams, `limit::ClientBody`); the rate limit (a
/// `shared=#true` one asks Redis, one round trip); then its users. A failed password also takes a token
/// from the rate limit. Credentials that passed are not sent upstream: they
/// are bellhop's, and backends tend to log headers.
async fn admit<B: http_body::Body>(
    req: &mut Request<B>,
    route: &Routed<'_>,
    client: &ClientInfo,
) -> Phase<()> {
    if !AccessRule::admits(route.access, client.ip) {
        return Break(forbidden());
    }
    let declared = req.body().size_hint().exact();
    if let Some(length) = declared.filter(|&length| length > route.max_body) {
        tracing::info!(client = %client.ip, length, max_body = route.max_body, "request body larger than max-body refused before reading it");
        return Break(body_too_large(req.version()));
    }
    let key = ClientKey::from(client.ip);
    if let Some(limiter) = route.limiter {
        if let Err(wait) = limiter.check(key, Instant::now()).await {
            route.metrics.rate_limited();
            return Break(too_many_requests(wait));
        }
    }
    let Some(auth) = route.auth else {
        return Continue(());
    };
    match auth.check(req.headers(), client.ip).await {
        Verdict::Pass => {
            req.headers_mut().remove(header::AUTHORIZATION);
            Continue(())
        }
        Verdict::Challenge => {
            if let Some(limiter) = route.limiter {
                let _ = limiter.check(key, Instant::now()).await;
            }
            Break(auth.challenge())
        }
        Verdict::Wait(wait) => {
            route.metrics.rate_limited();
            Break(too_many_requests(wait))
        }
    }
}

/// Runs the route's handler. An upgraded tunnel the proxy hands back goes
/// into the outcome, to be spawned (and logged when it closes) by `log`.
async fn handle_action<'r>(
    req: Box<Request<RequestBody>>,
    route: &Routed<'r>,
    facts: &Facts,
    conn: &Arc<ConnContext>,
) -> Outcome<'r> {
    let local = |response| Outcome::local(response, route.metrics);
    match route.action {
        Action::Respond {
            status,
            body,
            content_type,
        } => local(respond(*status, body, content_type)),
        Action::Redirect { to, code } => local(redirect(to, *code, req.uri())),
        Action::Proxy(proxy) => {
            let limits = BodyLimits {
                max: route.max_body,
                stall: conn.shared.client_body_timeout,
            };
            // Boxed: the forwarding future (waiting for an upstream, connect,
            // send, retry, body limits, timeouts) is several KiB, and every
            // enclosing future would embed it and copy it whole at each of its
            // moves (callgrind once showed h2 requests doubling in cost, when
            // hyper moved each stream's future several times). One allocation
            // per request is cheaper.
            let forwarded =
                pin_in_place!(proxy.forward(req, limits, &facts.client, facts.host.clone())).await;
            Outcome {
                response: forwarded.response,
                upstream: Some(forwarded.upstream),
                counters: route.metrics,
                site_log: None,
                tunnel: forwarded.tunnel,
            }
        }
        Action::Files(files) => local(files.serve(&facts.method, req.uri(), req.headers()).await),
    }
}

/// The response filters of a route and site, taken from the request before
/// the handler consumes it.
struct Filters<'a> {
    /// Compressions in preference order; empty for none.
    encode: &'a [Encoding],
    /// Kept only when `encode` may use it.
    accept_encoding: Option<HeaderValue>,
    /// `Strict-Transport-Security`, on HTTPS only.
    hsts: Option<&'a HeaderValue>,
    /// `error-page`s, applied first so the page is what gets compressed.
    error_pages: &'a ErrorPages,
    /// `header` operations, applied last so they can override anything above.
    response_headers: &'a [HeaderOp],
}

impl<'a> Filters<'a> {
    fn new<B>(req: &Request<B>, route: &Routed<'a>, site: &'a SiteRoutes, scheme: Scheme) -> Self {
        let accept_encoding = match route.encode {
            [] => None,
            _ => req.headers().get(header::ACCEPT_ENCODING).cloned(),
        };
        Filters {
            encode: route.encode,
            accept_encoding,
            hsts: site.hsts.as_ref().filter(|_| scheme == Scheme::Https),
            error_pages: route.error_pages,
            response_headers: route.response_headers,
        }
    }

    /// error page ─► encode ─► HSTS ─► header.
    fn apply<'r>(&self, mut outcome: Outcome<'r>, method: &Method) -> Outcome<'r> {
        if !self.error_pages.is_empty() {
            outcome.response = self.error_pages.apply(outcome.response);
        }
        if !self.encode.is_empty() {
            outcome.response = encode::apply(
                outcome.response,
                method,
                self.accept_encoding.as_ref(),
                self.encode,
            );
        }
        if let Some(hsts) = self.hsts {
            outcome
                .response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        header_ops::apply(outcome.response.headers_mut(), self.response_headers);
        outcome
    }
}

/// The last phase, for every answer: its status is counted, a HEAD response
/// loses its content, and the body is wrapped to write the access-log line
/// when it ends; an upgrade's tunnel is spawned on the server's tasks (where
/// shutdown reaches it) and writes the line when it closes.
fn log(
    outcome: Outcome<'_>,
    facts: Facts,
    conn: &Arc<ConnContext>,
    in_flight: InFlight,
) -> Response<LoggedBody> {
    let (mut parts, mut body) = outcome.response.into_parts();
    // A status meant for the log only (499) replaces the wire's here.
    let status = parts
        .extensions
        .remove::<LogStatus>()
        .map_or(parts.status, |logged| logged.0);
    outcome.counters.answered(status);
    if facts.method == Method::HEAD {
        body = without_content(&mut parts.headers, body);
    }
    let file = outcome.site_log.map(|l| (l.sink.clone(), l.format));
    let log = (file.is_some() || access_log::enabled()).then(|| {
        Box::new(RequestLog {
            start: facts.start,
            client: facts.client,
            method: facts.method,
            host: facts.host,
            uri: facts.uri,
            status,
            upstream: outcome.upstream,
            version: facts.version,
            tls: conn.accepted.tls,
            user_agent: facts.user_agent,
            file,
        })
    });
    let log = match outcome.tunnel {
        Some(tunnel) => {
            conn.shared.spawn_tunnel(tunnel, conn.clone(), log);
            None
        }
        None => log,
    };
    Response::from_parts(parts, LoggedBody::new(body, log, in_flight))
}

/// A HEAD response carries no content (RFC 9110 §9.3.2). The HTTP/1.1 server
/// leaves the body out, but h2 would send it as DATA, which clients treat as a
/// protocol error. So a body bellhop made itself (`respond`, error pages) is dropped, its
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

/// The host the client asked for: `:authority` (h2, absolute-form) or Host.
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(authority) = req.uri().authority() {
        return HeaderValue::from_str(authority.as_str()).ok();
    }
    req.headers().get(header::HOST).cloned()
}
