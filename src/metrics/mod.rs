//! What the admin listener's `GET /metrics` reports, in the OpenMetrics text
//! format (which Prometheus scrapes natively).
//!
//! The request path must pay nothing for this but an atomic add. So every
//! counter a request touches is looked up once, when the router is built
//! ([`Metrics::route`]), and the route keeps the handle (an `Arc` around an
//! atomic): counting a request is then one relaxed `fetch_add`, with no lock,
//! no label hashing and no allocation. The label families (and their locks)
//! are only touched when a router is built, a certificate changes or the
//! admin listener encodes a scrape.
//!
//! One [`Metrics`] lives as long as the server: reloads build new routers that
//! fetch the same handles again, so counters keep counting across reloads.
//!
//! The upstream response-time histogram is bellhop's own ([`Histogram`],
//! atomic buckets): the crate's own takes a lock per observation.

mod histogram;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::limit::RefusedCounters;
pub(crate) use histogram::Histogram;

/// Labels of `bellhop_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The site's first address, as written in the Proxyfile.
    site: Arc<str>,
    /// The route's path pattern (`/api/*`), `*` for the site's catch-all.
    route: Arc<str>,
    /// The status class: `1xx` … `5xx`.
    code: &'static str,
}

/// Labels of per-site counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: Arc<str>,
}

/// Labels of per-certificate gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

/// Labels of `bellhop_certificate_renewal_last_result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameResultLabels {
    name: String,
    /// `success` or `failure`; the one that happened last is 1, the other 0.
    result: &'static str,
}

/// Labels of `bellhop_upstream_failures_total` and
/// `bellhop_upstream_response_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    /// The upstream as written in the Proxyfile (`127.0.0.1:8000`, `unix:/run/app.sock`).
    upstream: Arc<str>,
}

/// Labels of `bellhop_refused_connections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Labels of `bellhop_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: &'static str,
}

/// Labels of `bellhop_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Status classes in `code` label order; index = status / 100 - 1.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric bellhop exports, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rate_limited: Family<SiteLabels, Counter>,
    open_connections: Gauge,
    open_websockets: Gauge,
    parked_connections: Gauge,
    parks: Counter,
    reloads: Family<OutcomeLabels, Counter>,
    certificate_not_after: Family<NameLabels, Gauge>,
    refused_connections: Family<ReasonLabels, Counter>,
    /// The names in `certificate_not_after` (the family cannot list them).
    certificate_names: Mutex<Vec<String>>,
    upstream_failures: Family<UpstreamLabels, Counter>,
    upstream_response: Family<UpstreamLabels, Histogram>,
    received_bytes: Family<SiteLabels, Counter>,
    sent_bytes: Family<SiteLabels, Counter>,
    /// Bytes of connections that never reached a site (site label "").
    unrouted_bytes: SiteBytes,
    acme_failures: Family<NameLabels, Counter>,
    renewal_last_result: Family<NameResultLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `bellhop_` prefix. Counters get their
    /// `_total` suffix from the encoder, as OpenMetrics requires.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("bellhop");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by site, route and status class",
            requests.clone(),
        );
        let rate_limited = Family::<SiteLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429 by a rate limit, by site",
            rate_limited.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now (TCP, TLS included)",
            open_connections.clone(),
        );
        let open_websockets = Gauge::default();
        registry.register(
            "open_websockets",
            "Upgraded connections (WebSockets) being spliced now",
            open_websockets.clone(),
        );
        let parked_connections = Gauge::default();
        registry.register(
            "parked_connections",
            "Idle HTTP/1.1 keep-alive connections parked now: their HTTP buffers freed until the client sends again",
            parked_connections.clone(),
        );
        let parks = Counter::default();
        registry.register(
            "parks",
            "Times an idle HTTP/1.1 connection was parked",
            parks.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reloads",
            "Config reloads, by result (applied or failed)",
            reloads.clone(),
        );
        let certificate_not_after = Family::<NameLabels, Gauge>::default();
        registry.register(
            "certificate_not_after_seconds",
            "End of validity of the certificate served for a name, in Unix seconds",
            certificate_not_after.clone(),
        );
        let upstream_failures = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_failures",
            "Failed connects to an upstream (refused, socket missing, timed out), by upstream",
            upstream_failures.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "bellhop's version; always 1", build_info);
        let upstream_response = Family::<UpstreamLabels, Histogram>::default();
        registry.register(
            "upstream_response_seconds",
            "Time from sending a request to an upstream to its response headers, by upstream",
            upstream_response.clone(),
        );
        let received_bytes = Family::<SiteLabels, Counter>::default();
        registry.register(
            "received_bytes",
            "Bytes received from clients (HTTP, after TLS), by site; added when a connection closes",
            received_bytes.clone(),
        );
        let sent_bytes = Family::<SiteLabels, Counter>::default();
        registry.register(
            "sent_bytes",
            "Bytes sent to clients (HTTP, before TLS), by site; added when a connection closes",
            sent_bytes.clone(),
        );
        let unrouted_bytes = SiteBytes::new(&received_bytes, &sent_bytes, &"".into());
        let acme_failures = Family::<NameLabels, Counter>::default();
        registry.register(
            "acme_failures",
            "Failed attempts to obtain a certificate from the ACME CA, by name",
            acme_failures.clone(),
        );
        let renewal_last_result = Family::<NameResultLabels, Gauge>::default();
        registry.register(
            "certificate_renewal_last_result",
            "Outcome of the last ACME attempt per name: 1 on the result that happened last",
            renewal_last_result.clone(),
        );
        let refused_connections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "refused_connections",
            "Client connections closed before any request, by reason: a cap at accept (max-connections, per-ip) or a failed or timed-out TLS handshake",
            refused_connections.clone(),
        );
        Metrics {
            registry,
            requests,
            rate_limited,
            open_connections,
            open_websockets,
            parked_connections,
            parks,
            reloads,
            certificate_not_after,
            refused_connections,
            certificate_names: Mutex::new(Vec::new()),
            upstream_failures,
            upstream_response,
            received_bytes,
            sent_bytes,
            unrouted_bytes,
            acme_failures,
            renewal_last_result,
        }
    }

    /// The response-time histogram of one upstream, fetched once when the
    /// router is built; proxies to the same upstream share it.
    pub(crate) fn upstream(&self, upstream: &Arc<str>) -> Histogram {
        self.upstream_response.get_or_create_owned(&UpstreamLabels {
            upstream: upstream.clone(),
        })
    }

    /// The byte counters of one site, fetched once when the router is built.
    pub(crate) fn site_bytes(&self, site: &Arc<str>) -> SiteBytes {
        SiteBytes::new(&self.received_bytes, &self.sent_bytes, site)
    }

    /// The byte counters of connections that never reached a site.
    pub(crate) fn unrouted_bytes(&self) -> &SiteBytes {
        &self.unrouted_bytes
    }

    /// The counter of connections refused for `reason`; fetch it once where
    /// the refusals happen (a snake_case word: `tls_handshake`, …).
    pub(crate) fn refused(&self, reason: &'static str) -> Counter {
        self.refused_connections
            .get_or_create_owned(&ReasonLabels { reason })
    }

    /// Records the outcome of an attempt to obtain `name`'s certificate from
    /// the ACME CA (also when a restart finds an earlier outcome on disk, with
    /// `count` false so the failure is not counted twice).
    pub(crate) fn acme_result(&self, name: &str, success: bool, count: bool) {
        if !success && count {
            self.acme_failures
                .get_or_create(&NameLabels { name: name.into() })
                .inc();
        }
        for (result, last) in [("success", success), ("failure", !success)] {
            self.renewal_last_result
                .get_or_create(&NameResultLabels {
                    name: name.into(),
                    result,
                })
                .set(i64::from(last));
        }
    }

    /// Drops the last-result series of a name no longer configured (its
    /// failure counter stays: counters never go backwards).
    pub(crate) fn forget_acme_name(&self, name: &str) {
        for result in ["success", "failure"] {
            self.renewal_last_result.remove(&NameResultLabels {
                name: name.into(),
                result,
            });
        }
    }

    /// The counters of connections refused at accept, one per reason; both
    /// series exist from the start, at zero.
    pub(crate) fn refused_connections(&self) -> RefusedCounters {
        RefusedCounters {
            max_connections: self.refused("max-connections"),
            per_ip: self.refused("per-ip"),
        }
    }

    /// The counters one route increments, fetched once when the router is built.
    pub(crate) fn route(&self, site: &Arc<str>, route: &Arc<str>) -> RouteMetrics {
        let by_class = STATUS_CLASSES.map(|code| {
            self.requests.get_or_create_owned(&RequestLabels {
                site: site.clone(),
                route: route.clone(),
                code,
            })
        });
        let rate_limited = self
            .rate_limited
            .get_or_create_owned(&SiteLabels { site: site.clone() });
        RouteMetrics {
            by_class,
            rate_limited,
        }
    }

    /// The failed-connect counter of one upstream, fetched once when the
    /// router is built so that counting a failure takes no lock.
    pub(crate) fn upstream_failures(&self, upstream: &Arc<str>) -> Counter {
        self.upstream_failures.get_or_create_owned(&UpstreamLabels {
            upstream: upstream.clone(),
        })
    }

    /// Counts an open client connection until the guard is dropped.
    pub(crate) fn connection_opened(&self) -> OpenGuard {
        OpenGuard::new(&self.open_connections)
    }

    /// Counts an upgraded connection being spliced until the guard is dropped.
    pub(crate) fn websocket_opened(&self) -> OpenGuard {
        OpenGuard::new(&self.open_websockets)
    }

    /// Counts a parked connection, and holds it in `parked_connections` until
    /// the guard is dropped.
    pub(crate) fn connection_parked(&self) -> OpenGuard {
        self.parks.inc();
        OpenGuard::new(&self.parked_connections)
    }

    /// Records the outcome of a reload.
    pub(crate) fn reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "failed" };
        self.reloads.get_or_create(&OutcomeLabels { result }).inc();
    }

    /// Records the certificates served now, by name with their end of
    /// validity; names served before and missing here are dropped.
    pub(crate) fn certificates(&self, served: &[(String, SystemTime)]) {
        let mut known = self
            .certificate_names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in known
            .iter()
            .filter(|n| !served.iter().any(|(s, _)| s == *n))
        {
            self.certificate_not_after
                .remove(&NameLabels { name: gone.clone() });
        }
        known.clear();
        for (name, not_after) in served {
            let secs = not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.certificate_not_after
                .get_or_create(&NameLabels { name: name.clone() })
                .set(secs);
            known.push(name.clone());
        }
    }

    /// The OpenMetrics text exposition of every metric, ending in `# EOF`.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        // Writing into a String cannot fail; an error here would be an encoder bug.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }
}

/// The counters of one route: requests by status class and rate-limit refusals.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    by_class: [Counter; 5],
    rate_limited: Counter,
}

impl RouteMetrics {
    /// Counts a request answered with `status`.
    pub(crate) fn answered(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
    }

    /// Counts a request refused by the rate limit (the 429 itself is counted
    /// by [`answered`](Self::answered) too).
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.inc();
    }
}

/// The byte counters of one site: what a client connection read and wrote,
/// added once when it closes (see `server::traffic`).
#[derive(Debug, Clone)]
pub(crate) struct SiteBytes {
    received: Counter,
    sent: Counter,
}

impl SiteBytes {
    fn new(
        received: &Family<SiteLabels, Counter>,
        sent: &Family<SiteLabels, Counter>,
        site: &Arc<str>,
    ) -> Self {
        let labels = SiteLabels { site: site.clone() };
        SiteBytes {
            received: received.get_or_create_owned(&labels),
            sent: sent.get_or_create_owned(&labels),
        }
    }

    /// Adds one connection's totals.
    pub(crate) fn add(&self, received: u64, sent: u64) {
        self.received.inc_by(received);
        self.sent.inc_by(sent);
    }
}

/// Holds a gauge one higher while it lives.
#[derive(Debug)]
pub(crate) struct OpenGuard(Gauge);

impl OpenGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        OpenGuard(gauge.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, prefix: &str) -> Option<i64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn route_handles_count_into_the_shared_family() {
        let metrics = Metrics::new();
        let site: Arc<str> = "app.test".into();
        let route: Arc<str> = "/api/*".into();
        let first = metrics.route(&site, &route);
        // A reload builds the route again: same series, still counting.
        let again = metrics.route(&site, &route);
        first.answered(http::StatusCode::OK);
        again.answered(http::StatusCode::NO_CONTENT);
        again.answered(http::StatusCode::BAD_GATEWAY);
        again.rate_limited();
        let text = metrics.encode();
        let series = |code: &str| {
            line_value(
                &text,
                &format!(
                    "bellhop_requests_total{{site=\"app.test\",route=\"/api/*\",code=\"{code}\"}}"
                ),
            )
        };
        assert_eq!(series("2xx"), Some(2), "{text}");
        assert_eq!(series("5xx"), Some(1), "{text}");
        assert_eq!(series("4xx"), Some(0), "{text}");
        assert_eq!(
            line_value(&text, "bellhop_rate_limited_total{site=\"app.test\"}"),
            Some(1)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn refused_connections_by_reason() {
        let metrics = Metrics::new();
        let refused = metrics.refused_connections();
        refused.per_ip.inc();
        refused.per_ip.inc();
        let text = metrics.encode();
        let series = |reason: &str| {
            line_value(
                &text,
                &format!("bellhop_refused_connections_total{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(series("per-ip"), Some(2), "{text}");
        assert_eq!(series("max-connections"), Some(0), "{text}");
    }

    #[test]
    fn acme_results_bytes_and_refusals() {
        let metrics = Metrics::new();
        metrics.acme_result("a.test", false, true);
        // A restart restates the outcome on disk without counting it again.
        metrics.acme_result("a.test", false, false);
        let site: Arc<str> = "app.test".into();
        metrics.site_bytes(&site).add(10, 200);
        metrics.site_bytes(&site).add(1, 2);
        metrics.refused("tls_handshake").inc();
        let text = metrics.encode();
        let failures = "bellhop_acme_failures_total{name=\"a.test\"}";
        let last = |result: &str| {
            format!(
                "bellhop_certificate_renewal_last_result{{name=\"a.test\",result=\"{result}\"}}"
            )
        };
        assert_eq!(line_value(&text, failures), Some(1), "{text}");
        assert_eq!(line_value(&text, &last("failure")), Some(1));
        assert_eq!(line_value(&text, &last("success")), Some(0));
        assert_eq!(
            line_value(&text, "bellhop_received_bytes_total{site=\"app.test\"}"),
            Some(11)
        );
        assert_eq!(
            line_value(&text, "bellhop_sent_bytes_total{site=\"app.test\"}"),
            Some(202)
        );
        assert_eq!(
            line_value(
                &text,
                "bellhop_refused_connections_total{reason=\"tls_handshake\"}"
            ),
            Some(1)
        );
        metrics.acme_result("a.test", true, true);
        let text = metrics.encode();
        assert_eq!(line_value(&text, &last("success")), Some(1));
        assert_eq!(line_value(&text, &last("failure")), Some(0));
        metrics.forget_acme_name("a.test");
        let text = metrics.encode();
        assert!(!text.contains("renewal_last_result{"), "{text}");
        assert_eq!(line_value(&text, failures), Some(1));
    }

    #[test]
    fn gauges_follow_guards_and_certificates() {
        let metrics = Metrics::new();
        let a = metrics.connection_opened();
        let b = metrics.connection_opened();
        let ws = metrics.websocket_opened();
        drop(a);
        let text = metrics.encode();
        assert_eq!(line_value(&text, "bellhop_open_connections "), Some(1));
        assert_eq!(line_value(&text, "bellhop_open_websockets "), Some(1));
        drop((b, ws));
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000);
        metrics.certificates(&[("a.test".into(), at), ("b.test".into(), at)]);
        let text = metrics.encode();
        assert_eq!(line_value(&text, "bellhop_open_connections "), Some(0));
        assert_eq!(
            line_value(
                &text,
                "bellhop_certificate_not_after_seconds{name=\"a.test\"}"
            ),
            Some(1_900_000_000)
        );
        metrics.certificates(&[("b.test".into(), at)]);
        let text = metrics.encode();
        assert!(!text.contains("name=\"a.test\""), "{text}");
        assert!(text.contains("name=\"b.test\""), "{text}");
    }
}
