//! From a request to the action that answers it: port → host → path.
//!
//! A [`Router`] is built once per config from the typed [`Config`] and then only
//! read. The server holds it behind an atomic swap, so a reload builds a new
//! router and swaps it in while requests in flight finish on the old one.
//! The new router takes over the old one's rate-limit buckets where a site
//! kept its limit, so a reload does not hand every client a fresh burst.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use fnv::FnvHashMap;
use http::{HeaderValue, StatusCode};

use crate::access::{AccessRule, BasicAuthGate};
use crate::config::{
    wildcard_suffix, AccessLogFormat, BasicAuth, Config, Encoding, Handler, HeaderOp, HostPattern,
    IpNet, PathPattern, RateLimit, Route, Scheme,
};
use crate::error_pages::{ErrorPages, PageError};
use crate::files::Files;
use crate::limit::Limiter;
use crate::logging::{AccessLogFiles, AccessLogSink};
use crate::metrics::{Metrics, RouteMetrics, SiteBytes};
use crate::path_rewrite::{NoPrefix, PathRewrite};
use crate::proxy::Proxy;
use crate::storage::RedisLimits;

/// Everything the request path needs from the config.
#[derive(Debug)]
pub(crate) struct Router {
    ports: FnvHashMap<u16, PortRoutes>,
    trusted_proxies: Vec<IpNet>,
    /// The Cloudflare part of `trusted_proxies`.
    cloudflare_proxies: Vec<IpNet>,
    /// Counters for requests that reach no route (unknown host or path,
    /// redirects to HTTPS, ACME challenges, malformed requests).
    unrouted: RouteMetrics,
    /// Every rate limiter the routes use, for the next router to take over.
    limiters: Limiters,
    /// How many sites the config has (for status lines).
    sites: usize,
    /// Whether any site writes its own access-log file.
    site_logs: bool,
}

/// The rate limiters of a router by site (its first address) and limit.
///
/// A reload builds a new router; a site whose limit is unchanged gets the
/// same limiter (the same buckets) back, so exhausting a limit and then
/// reloading does not reset it. A changed limit starts with fresh buckets: the
/// old counts meant something else.
#[derive(Debug, Default)]
struct Limiters(Vec<(Arc<str>, RateLimit, Arc<Limiter>)>);

impl Limiters {
    fn find(&self, site: &str, limit: RateLimit) -> Option<&Arc<Limiter>> {
        self.0
            .iter()
            .find(|(s, l, _)| **s == *site && *l == limit)
            .map(|(_, _, limiter)| limiter)
    }

    /// The limiter for `limit` on `site`: one already built for this router
    /// (routes inheriting the site's limit share its buckets: a client gets
    /// "20/s" for the site, not 20/s per route), else the previous router's,
    /// else a new one from `make`.
    fn get(
        &mut self,
        site: &Arc<str>,
        limit: RateLimit,
        previous: Option<&Limiters>,
        make: impl FnOnce() -> Limiter,
    ) -> Arc<Limiter> {
        if let Some(limiter) = self.find(site, limit) {
            return limiter.clone();
        }
        let limiter = previous
            .and_then(|p| p.find(site, limit))
            .cloned()
            .unwrap_or_else(|| Arc::new(make()));
        self.0.push((site.clone(), limit, limiter.clone()));
        limiter
    }
}

/// The sites served on one listening port.
#[derive(Debug)]
pub(crate) struct PortRoutes {
    sites: HostTable<Arc<SiteRoutes>>,
    /// On the plain HTTP port: hosts of HTTPS sites, and the HTTPS port to
    /// redirect them to.
    https_redirects: HostTable<u16>,
}

/// What a port does with a request for a given host.
#[derive(Debug)]
pub(crate) enum HostMatch<'a> {
    /// A site answers this host.
    Site(&'a SiteRoutes),
    /// The host belongs to an HTTPS site: redirect to this HTTPS port.
    RedirectToHttps(u16),
    /// No site answers this host.
    Unknown,
}

/// The routes of one site, in order, with the catch-all last.
#[derive(Debug)]
pub(crate) struct SiteRoutes {
    routes: Vec<RouteEntry>,
    /// `Strict-Transport-Security` value when `hsts` is on.
    pub hsts: Option<HeaderValue>,
    /// The site's byte counters, for the connections it serves.
    pub bytes: SiteBytes,
    /// The site's access-log file; `None` for stderr.
    pub log: Option<SiteLog>,
}

/// A site's own access-log file and the format of its lines.
#[derive(Debug)]
pub(crate) struct SiteLog {
    /// Where lines are queued.
    pub sink: Arc<AccessLogSink>,
    /// How they are written.
    pub format: AccessLogFormat,
}

#[derive(Debug)]
struct RouteEntry {
    path: PathPattern,
    action: Action,
    limiter: Option<Arc<Limiter>>,
    encode: Box<[Encoding]>,
    metrics: RouteMetrics,
    max_body: u64,
    response_headers: Box<[HeaderOp]>,
    error_pages: ErrorPages,
    access: Box<[AccessRule]>,
    auth: Option<Arc<BasicAuthGate>>,
    rewrite: Option<PathRewrite>,
}

/// The route chosen for a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routed<'a> {
    /// What answers the request.
    pub action: &'a Action,
    /// The per-client rate limit that applies, if any.
    pub limiter: Option<&'a Limiter>,
    /// Response compressions in preference order; empty for none.
    pub encode: &'a [Encoding],
    /// The route's request counters.
    pub metrics: &'a RouteMetrics,
    /// Largest request body accepted, in bytes (`max-body`).
    pub max_body: u64,
    /// `header` operations on the response, in order.
    pub response_headers: &'a [HeaderOp],
    /// `error-page` replacements.
    pub error_pages: &'a ErrorPages,
    /// `allow` / `deny` rules; empty lets everyone in.
    pub access: &'a [AccessRule],
    /// `basic-auth` users, if the route has any.
    pub auth: Option<&'a BasicAuthGate>,
    /// `strip-prefix` or `rewrite`, if set.
    pub rewrite: Option<&'a PathRewrite>,
}

/// What answers a request once its route is known.
#[derive(Debug)]
pub(crate) enum Action {
    /// Forward to upstreams.
    Proxy(Proxy),
    /// Redirect to `to`, where `{uri}` stands for the request's path and query.
    Redirect {
        /// Target template.
        to: Arc<str>,
        /// 301, 302, 303, 307 or 308.
        code: StatusCode,
    },
    /// A fixed response.
    Respond {
        /// Status code.
        status: StatusCode,
        /// Body.
        body: Bytes,
        /// `Content-Type` of the body.
        content_type: HeaderValue,
    },
    /// Static files under a root directory.
    Files(Files),
}

/// A config that parses but that this build cannot serve.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouterError {
    /// A status code outside 100..=999.
    #[error("invalid status code {0}")]
    Status(u16),
    /// A `proxy` without any upstream.
    #[error("`proxy` needs at least one upstream")]
    NoUpstream,
    /// The Redis of `shared=#true` rate limits cannot be used.
    #[error("shared rate limits: {0}")]
    Storage(String),
    /// An `error-page` file is missing or unreadable.
    #[error(transparent)]
    ErrorPage(#[from] PageError),
    /// `strip-prefix` or a prefix `rewrite` on a pattern without a prefix.
    #[error(transparent)]
    PathRewrite(#[from] NoPrefix),
    /// A site's `log` file cannot be opened for appending.
    #[error("cannot open the access log {}", path.display())]
    LogFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Router {
    /// Builds the router, including one connection pool per upstream,
    /// fetches each route's counters from `metrics` and each site's
    /// access-log file from `logs` (opening it if no router had it open).
    /// `previous` is the router this one replaces (a reload): its rate-limit
    /// buckets carry over.
    pub(crate) fn new(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&Router>,
        logs: &AccessLogFiles,
    ) -> Result<Router, RouterError> {
        let options = &config.options;
        let remote = shared_limits(config)?;
        let mut ports: FnvHashMap<u16, PortRoutes> = FnvHashMap::default();
        let mut limiters = Limiters::default();
        let previous = previous.map(|p| &p.limiters);
        for site in &config.sites {
            let routes = Arc::new(SiteRoutes::new(
                site,
                metrics,
                remote.as_ref(),
                &mut limiters,
                previous,
                logs,
            )?);
            for address in &site.addresses {
                let port = address.effective_port(options);
                let tls = address.scheme == Scheme::Https;
                ports
                    .entry(port)
                    .or_insert_with(PortRoutes::new)
                    .sites
                    .insert(&address.host, routes.clone());
                if tls && port != options.http_port {
                    ports
                        .entry(options.http_port)
                        .or_insert_with(PortRoutes::new)
                        .https_redirects
                        .insert(&address.host, port);
                }
            }
        }
        Ok(Router {
            ports,
            trusted_proxies: options.trusted_proxies.clone(),
            cloudflare_proxies: options.cloudflare_proxies.clone(),
            unrouted: metrics.route(&"".into(), &"".into()),
            limiters,
            sites: config.sites.len(),
            site_logs: config.sites.iter().any(|site| site.log.is_some()),
        })
    }

    /// Whether any site writes its own access-log file: when none does and
    /// the stderr access log is off, no request needs what only a log line
    /// reads.
    pub(crate) fn site_logs(&self) -> bool {
        self.site_logs
    }

    /// How many sites the config has.
    pub(crate) fn sites(&self) -> usize {
        self.sites
    }

    /// The routes of a configured port, if any site uses it.
    pub(crate) fn port(&self, port: u16) -> Option<&PortRoutes> {
        self.ports.get(&port)
    }

    /// The counters of requests that no route answered.
    pub(crate) fn unrouted(&self) -> &RouteMetrics {
        &self.unrouted
    }

    /// Whether a peer's `X-Forwarded-*` headers are believed.
    pub(crate) fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }

    /// Whether a peer is Cloudflare's, so its `CF-Connecting-IP` is believed.
    pub(crate) fn is_cloudflare(&self, ip: IpAddr) -> bool {
        self.cloudflare_proxies.iter().any(|net| net.contains(ip))
    }
}

/// The Redis connection for `shared=#true` rate limits, when any route has
/// one: one per router (so per reload), connected on first use.
fn shared_limits(config: &Config) -> Result<Option<Arc<RedisLimits>>, RouterError> {
    let crate::config::Storage::Redis(redis) = &config.options.storage else {
        return Ok(None);
    };
    let any_shared = config
        .sites
        .iter()
        .flat_map(|s| &s.routes)
        .any(|r| r.rate_limit.is_some_and(|l| l.shared));
    if !any_shared {
        return Ok(None);
    }
    RedisLimits::new(redis)
        .map(|r| Some(Arc::new(r)))
        .map_err(|e| RouterError::Storage(e.to_string()))
}

impl PortRoutes {
    fn new() -> Self {
        PortRoutes {
            sites: HostTable::default(),
            https_redirects: HostTable::default(),
        }
    }

    /// Finds what answers `host` (lowercase, without port) on this port.
    pub(crate) fn lookup(&self, host: &str) -> HostMatch<'_> {
        // A named HTTPS site's redirect beats the IP-site fallback.
        if let Some(site) = self.sites.get(host) {
            HostMatch::Site(site)
        } else if let Some(port) = self.https_redirects.get_or_ip(host) {
            HostMatch::RedirectToHttps(*port)
        } else if let Some(site) = self.sites.get_or_ip(host) {
            HostMatch::Site(site)
        } else {
            HostMatch::Unknown
        }
    }
}

impl SiteRoutes {
    fn new<'s>(
        site: &'s crate::config::Site,
        metrics: &Metrics,
        remote: Option<&Arc<RedisLimits>>,
        limiters: &mut Limiters,
        previous: Option<&Limiters>,
        logs: &AccessLogFiles,
    ) -> Result<SiteRoutes, RouterError> {
        // Metrics name a site by its first address, as the Proxyfile does.
        let site_label: Arc<str> = site
            .addresses
            .first()
            .map_or_else(String::new, ToString::to_string)
            .into();
        // Shared buckets are named by the site's host, not its address: the
        // instances of a cluster may listen on different ports.
        let bucket = site
            .addresses
            .first()
            .map_or_else(String::new, |a| format!("{:?}", a.host));
        let mut limiter_for = |limit: RateLimit| {
            limiters.get(&site_label, limit, previous, || {
                Limiter::new(limit, &bucket, remote)
            })
        };
        // Likewise routes that inherit the site's users share one gate, so a
        // login is remembered, and failures counted, for the whole site.
        let mut gates: Vec<(&BasicAuth, Arc<BasicAuthGate>)> = Vec::new();
        let mut gate_for = |auth: &'s BasicAuth| -> Arc<BasicAuthGate> {
            if let Some((_, gate)) = gates.iter().find(|(a, _)| **a == *auth) {
                return gate.clone();
            }
            let gate = Arc::new(BasicAuthGate::new(auth));
            gates.push((auth, gate.clone()));
            gate
        };
        let routes = site
            .routes
            .iter()
            .map(|route| {
                Ok(RouteEntry {
                    path: route.path.clone(),
                    action: Action::new(route, metrics)?,
                    limiter: route.rate_limit.map(&mut limiter_for),
                    encode: route.encode.clone().into_boxed_slice(),
                    metrics: metrics.route(&site_label, &route.path.to_string().into()),
                    max_body: route.max_body,
                    response_headers: route.response_headers.clone().into_boxed_slice(),
                    error_pages: ErrorPages::load(&route.error_pages)?,
                    access: route.access.clone().into_boxed_slice(),
                    auth: route.basic_auth.as_ref().map(&mut gate_for),
                    rewrite: PathRewrite::of(route)?,
                })
            })
            .collect::<Result<Vec<_>, RouterError>>()?;
        let hsts = site.hsts.and_then(|max_age| {
            HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())).ok()
        });
        let log = site
            .log
            .as_ref()
            .map(|file| {
                let sink = logs
                    .open(&file.path)
                    .map_err(|source| RouterError::LogFile {
                        path: file.path.clone(),
                        source,
                    })?;
                Ok::<_, RouterError>(SiteLog {
                    sink,
                    format: file.format,
                })
            })
            .transpose()?;
        Ok(SiteRoutes {
            routes,
            hsts,
            bytes: metrics.site_bytes(&site_label),
            log,
        })
    }

    /// The first route whose pattern matches `path`.
    pub(crate) fn route(&self, path: &str) -> Option<Routed<'_>> {
        self.routes
            .iter()
            .find(|r| r.path.matches(path))
            .map(|r| Routed {
                action: &r.action,
                limiter: r.limiter.as_deref(),
                encode: &r.encode,
                metrics: &r.metrics,
                max_body: r.max_body,
                response_headers: &r.response_headers,
                error_pages: &r.error_pages,
                access: &r.access,
                auth: r.auth.as_deref(),
                rewrite: r.rewrite.as_ref(),
            })
    }
}

impl Action {
    fn new(route: &Route, metrics: &Metrics) -> Result<Action, RouterError> {
        Ok(match &route.handler {
            Handler::Proxy(config) => Action::Proxy(
                Proxy::new(config, metrics, &route.request_headers)
                    .ok_or(RouterError::NoUpstream)?,
            ),
            Handler::Redirect { to, code } => Action::Redirect {
                to: to.as_str().into(),
                code: StatusCode::from_u16(*code).map_err(|_| RouterError::Status(*code))?,
            },
            Handler::Respond {
                status,
                body,
                content_type,
            } => Action::Respond {
                status: StatusCode::from_u16(*status).map_err(|_| RouterError::Status(*status))?,
                body: Bytes::from(body.clone()),
                content_type: content_type
                    .clone()
                    .unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
            },
            Handler::Files { root, fallback } => Action::Files(Files::new(
                root,
                fallback.as_deref(),
                !route.encode.is_empty(),
            )),
        })
    }
}

/// Host → value with exact names first, then the `*.wildcard` one label up,
/// then a catch-all, then the first site addressed by IP.
///
/// An IP site (`"http://127.0.0.1:8080"`) says where connections arrive, not
/// which Host they carry, so it also answers `localhost:8080` and friends
/// when no site claims that name.
#[derive(Debug)]
struct HostTable<T> {
    exact: FnvHashMap<Box<str>, T>,
    /// `*.example.com` is keyed by `example.com` ([`wildcard_suffix`]).
    wildcards: FnvHashMap<Box<str>, T>,
    any: Option<T>,
    first_ip: Option<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        HostTable {
            exact: FnvHashMap::default(),
            wildcards: FnvHashMap::default(),
            any: None,
            first_ip: None,
        }
    }
}

impl<T: Clone> HostTable<T> {
    /// Adds an entry; the config parser already rejected duplicate addresses,
    /// so the first entry for a host wins.
    fn insert(&mut self, pattern: &HostPattern, value: T) {
        match pattern {
            HostPattern::Name(name) => {
                self.exact.entry(name.as_str().into()).or_insert(value);
            }
            HostPattern::Ip(ip) => {
                self.first_ip.get_or_insert_with(|| value.clone());
                self.exact.entry(ip.to_string().into()).or_insert(value);
            }
            HostPattern::Wildcard(suffix) => {
                self.wildcards
                    .entry(suffix.as_str().into())
                    .or_insert(value);
            }
            HostPattern::Any => {
                self.any.get_or_insert(value);
            }
        }
    }

    fn get(&self, host: &str) -> Option<&T> {
        if let Some(value) = self.exact.get(host) {
            return Some(value);
        }
        wildcard_suffix(host)
            .and_then(|suffix| self.wildcards.get(suffix))
            .or(self.any.as_ref())
    }

    /// `get`, falling back to the first IP-addressed entry.
    fn get_or_ip(&self, host: &str) -> Option<&T> {
        self.get(host).or(self.first_ip.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_wildcard_beats_any() {
        let mut t = HostTable::default();
        t.insert(&HostPattern::Any, "any");
        t.insert(&HostPattern::Wildcard("example.com".into()), "wild");
        t.insert(&HostPattern::Wildcard("api.example.com".into()), "api-wild");
        t.insert(&HostPattern::Name("www.example.com".into()), "exact");
        assert_eq!(t.get("www.example.com"), Some(&"exact"));
        assert_eq!(t.get("shop.example.com"), Some(&"wild"));
        assert_eq!(t.get("v1.api.example.com"), Some(&"api-wild"));
        assert_eq!(t.get("a.b.example.com"), Some(&"any"));
        assert_eq!(t.get("example.com"), Some(&"any"));
    }

    /// The limiter of `path` on `host`'s site, on the plain HTTP port 8080.
    fn limiter<'r>(router: &'r Router, host: &str, path: &str) -> &'r Limiter {
        let HostMatch::Site(site) = router.port(8080).expect("port").lookup(host) else {
            panic!("no site {host}");
        };
        site.route(path).and_then(|r| r.limiter).expect("a limiter")
    }

    #[test]
    fn a_rebuilt_router_keeps_the_buckets_of_unchanged_limits() {
        let source = |b_limit: &str| {
            format!(
                "\"http://a.test:8080\" {{\n    rate-limit \"5/s\"\n    respond \"a\"\n}}\n\
                 \"http://b.test:8080\" {{\n    route \"/x\" {{ rate-limit \"{b_limit}\"; respond \"x\" }}\n    \
                 rate-limit \"5/s\"\n    respond \"b\"\n}}\n"
            )
        };
        let metrics = Metrics::new();
        let config = |b_limit: &str| crate::config::parse(&source(b_limit), "Proxyfile").unwrap();
        let logs = AccessLogFiles::default();
        let first = Router::new(&config("1/s"), &metrics, None, &logs).unwrap();
        let same = Router::new(&config("1/s"), &metrics, Some(&first), &logs).unwrap();
        let changed = Router::new(&config("2/s"), &metrics, Some(&same), &logs).unwrap();
        let fresh = Router::new(&config("1/s"), &metrics, None, &logs).unwrap();
        let is = |a: &Limiter, b: &Limiter| std::ptr::eq(a, b);
        for (host, path) in [("a.test", "/"), ("b.test", "/"), ("b.test", "/x")] {
            assert!(is(limiter(&first, host, path), limiter(&same, host, path)));
            assert!(!is(
                limiter(&first, host, path),
                limiter(&fresh, host, path)
            ));
        }
        // Equal limits of two sites are still two sets of buckets.
        assert!(!is(
            limiter(&first, "a.test", "/"),
            limiter(&first, "b.test", "/")
        ));
        // Only the route whose limit changed starts afresh.
        assert!(is(
            limiter(&same, "b.test", "/"),
            limiter(&changed, "b.test", "/")
        ));
        assert!(!is(
            limiter(&same, "b.test", "/x"),
            limiter(&changed, "b.test", "/x")
        ));
    }

    #[test]
    fn ip_sites_answer_other_hosts_when_nothing_else_does() {
        let mut t = HostTable::default();
        t.insert(&HostPattern::Ip("127.0.0.1".parse().unwrap()), "ip");
        t.insert(&HostPattern::Name("app.test".into()), "name");
        assert_eq!(t.get("127.0.0.1"), Some(&"ip"));
        assert_eq!(t.get("localhost"), None);
        assert_eq!(t.get_or_ip("localhost"), Some(&"ip"));
        assert_eq!(t.get("app.test"), Some(&"name"));
    }
}
