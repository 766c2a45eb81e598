//! Builders for `bellhop::config::Config`, so a test's set-up reads like the
//! Proxyfile it stands for. Every address is plain `http://` on port 0 (ephemeral).
//!
//! ```ignore
//! // "http://app.test:0" { route "/api/*" { proxy API } proxy WEB }
//! let cfg = ConfigBuilder::new()
//!     .site(site("app.test").route("/api/*", proxy(api)).proxy(web))
//!     .build();
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bellhop::config::{
    Config, Handler, HostPattern, IpNet, Options, PathPattern, ProxyConfig, Route, Scheme, Site,
    SiteAddress, TlsMode, Upstream,
};

/// A whole config under construction.
pub struct ConfigBuilder {
    options: Options,
    sites: Vec<Site>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    /// Default options, with `state-dir` under the temp dir (tests never touch
    /// /var/lib) and HTTP/HTTPS ports 0 so nothing binds a privileged port.
    pub fn new() -> Self {
        let state_dir =
            std::env::temp_dir().join(format!("bellhop-it-state-{}", std::process::id()));
        let options = Options {
            state_dir,
            http_port: 0,
            https_port: 0,
            ..Options::default()
        };
        ConfigBuilder {
            options,
            sites: Vec::new(),
        }
    }

    /// Adds a site (sites keep their order).
    pub fn site(mut self, s: SiteBuilder) -> Self {
        self.sites.push(s.build());
        self
    }

    /// Trusts `X-Forwarded-*` from peers in `cidr` (e.g. `127.0.0.2/32`).
    pub fn trusted_proxy(mut self, cidr: &str) -> Self {
        let (ip, prefix) = cidr.split_once('/').expect("cidr");
        self.options.trusted_proxies.push(IpNet {
            addr: ip.parse().expect("cidr ip"),
            prefix: prefix.parse().expect("cidr prefix"),
        });
        self
    }

    /// Keeps state (the internal CA, certificates) in `dir`.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.options.state_dir = dir.to_path_buf();
        self
    }

    /// Sets the shutdown grace period.
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.options.grace_period = d;
        self
    }

    /// Gives mutable access to the options for anything not covered above.
    pub fn options(mut self, f: impl FnOnce(&mut Options)) -> Self {
        f(&mut self.options);
        self
    }

    /// The finished config.
    pub fn build(self) -> Config {
        Config {
            options: self.options,
            sites: self.sites,
        }
    }
}

/// A plain-HTTP site answering `host` on port 0. `host` is a name (`app.test`), a
/// wildcard (`*.app.test`), an IP literal (`127.0.0.1`) or empty (any Host).
pub fn site(host: &str) -> SiteBuilder {
    SiteBuilder {
        addresses: vec![address(host)],
        routes: Vec::new(),
        catch_all: None,
        tls: TlsMode::Auto,
        max_body: None,
    }
}

/// An HTTPS site answering `host` on port 0 with a certificate from bellhop's
/// internal CA (`"https://host:0" { tls internal }`).
pub fn https_site(host: &str) -> SiteBuilder {
    let mut a = address(host);
    a.scheme = Scheme::Https;
    SiteBuilder {
        addresses: vec![a],
        routes: Vec::new(),
        catch_all: None,
        tls: TlsMode::Internal,
        max_body: None,
    }
}

fn address(host: &str) -> SiteAddress {
    let host = if host.is_empty() {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        HostPattern::Wildcard(suffix.to_string())
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        HostPattern::Ip(ip)
    } else {
        HostPattern::Name(host.to_string())
    };
    SiteAddress {
        scheme: Scheme::Http,
        host,
        port: Some(0),
    }
}

/// One site under construction.
pub struct SiteBuilder {
    addresses: Vec<SiteAddress>,
    routes: Vec<Route>,
    catch_all: Option<Handler>,
    tls: TlsMode,
    max_body: Option<u64>,
}

impl SiteBuilder {
    /// Another address of the same site (also port 0).
    pub fn also(mut self, host: &str) -> Self {
        self.addresses.push(address(host));
        self
    }

    /// A path route, `"/exact"` or `"/prefix/*"`; routes keep their order.
    pub fn route(mut self, pattern: &str, handler: Handler) -> Self {
        let path = match pattern.strip_suffix("/*") {
            Some(prefix) => PathPattern::Prefix(prefix.to_string()),
            None => PathPattern::Exact(pattern.to_string()),
        };
        self.routes.push(make_route(path, handler));
        self
    }

    /// The site-level handler (the catch-all route after all path routes).
    pub fn handle(mut self, handler: Handler) -> Self {
        self.catch_all = Some(handler);
        self
    }

    /// Shorthand for `.handle(proxy(upstream))`.
    pub fn proxy(self, upstream: Upstream) -> Self {
        self.handle(proxy(upstream))
    }

    /// `max-body` for every route of the site.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// The site.
    pub fn build(self) -> Site {
        let mut routes = self.routes;
        if let Some(h) = self.catch_all {
            routes.push(make_route(PathPattern::Any, h));
        }
        if let Some(bytes) = self.max_body {
            for route in &mut routes {
                route.max_body = bytes;
            }
        }
        Site {
            addresses: self.addresses,
            tls: self.tls,
            hsts: None,
            routes,
            bind: None,
            log: None,
        }
    }
}

/// The one place a `Route` is built, so a new field of the model is one edit here.
fn make_route(path: PathPattern, handler: Handler) -> Route {
    Route::new(path, handler)
}

/// A TCP upstream at a socket address (`"127.0.0.1:PORT"`).
pub fn tcp(addr: SocketAddr) -> Upstream {
    Upstream::Tcp {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

/// A TCP upstream by host name, resolved by bellhop (`localhost:PORT`).
pub fn named(host: &str, port: u16) -> Upstream {
    Upstream::Tcp {
        host: host.to_string(),
        port,
    }
}

/// A unix-socket upstream (`"unix:/path.sock"`).
pub fn unix(path: &Path) -> Upstream {
    Upstream::Unix {
        path: path.to_path_buf(),
    }
}

/// A proxy handler with default settings.
pub fn proxy(upstream: Upstream) -> Handler {
    Handler::Proxy(ProxyConfig::new(vec![upstream]))
}

/// A proxy handler with default settings, changed by `f`.
pub fn proxy_with(upstreams: Vec<Upstream>, f: impl FnOnce(&mut ProxyConfig)) -> Handler {
    let mut p = ProxyConfig::new(upstreams);
    f(&mut p);
    Handler::Proxy(p)
}

/// A fixed response.
pub fn respond(status: u16, body: &str) -> Handler {
    Handler::Respond {
        status,
        body: body.to_string(),
        content_type: None,
    }
}
