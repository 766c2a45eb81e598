//! The typed, validated configuration that the rest of bellhop consumes.
//!
//! Everything downstream of the parser works with these types and never re-checks
//! strings: a `Config` that exists is a config that is valid. Defaults live in
//! [`defaults`], in one place.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use super::hosts::{HostPattern, IpNet};

/// Every default value of the Proxyfile, in one place so docs and code agree.
pub mod defaults {
    use std::time::Duration;

    /// Port for plain HTTP (ACME HTTP-01 and the redirect to HTTPS).
    pub const HTTP_PORT: u16 = 80;
    /// Port for HTTPS sites.
    pub const HTTPS_PORT: u16 = 443;
    /// Where the ACME account, certificates and internal CA live.
    pub const STATE_DIR: &str = "/var/lib/bellhop";
    /// Let's Encrypt production directory.
    pub const ACME_CA: &str = "https://acme-v02.api.letsencrypt.org/directory";
    /// Let's Encrypt staging directory, selected with `acme-ca "staging"`.
    pub const ACME_CA_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
    /// An upgraded (WebSocket) stream with no bytes either way for this long is closed.
    pub const UPGRADE_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// Time allowed for the upstream to send response headers before a 504.
    pub const UPSTREAM_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    /// Time allowed to open a TCP or unix connection to the upstream before a 502.
    pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Idle pooled upstream connections are dropped after this long. It must stay
    /// below uvicorn's 5 s keep-alive so we close first and never reuse a dead socket.
    pub const UPSTREAM_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
    /// How long a request waits for an upstream that refuses connections (or
    /// whose unix socket is missing) before a 502: long enough for
    /// `systemctl restart` of a uvicorn app, short enough that a backend that
    /// is really down answers within a few seconds.
    pub const UPSTREAM_WAIT: Duration = Duration::from_secs(5);
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// After an upgrade hands the listeners over, how long the old process
    /// keeps serving its open requests and WebSockets before closing them.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// A client must finish sending request headers within this time; it also bounds
    /// how long an idle HTTP/1.1 keep-alive connection is held open.
    pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    /// TLS handshakes that take longer than this are dropped.
    pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Most `workers` accepted: far beyond any core count bellhop targets, low
    /// enough that a typo (`workers 20000`) is an error, not 20,000 threads.
    pub const MAX_WORKERS: usize = 1024;
    /// Status code for `redirect` when none is given.
    pub const REDIRECT_CODE: u16 = 308;
    /// `max-connections-per-ip`: enough for a household or office behind one
    /// NAT address (a browser opens about 6 per site, HTTP/2 one), far below
    /// what one host could use to exhaust the global cap.
    pub const MAX_CONNECTIONS_PER_IP: usize = 256;
    /// `client-body-timeout`: the longest pause allowed while a request body
    /// is being received, like nginx's `client_body_timeout` (60 s there).
    pub const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// `client-write-timeout`: how long a response write may stay blocked by
    /// a client that does not read, like nginx's `send_timeout` (60 s there).
    pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// `max-body`: 100 MB (decimal). nginx's default is 1 MB, which breaks
    /// ordinary photo uploads; Caddy has none. Bodies are streamed, so this
    /// protects the backend and the disk behind it, not bellhop's memory.
    pub const MAX_BODY: u64 = 100_000_000;
    /// The `realm` of `basic-auth` when none is given.
    pub const BASIC_AUTH_REALM: &str = "restricted";
}

/// The whole Proxyfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The `options { }` block (all defaults when absent).
    pub options: Options,
    /// Sites in file order.
    pub sites: Vec<Site>,
}

/// Global settings from the `options { }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// ACME account contact (`email`).
    pub email: Option<String>,
    /// ACME directory URL (`acme-ca`; `"staging"` is expanded here).
    pub acme_ca: String,
    /// Extra root certificate to trust for the ACME server's HTTPS (`acme-ca-root`).
    pub acme_ca_root: Option<PathBuf>,
    /// ACME certificate profile to request (`profile "shortlived"`), if the CA offers profiles.
    pub acme_profile: Option<String>,
    /// Account, certificates and internal CA (`state-dir`).
    pub state_dir: PathBuf,
    /// Port for plain HTTP sites and the redirect to HTTPS (`http-port`).
    pub http_port: u16,
    /// Port for HTTPS sites (`https-port`).
    pub https_port: u16,
    /// Local-only admin/metrics listener (`admin`); off when `None`.
    pub admin: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-*` headers are believed (`trusted-proxies`).
    pub trusted_proxies: Vec<IpNet>,
    /// How long shutdown waits for in-flight requests (`grace-period`).
    pub grace_period: Duration,
    /// Deadline for a client's request headers and idle keep-alive (`client-header-timeout`).
    pub client_header_timeout: Duration,
    /// Worker threads, each with its own runtime, listeners and upstream pool
    /// (`workers`); `None` means one per CPU the process may run on, resolved
    /// by the server at start-up so the parsed config stays machine-independent.
    pub workers: Option<NonZeroUsize>,
    /// Local address every site listens on (`bind`), unless a site has its own;
    /// `None`: where each site's address says.
    pub bind: Option<IpAddr>,
    /// Where what instances must agree on is kept (`storage`); the state
    /// directory unless a Redis URL is given.
    pub storage: Storage,
    /// Client connections open at once, over every listener and worker
    /// (`max-connections`); `None` means derived from the open-file limit at
    /// start-up (see `server::caps`), so the parsed config stays machine-independent.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one IP address (`max-connections-per-ip`).
    pub max_connections_per_ip: usize,
    /// Longest pause while a request body arrives before the request is cut
    /// with 408 (`client-body-timeout`).
    pub client_body_timeout: Duration,
    /// Longest time a response write may stay blocked by a client that does
    /// not read before the connection is closed (`client-write-timeout`).
    pub client_write_timeout: Duration,
    /// The part of `trusted_proxies` that is Cloudflare (`trusted-proxies
    /// cloudflare`): from these peers `CF-Connecting-IP` names the client.
    pub cloudflare_proxies: Vec<IpNet>,
    /// After `bellhop upgrade` hands the listeners to the new process, how
    /// long the old one keeps serving what it has open (`drain-timeout`).
    pub drain_timeout: Duration,
}

/// `storage`: the state directory alone, or Redis shared by several instances
/// (with the state directory as each instance's local cache).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Storage {
    /// Everything in `state-dir` (the default).
    #[default]
    Dir,
    /// `storage "redis://…"`.
    Redis(StorageRedis),
}

/// A Redis server shared by the instances of a cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageRedis {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS).
    pub url: String,
    /// 32 bytes that encrypt private keys kept in Redis (`key-file`); without
    /// it they are stored in clear, a documented trust decision.
    pub key_file: Option<PathBuf>,
    /// The Redis password, read from this file at start (`password-file`);
    /// the URL then carries none.
    pub password_file: Option<PathBuf>,
    /// The CA that a `rediss://` server's certificate must chain to
    /// (`ca-root`, PEM), instead of the system's roots.
    pub ca_root: Option<PathBuf>,
}

impl std::fmt::Debug for StorageRedis {
    /// Never prints the password in the URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageRedis")
            .field("url", &super::storage::redact(&self.url))
            .field("key_file", &self.key_file)
            .field("password_file", &self.password_file)
            .field("ca_root", &self.ca_root)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            email: None,
            acme_ca: defaults::ACME_CA.to_string(),
            acme_ca_root: None,
            acme_profile: None,
            state_dir: PathBuf::from(defaults::STATE_DIR),
            http_port: defaults::HTTP_PORT,
            https_port: defaults::HTTPS_PORT,
            admin: None,
            trusted_proxies: Vec::new(),
            grace_period: defaults::SHUTDOWN_GRACE,
            client_header_timeout: defaults::CLIENT_HEADER_TIMEOUT,
            workers: None,
            bind: None,
            storage: Storage::Dir,
            max_connections: None,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            client_body_timeout: defaults::CLIENT_BODY_TIMEOUT,
            client_write_timeout: defaults::CLIENT_WRITE_TIMEOUT,
            cloudflare_proxies: Vec::new(),
            drain_timeout: defaults::DRAIN_TIMEOUT,
        }
    }
}

/// One site block: the addresses it answers and what it does with requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// The node name and any further arguments, in order.
    pub addresses: Vec<SiteAddress>,
    /// How the certificate for this site's HTTPS addresses is obtained.
    pub tls: TlsMode,
    /// HSTS header on HTTPS responses (`hsts`); off by default.
    pub hsts: Option<Duration>,
    /// Path routes in order, first match wins. The site-level directives form a
    /// final catch-all route, so every request matches exactly one route.
    pub routes: Vec<Route>,
    /// Local address this site listens on (`bind`), over the options' one.
    pub bind: Option<IpAddr>,
    /// Where the site's access-log lines go (`log`): a file of its own, or
    /// `None` for stderr with bellhop's log (the default).
    pub log: Option<AccessLogFile>,
}

/// A site's access-log file (`log "/var/log/bellhop/app.log" format="json"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogFile {
    /// The file, appended to; reopened on SIGUSR1 and on reload (logrotate).
    pub path: std::path::PathBuf,
    /// How each line is written.
    pub format: AccessLogFormat,
}

/// How access-log lines are written to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// `key=value` pairs after an RFC 3339 time, one request a line (the default).
    Text,
    /// One JSON object a line.
    Json,
}

/// Which scheme a site address asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://…`, or a bare port like `:8080` (no host name to certify, as in
    /// Caddy): plain HTTP on the given port or `http-port`, no certificate.
    Http,
    /// `https://…` or no scheme (with a host): HTTPS on the given port or
    /// `https-port`; plain HTTP on `http-port` redirects there.
    Https,
}

/// One address a site answers to, e.g. `app.example.com`, `"http://127.0.0.1:18080"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAddress {
    /// Explicit `http://` or HTTPS (the default).
    pub scheme: Scheme,
    /// Which Host header values match.
    pub host: HostPattern,
    /// Explicit port; `None` means `http-port`/`https-port` by scheme.
    pub port: Option<u16>,
}

impl SiteAddress {
    /// The port this address listens on: its own, or `http-port`/`https-port` by scheme.
    pub fn effective_port(&self, options: &Options) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Http => options.http_port,
            Scheme::Https => options.https_port,
        })
    }
}

/// Writes the address as it would appear in a Proxyfile (`app.example.com`,
/// `http://127.0.0.1:18080`, `[::1]:8443`, `:8080`), for messages and logs.
impl std::fmt::Display for SiteAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No scheme means HTTPS, except for a bare port, which means plain HTTP.
        let implied = match self.host {
            HostPattern::Any => Scheme::Http,
            _ => Scheme::Https,
        };
        // `http://` alone (any host on http-port) needs its scheme to be readable.
        let bare = self.host == HostPattern::Any && self.port.is_none();
        if self.scheme != implied || bare {
            match self.scheme {
                Scheme::Http => f.write_str("http://")?,
                Scheme::Https => f.write_str("https://")?,
            }
        }
        match &self.host {
            HostPattern::Name(name) => f.write_str(name)?,
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostPattern::Ip(ip) => write!(f, "{ip}")?,
            HostPattern::Any => {}
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// How an HTTPS site gets its certificate (`tls` directive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// ACME for public names; the internal CA for `localhost`, `*.localhost` and IPs.
    Auto,
    /// Auto, but only one ACME challenge type (`tls challenge="http-01"`).
    Acme {
        /// The single challenge type to use.
        challenge: AcmeChallenge,
    },
    /// bellhop's own local CA (`tls internal`).
    Internal,
    /// A given PEM chain and key (`tls "cert.pem" "key.pem"`).
    Files {
        /// PEM certificate chain, leaf first.
        cert: PathBuf,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

/// ACME challenge types bellhop can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// `http-01`: a token file served on `http-port`.
    Http01,
    /// `tls-alpn-01`: a special certificate on `https-port`.
    TlsAlpn01,
}

/// A path route and the directives that apply to it (site-level ones inherited).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Which request paths this route takes.
    pub path: PathPattern,
    /// What answers matching requests.
    pub handler: Handler,
    /// Per-client rate limit (`rate-limit`), inherited from the site when unset.
    pub rate_limit: Option<RateLimit>,
    /// Response compressions in preference order (`encode zstd gzip`), inherited
    /// from the site when unset; empty means responses pass through as they are.
    pub encode: Vec<Encoding>,
    /// Largest request body in bytes (`max-body`), inherited from the site
    /// when unset; larger gets 413.
    pub max_body: u64,
    /// `header` (and `security-headers`) operations on the response, site-level
    /// ones first, then the route's own, applied in this order.
    pub response_headers: Vec<HeaderOp>,
    /// `request-header` operations on the request sent upstream, site-level
    /// ones first, then the route's own.
    pub request_headers: Vec<HeaderOp>,
    /// `error-page` replacements by status; the route's own come first, so
    /// they win over the site's for the same status.
    pub error_pages: Vec<ErrorPage>,
    /// `allow` / `deny` rules in file order (a route's own rules replace the
    /// site's); empty means everyone.
    pub access: Vec<AccessRule>,
    /// `basic-auth` users (a route's own replace the site's; `basic-auth off`
    /// removes them); `None` means no authentication.
    pub basic_auth: Option<BasicAuth>,
    /// `route "/api/*" strip-prefix=#true`: the handler (and the upstream) see
    /// the path without the pattern's prefix. Only on `"/prefix/*"` routes.
    pub strip_prefix: bool,
    /// `route "/old/*" rewrite="/new/*"`: the handler sees the path with the
    /// route's prefix swapped for this one's (`Prefix`), or this path for
    /// every match (`Exact`); the query is kept.
    pub rewrite: Option<PathPattern>,
}

impl Route {
    /// A route with `handler` for `path` and every other setting at its
    /// default, as a route block without further directives reads: one place
    /// to build a `Route` outside the parser, so a new setting is one edit.
    pub fn new(path: PathPattern, handler: Handler) -> Route {
        Route {
            path,
            handler,
            rate_limit: None,
            encode: Vec::new(),
            max_body: defaults::MAX_BODY,
            response_headers: Vec::new(),
            request_headers: Vec::new(),
            error_pages: Vec::new(),
            access: Vec::new(),
            basic_auth: None,
            strip_prefix: false,
            rewrite: None,
        }
    }
}

/// One `header`/`request-header` operation. Names and values are parsed here,
/// once, so the request path only inserts what is already valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// `header "Name" "value"`: replaces every value of the header.
    Set(http::HeaderName, http::HeaderValue),
    /// `header "+Name" "value"`: adds a value, keeping those already there.
    Add(http::HeaderName, http::HeaderValue),
    /// `header "-Name"`: removes the header.
    Remove(http::HeaderName),
}

/// `error-page 502 503 504 "/srv/maint.html"`: what replaces the body of a
/// response with one of these statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// Statuses (400–599) this page answers.
    pub statuses: Vec<u16>,
    /// The page itself.
    pub body: ErrorBody,
}

/// The body of an [`ErrorPage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorBody {
    /// A file, read when the config is loaded (and on every reload); its
    /// content type comes from its extension.
    File(PathBuf),
    /// Literal text (`text="…"`), sent as `text/plain` or `content-type`.
    Text {
        /// The page.
        text: String,
        /// `content-type="text/html"`; plain UTF-8 text when absent.
        content_type: Option<http::HeaderValue>,
    },
}

/// A content coding bellhop may apply to responses (`encode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `zstd` (RFC 8878).
    Zstd,
    /// `gzip` (RFC 1952).
    Gzip,
}

impl Encoding {
    /// The token used both in the Proxyfile and in `Accept-Encoding`/`Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }
}

/// A route's path pattern. The query string never takes part in matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// Every path (the site-level catch-all).
    Any,
    /// `"/exact"`: that path only.
    Exact(String),
    /// `"/prefix/*"`: `/prefix` itself and everything below it (stored without `/*`).
    Prefix(String),
}

impl PathPattern {
    /// Whether a request path (no query) falls under this pattern.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Any => true,
            PathPattern::Exact(p) => path == p,
            PathPattern::Prefix(p) => {
                // "/api/*" covers "/api" and "/api/..." but not "/apix".
                p.is_empty()
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }
}

/// Writes the pattern as it appears in a Proxyfile (`/api/*`, `/exact`), and
/// `*` for the catch-all: route labels in metrics and logs.
impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathPattern::Any => f.write_str("*"),
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Prefix(p) => write!(f, "{p}/*"),
        }
    }
}

/// What answers the requests of a route.
#[derive(Debug, Clone, PartialEq)]
pub enum Handler {
    /// Forward to upstreams (`proxy`).
    Proxy(ProxyConfig),
    /// Answer with a redirect (`redirect "https://example.org{uri}" code=301`).
    Redirect {
        /// Target; `{uri}` is replaced by the request's path and query.
        to: String,
        /// 301, 302, 303, 307 or 308.
        code: u16,
    },
    /// Answer with a fixed status and body (`respond "text" status=200`).
    Respond {
        /// Status code.
        status: u16,
        /// Body.
        body: String,
        /// `content-type="text/html"`; `text/plain; charset=utf-8` when absent.
        content_type: Option<http::HeaderValue>,
    },
    /// Serve static files from a directory (`files "/srv/site"`).
    Files {
        /// Root directory.
        root: PathBuf,
        /// `try="/index.html"`: the file served (GET/HEAD) when the request
        /// path names nothing, for single-page apps.
        fallback: Option<String>,
    },
}

/// A `proxy` directive: where to forward and how patiently.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// One or more upstreams; several means load balancing.
    pub upstreams: Vec<Upstream>,
    /// Upgraded streams with no bytes either way for this long are closed (`idle-timeout`).
    pub idle_timeout: Duration,
    /// No response headers within this time gives a 504 (`header-timeout`).
    pub header_timeout: Duration,
    /// Connecting to the upstream longer than this gives a 502 (`connect-timeout`).
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long (`pool-idle-timeout`).
    pub pool_idle_timeout: Duration,
    /// A refused connect (or a missing unix socket) is retried for this long
    /// before a 502 (`upstream-wait`); zero answers 502 at once.
    pub upstream_wait: Duration,
}

impl ProxyConfig {
    /// A proxy block with every setting at its default.
    pub fn new(upstreams: Vec<Upstream>) -> Self {
        ProxyConfig {
            upstreams,
            idle_timeout: defaults::UPGRADE_IDLE_TIMEOUT,
            header_timeout: defaults::UPSTREAM_HEADER_TIMEOUT,
            connect_timeout: defaults::UPSTREAM_CONNECT_TIMEOUT,
            pool_idle_timeout: defaults::UPSTREAM_POOL_IDLE_TIMEOUT,
            upstream_wait: defaults::UPSTREAM_WAIT,
        }
    }
}

/// A backend address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// `localhost:8000`, `8000` (= 127.0.0.1), `"ip:port"`, `"host:port"`, `"http://host:port"`.
    Tcp {
        /// Host name or IP literal (IPv6 without brackets), resolved at connect time.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `"unix:/path.sock"`.
    Unix {
        /// Socket path.
        path: PathBuf,
    },
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Upstream::Tcp { host, port } => write!(f, "{host}:{port}"),
            Upstream::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `rate-limit "20/s" burst=40`: a token bucket per client IP (IPv6 per /64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Bucket size; defaults to one second's worth (at least 1).
    pub burst: u32,
    /// Counted across instances in the shared storage (`shared=#true`).
    pub shared: bool,
}

/// One `allow` or `deny` line: the first line whose networks hold the client
/// decides; when none does, the client is let in only if there is no `allow`
/// line at all (an allow list means "these and nobody else").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// `allow` (true) or `deny` (false).
    pub allow: bool,
    /// Addresses and networks; `all` is `0.0.0.0/0` and `::/0`.
    pub nets: Vec<IpNet>,
}

impl AccessRule {
    /// Whether `rules` let a client at `ip` in (see [`AccessRule`]).
    pub fn admits(rules: &[AccessRule], ip: IpAddr) -> bool {
        match rules
            .iter()
            .find(|rule| rule.nets.iter().any(|net| net.contains(ip)))
        {
            Some(rule) => rule.allow,
            None => !rules.iter().any(|rule| rule.allow),
        }
    }
}

/// `basic-auth "alice" "$argon2id$…"`: HTTP Basic authentication (RFC 7617).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The `realm` the browser shows (`realm="…"`).
    pub realm: String,
    /// Users in file order, names unique.
    pub users: Vec<BasicUser>,
}

/// One `basic-auth` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicUser {
    /// User name, compared exactly.
    pub name: String,
    /// An argon2 PHC string (`$argon2id$…`) or a bcrypt hash (`$2b$…`),
    /// checked to parse when the Proxyfile is read.
    pub hash: String,
}
