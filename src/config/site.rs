//! Site blocks: addresses, which directives may appear at site and route level,
//! and how a route inherits the site's directives.
//!
//! A site's `Site::routes` is what the router walks: the explicit routes in file
//! order, each with the site-level handler, rate limit and encodings filled in
//! where it has none of its own, then one catch-all route for everything else.

use std::time::Duration;

use kdl::KdlDocument;
use miette::SourceSpan;

use super::access::AccessBlock;
use super::directives::{self, HSTS_DEFAULT, PROXY_SETTINGS};
use super::error::{Problem, Problems};
use super::error_page::error_page;
use super::headers::{header_op, security_directive, security_headers};
use super::hosts::HostPattern;
use super::limits;
use super::model::{
    defaults, AccessLogFile, Encoding, ErrorPage, Handler, HeaderOp, PathPattern, RateLimit, Route,
    Scheme, Site, TlsMode,
};
use super::options::OPTION_NAMES;
use super::reader::{list, Directive, Seen};
use super::suggest::did_you_mean;
use super::syntax::quoted;
use super::values;

/// Every directive allowed directly in a site block.
pub(crate) const SITE_DIRECTIVES: &[&str] = &[
    "proxy",
    "redirect",
    "respond",
    "files",
    "rate-limit",
    "encode",
    "max-body",
    "tls",
    "hsts",
    "route",
    "bind",
    "header",
    "request-header",
    "security-headers",
    "error-page",
    "allow",
    "deny",
    "basic-auth",
    "log",
];

/// Every directive allowed in a route block.
const ROUTE_DIRECTIVES: &[&str] = &[
    "proxy",
    "redirect",
    "respond",
    "files",
    "rate-limit",
    "encode",
    "max-body",
    "header",
    "request-header",
    "error-page",
    "allow",
    "deny",
    "basic-auth",
];

/// What a site answers when it has routes but no site-level handler.
const NOT_FOUND: &str = "Not Found";

/// A parsed site plus the spans of its addresses, for the checks across sites.
pub(crate) struct SiteBlock {
    pub site: Site,
    pub address_spans: Vec<SourceSpan>,
}

/// Which block a directive sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Site,
    Route,
}

/// The directives of one block (site or route), before inheritance.
#[derive(Default)]
struct Block {
    /// The handler, if it was valid.
    handler: Option<Handler>,
    /// Where a handler directive was written (even an invalid one) and its name.
    handler_at: Option<(SourceSpan, String)>,
    /// `Some(None)` is `rate-limit off`.
    rate_limit: Option<Option<RateLimit>>,
    encode: Option<Vec<Encoding>>,
    max_body: Option<u64>,
    tls: Option<(TlsMode, SourceSpan)>,
    hsts: Option<(Duration, SourceSpan)>,
    /// `Some(None)` is `log` to stderr.
    log: Option<Option<AccessLogFile>>,
    routes: Vec<RouteBlock>,
    bind: Option<std::net::IpAddr>,
    seen: Seen,
    /// `header` lines in order, after `security-headers`' set when present.
    response_headers: Vec<HeaderOp>,
    /// `request-header` lines in order.
    request_headers: Vec<HeaderOp>,
    /// `security-headers` was written (site level only).
    security: bool,
    /// `error-page` lines in order.
    error_pages: Vec<ErrorPage>,
    access: AccessBlock,
}

/// A `route` directive: its patterns (one route each) and its block.
struct RouteBlock {
    patterns: Vec<(PathPattern, SourceSpan)>,
    name_span: SourceSpan,
    block: Block,
    strip_prefix: bool,
    rewrite: Option<PathPattern>,
}

/// Reads a site node (`app.example.com www.app.example.com { … }`).
pub(crate) fn site(d: &Directive<'_>, problems: &mut Problems) -> Option<SiteBlock> {
    let mut addresses = Vec::new();
    let mut address_spans = Vec::new();
    let mut ok = true;
    let example = "app.example.com { proxy localhost:8000 }";
    let first = values::site_address(d.name()).map_err(|e| {
        let p = Problem::new(e.message).at(d.name_span(), "invalid site address");
        problems.push(match e.help {
            Some(h) => p.help(h),
            None => p,
        });
    });
    if let Ok(address) = first {
        addresses.push(address);
        address_spans.push(d.name_span());
    } else {
        ok = false;
    }
    for arg in d.args() {
        match arg.parse_string("a site address", example, values::site_address, problems) {
            Some(address) => {
                addresses.push(address);
                address_spans.push(arg.span);
            }
            None => ok = false,
        }
    }
    d.check_props(
        &[],
        Some("a site line lists addresses only; settings go inside its block"),
        problems,
    );
    let Some(children) = d.children() else {
        problems.push(
            Problem::new(format!("site `{}` has no block", d.name()))
                .at(d.name_span(), "no `{ … }` after the addresses")
                .help(format!(
                    "say what the site does, e.g. {} {{ proxy localhost:8000 }}",
                    site_name(d)
                )),
        );
        return None;
    };
    if children.nodes().is_empty() {
        problems.push(
            Problem::new(format!("site `{}` is empty", d.name()))
                .at(d.block_span().unwrap_or(children.span()), "empty block")
                .help(format!(
                    "say what the site does, e.g. {} {{ proxy localhost:8000 }}",
                    site_name(d)
                )),
        );
        return None;
    }
    let before = problems.len();
    let block = read_block(d, children, Level::Site, problems);
    // "Does nothing" or "no handler" after a rejected directive would only repeat it.
    let block_ok = problems.len() == before;
    let routes = routes(d, &block, block_ok, problems);
    let (tls, tls_span) = match &block.tls {
        Some((mode, span)) => (mode.clone(), Some(*span)),
        None => (TlsMode::Auto, None),
    };
    // `security-headers` turns HSTS on (HTTPS only) unless `hsts` says how long.
    let hsts = match (&block.hsts, block.security) {
        (Some((t, _)), _) => Some(*t),
        (None, true) => Some(HSTS_DEFAULT),
        (None, false) => None,
    };
    let site = Site {
        addresses,
        tls,
        hsts,
        routes: routes?,
        bind: block.bind,
        log: block.log.clone().flatten(),
    };
    let site_block = SiteBlock {
        site,
        address_spans,
    };
    check_tls(&site_block, tls_span, block.hsts.map(|(_, s)| s), problems);
    ok.then_some(site_block)
}

/// The site's first address as written, for examples in help text.
fn site_name(d: &Directive<'_>) -> String {
    let name = d.name();
    if name.contains(['/', '[', '"']) || name.starts_with(|c: char| c.is_ascii_digit()) {
        quoted(name)
    } else {
        name.to_string()
    }
}

/// Reads the directives of a site or route block.
fn read_block(
    parent: &Directive<'_>,
    children: &KdlDocument,
    level: Level,
    problems: &mut Problems,
) -> Block {
    let mut block = Block::default();
    for node in children.nodes() {
        let d = parent.child(node);
        let name = d.name();
        match (name, level) {
            ("proxy" | "redirect" | "respond" | "files", _) => {
                if let Some((first, first_name)) = &block.handler_at {
                    problems.push(handler_conflict(&d, *first, first_name));
                    continue;
                }
                block.handler_at = Some((d.name_span(), name.to_string()));
                block.handler = match name {
                    "proxy" => directives::proxy(&d, problems),
                    "redirect" => directives::redirect(&d, problems),
                    "respond" => directives::respond(&d, problems),
                    _ => directives::files(&d, problems),
                };
            }
            ("rate-limit", _) => {
                if block.seen.first(&d, problems) {
                    block.rate_limit = directives::rate_limit(&d, problems);
                }
            }
            ("encode", _) => {
                if block.seen.first(&d, problems) {
                    block.encode = directives::encode(&d, problems);
                }
            }
            ("max-body", _) => {
                if block.seen.first(&d, problems) {
                    block.max_body = limits::max_body(&d, problems);
                }
            }
            ("tls", Level::Site) => {
                if block.seen.first(&d, problems) {
                    block.tls = directives::tls(&d, problems).map(|t| (t, d.name_span()));
                }
            }
            ("hsts", Level::Site) => {
                if block.seen.first(&d, problems) {
                    block.hsts = directives::hsts(&d, problems).map(|t| (t, d.name_span()));
                }
            }
            ("bind", Level::Site) => {
                if block.seen.first(&d, problems) {
                    block.bind = super::bind::parse(&d, problems);
                }
            }
            ("allow" | "deny" | "basic-auth", _) => block.access.read(&d, problems),
            ("log", Level::Site) => {
                if block.seen.first(&d, problems) {
                    block.log = super::log::log(&d, problems);
                }
            }
            ("route", Level::Site) => {
                if let Some(route) = route(&d, problems) {
                    block.routes.push(route);
                }
            }
            ("header", _) => block.response_headers.extend(header_op(&d, problems)),
            ("request-header", _) => block.request_headers.extend(header_op(&d, problems)),
            ("security-headers", Level::Site) => {
                if block.seen.first(&d, problems) {
                    block.security = security_directive(&d, problems);
                }
            }
            ("error-page", _) => block.error_pages.extend(error_page(&d, problems)),
            _ => problems.push(misplaced(&d, level)),
        }
    }
    block
}

fn handler_conflict(d: &Directive<'_>, first: SourceSpan, first_name: &str) -> Problem {
    if d.name() == "proxy" && first_name == "proxy" {
        Problem::new("two `proxy` directives in one block")
            .at(d.name_span(), "second proxy")
            .at(first, "first proxy")
            .help("one proxy balances over several upstreams: proxy localhost:8000 localhost:8001; to send some paths elsewhere, use a route: route \"/api/*\" { proxy 3000 }")
    } else {
        Problem::new(format!("`{}` and `{first_name}` in one block", d.name()))
            .at(d.name_span(), "second handler")
            .at(first, "first handler")
            .help(format!(
                "a block has one handler (proxy, redirect, respond or files); to use both, put one in a route, e.g. route \"/old/*\" {{ {} … }}",
                d.name()
            ))
    }
}

/// The error for a name that is not a directive of this block.
fn misplaced(d: &Directive<'_>, level: Level) -> Problem {
    let name = d.name();
    let problem = Problem::new(format!(
        "unknown directive `{name}` in a {} block",
        if level == Level::Site {
            "site"
        } else {
            "route"
        }
    ))
    .at(d.name_span(), "unknown directive");
    let allowed = if level == Level::Site {
        SITE_DIRECTIVES
    } else {
        ROUTE_DIRECTIVES
    };
    if level == Level::Route && matches!(name, "tls" | "hsts" | "bind" | "security-headers" | "log")
    {
        Problem::new(format!(
            "`{name}` applies to a whole site, not to one route"
        ))
        .at(d.name_span(), "not allowed in a route")
        .help("move it to the site block")
    } else if level == Level::Route && name == "route" {
        Problem::new("routes can't be nested")
            .at(d.name_span(), "route inside a route")
            .help("list routes side by side in the site block; the first that matches wins")
    } else if OPTION_NAMES.contains(&name) {
        problem.help(format!("`{name}` is a global setting: put it in the options block, e.g. options {{ {name} … }}"))
    } else if PROXY_SETTINGS.contains(&name) {
        problem.help(format!(
            "`{name}` is a proxy setting: put it in the proxy's block, e.g. proxy localhost:8000 {{ {name} \"30s\" }}"
        ))
    } else if let Some(s) = did_you_mean(name, allowed) {
        problem.help(format!("did you mean `{s}`?"))
    } else {
        problem.help(format!("the directives here are {}", list(allowed)))
    }
}

/// Reads `route "/api/*" "/ws" { … }`.
fn route(d: &Directive<'_>, problems: &mut Problems) -> Option<RouteBlock> {
    const USAGE: &str = "route \"/api/*\" { proxy 3000 }";
    d.check_props(&["strip-prefix", "rewrite"], None, problems);
    if !d.check_arg_count(1, usize::MAX, USAGE, problems) {
        return None;
    }
    let mut patterns = Vec::new();
    for arg in d.args() {
        if let Some(p) = arg.parse_string("a path pattern", USAGE, values::path_pattern, problems) {
            patterns.push((p, arg.span));
        }
    }
    let Some(children) = d.children() else {
        problems.push(
            Problem::new("`route` needs a block")
                .at(d.name_span(), "no `{ … }` after the path")
                .help(format!("for example: {USAGE}")),
        );
        return None;
    };
    if children.nodes().is_empty() {
        problems.push(
            Problem::new("this route is empty")
                .at(d.block_span().unwrap_or(children.span()), "empty block")
                .help(format!("say what the route does, e.g. {USAGE}")),
        );
        return None;
    }
    let block = read_block(d, children, Level::Route, problems);
    let strip_prefix = super::rewrite::strip_prefix(d, &patterns, problems);
    let rewrite = super::rewrite::rewrite(d, &patterns, strip_prefix, problems);
    Some(RouteBlock {
        patterns,
        name_span: d.name_span(),
        block,
        strip_prefix,
        rewrite,
    })
}

/// Builds the site's route list: explicit routes with inheritance, then the catch-all.
fn routes(
    site: &Directive<'_>,
    block: &Block,
    block_ok: bool,
    problems: &mut Problems,
) -> Option<Vec<Route>> {
    let site_rate = block.rate_limit.unwrap_or(None);
    let site_encode = block.encode.clone().unwrap_or_default();
    let site_max_body = block.max_body.unwrap_or(defaults::MAX_BODY);
    let mut site_headers = if block.security {
        security_headers()
    } else {
        Vec::new()
    };
    site_headers.extend(block.response_headers.iter().cloned());
    let mut out: Vec<Route> = Vec::new();
    let mut spans: Vec<SourceSpan> = Vec::new();
    let mut ok = true;
    for route in &block.routes {
        let handler = match (&route.block.handler, &block.handler) {
            (Some(h), _) | (None, Some(h)) => h.clone(),
            (None, None) => {
                // Only report when nothing was written; an invalid handler is
                // already reported.
                if block_ok {
                    problems.push(
                        Problem::new("this route has no handler, and the site has none to inherit")
                            .at(route.name_span, "no handler")
                            .help(
                                "add proxy, redirect, respond or files to the route or to the site",
                            ),
                    );
                }
                ok = false;
                continue;
            }
        };
        for (path, span) in &route.patterns {
            if let Some(i) = out.iter().position(|r| covers(&r.path, path)) {
                problems.push(
                    Problem::new(format!("route {} is never used", pattern_text(path)))
                        .at(*span, "never matches")
                        .at(spans[i], "this earlier route takes all its requests")
                        .help("routes are tried in order and the first match wins; move the more specific route up"),
                );
                ok = false;
            }
            out.push(Route {
                path: path.clone(),
                handler: handler.clone(),
                rate_limit: route.block.rate_limit.unwrap_or(site_rate),
                encode: route
                    .block
                    .encode
                    .clone()
                    .unwrap_or_else(|| site_encode.clone()),
                max_body: route.block.max_body.unwrap_or(site_max_body),
                response_headers: concat(&site_headers, &route.block.response_headers),
                request_headers: concat(&block.request_headers, &route.block.request_headers),
                error_pages: concat(&route.block.error_pages, &block.error_pages),
                access: route.block.access.rules_or(&block.access),
                basic_auth: route.block.access.auth_or(&block.access),
                strip_prefix: route.strip_prefix,
                rewrite: route.rewrite.clone(),
            });
            spans.push(*span);
        }
    }
    let catch_all = match (&block.handler, &block.handler_at) {
        (Some(h), _) => h.clone(),
        (None, Some(_)) => return None,
        (None, None) if !block.routes.is_empty() => Handler::Respond {
            status: 404,
            body: NOT_FOUND.to_string(),
            content_type: None,
        },
        (None, None) if !block_ok => return None,
        (None, None) => {
            problems.push(
                Problem::new(format!("site `{}` does nothing", site.name()))
                    .at(site.name_span(), "no handler")
                    .help("add proxy, redirect, respond or files, e.g. proxy localhost:8000"),
            );
            return None;
        }
    };
    out.push(Route {
        path: PathPattern::Any,
        handler: catch_all,
        rate_limit: site_rate,
        encode: site_encode,
        max_body: site_max_body,
        response_headers: site_headers,
        request_headers: block.request_headers.clone(),
        error_pages: block.error_pages.clone(),
        access: block.access.rules_or(&block.access),
        basic_auth: block.access.auth_or(&block.access),
        strip_prefix: false,
        rewrite: None,
    });
    ok.then_some(out)
}

/// A route's list after the site's: the route's own `header` lines run after
/// the site's (so they override them), its `error-page`s are tried first.
fn concat<T: Clone>(first: &[T], then: &[T]) -> Vec<T> {
    first.iter().chain(then).cloned().collect()
}

/// Whether every path `later` matches is already taken by `earlier`.
fn covers(earlier: &PathPattern, later: &PathPattern) -> bool {
    match later {
        PathPattern::Exact(q) => earlier.matches(q),
        PathPattern::Prefix(q) => matches!(earlier, PathPattern::Prefix(_)) && earlier.matches(q),
        PathPattern::Any => false,
    }
}

fn pattern_text(p: &PathPattern) -> String {
    match p {
        PathPattern::Any => "*".to_string(),
        PathPattern::Exact(s) => quoted(s),
        PathPattern::Prefix(s) => quoted(&format!("{s}/*")),
    }
}

/// Checks that the site's TLS settings can work for its addresses.
fn check_tls(
    s: &SiteBlock,
    tls_span: Option<SourceSpan>,
    hsts_span: Option<SourceSpan>,
    problems: &mut Problems,
) {
    let site = &s.site;
    let https: Vec<_> = site
        .addresses
        .iter()
        .zip(&s.address_spans)
        .filter(|(a, _)| a.scheme == Scheme::Https)
        .collect();
    if https.is_empty() {
        for (span, what) in [(tls_span, "tls"), (hsts_span, "hsts")] {
            if let Some(span) = span {
                problems.push(
                    Problem::new(format!("`{what}` on a site that only serves plain HTTP"))
                        .at(span, "no HTTPS address")
                        .at(s.address_spans[0], "http:// address")
                        .help(format!(
                            "remove `{what}`, or serve HTTPS: drop `http://` from the address (or write `https://`)"
                        )),
                );
            }
        }
        return;
    }
    if !matches!(site.tls, TlsMode::Auto | TlsMode::Acme { .. }) {
        return;
    }
    for (address, span) in https {
        match &address.host {
            HostPattern::Wildcard(suffix) if !is_local_name(suffix) => problems.push(
                Problem::new(format!(
                    "no certificate for `*.{suffix}`: wildcard certificates need the DNS-01 challenge, which bellhop does not support"
                ))
                .at(*span, "wildcard address")
                .help("list the names instead, or add tls \"wildcard.pem\" \"wildcard.key\" with a certificate you got elsewhere, or tls internal"),
            ),
            HostPattern::Any => problems.push(
                Problem::new("an HTTPS address without a host name has no name to get a certificate for")
                    .at(*span, "no host name")
                    .help("name the host (app.example.com:8443), add tls \"cert.pem\" \"key.pem\" or tls internal, or serve plain HTTP with http://"),
            ),
            _ => {}
        }
    }
}

/// `localhost` and `*.localhost` get certificates from the internal CA.
fn is_local_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}
