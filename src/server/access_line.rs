//! One access-log line: its fields, and how it is written to stderr (through
//! `tracing`, in bellhop's own `--log-format`) or to a site's own file (text
//! or JSON, formatted here).
//!
//! Only the fields below are ever written; request and response headers are
//! not, except User-Agent, so `Authorization`, `Cookie` and `Set-Cookie`
//! cannot leak into a log. A file line is formatted into a per-thread buffer
//! and queued (`logging::batch`): no allocation and no I/O on the worker.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, StatusCode, Uri, Version};
use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::AccessLogFormat;
use crate::logging::AccessLogSink;
use crate::proxy::ClientInfo;

/// The facts of one request, gathered while it is handled.
#[derive(Debug)]
pub(super) struct RequestLog {
    /// When the request head was received.
    pub start: Instant,
    /// The peer and the client behind it (the same unless the peer is a
    /// trusted proxy).
    pub client: ClientInfo,
    /// Request method.
    pub method: Method,
    /// Host or `:authority` as the client sent it.
    pub host: Option<HeaderValue>,
    /// Request target (path and query are logged).
    pub uri: Uri,
    /// Response status.
    pub status: StatusCode,
    /// The upstream that answered, for proxied requests.
    pub upstream: Option<Arc<str>>,
    /// HTTP version of the request.
    pub version: Version,
    /// The connection's TLS version, `None` on plain HTTP.
    pub tls: Option<&'static str>,
    /// The client's User-Agent.
    pub user_agent: Option<HeaderValue>,
    /// The site's own log file; `None` writes to stderr.
    pub file: Option<(Arc<AccessLogSink>, AccessLogFormat)>,
}

/// What a response moved, known when it ends.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moved {
    /// Body bytes sent to the client (for a tunnel: upstream to client).
    pub bytes: u64,
    /// For an upgraded tunnel (WebSocket): client to upstream.
    pub from_client: Option<u64>,
    /// Whether the body (or tunnel) ended normally.
    pub complete: bool,
}

/// The fields of a line, borrowed, in the order they are written.
#[derive(Serialize)]
struct Line<'a> {
    time: Timestamp,
    peer: std::net::IpAddr,
    client: std::net::IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    protocol: &'static str,
    tls: &'a str,
    status: u16,
    upstream: &'a str,
    duration_ms: f64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_from_client: Option<u64>,
    complete: bool,
    user_agent: &'a str,
}

impl RequestLog {
    /// Writes the line for this request, now that it has `moved` its bytes.
    pub(super) fn write(&self, moved: Moved) {
        let line = Line {
            time: Timestamp(OffsetDateTime::now_utc()),
            peer: self.client.peer,
            client: self.client.ip,
            method: self.method.as_str(),
            host: header_str(self.host.as_ref()),
            path: self.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            protocol: protocol(self.version),
            tls: self.tls.unwrap_or("-"),
            status: self.status.as_u16(),
            upstream: self.upstream.as_deref().unwrap_or("-"),
            duration_ms: (self.start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            bytes: moved.bytes,
            bytes_from_client: moved.from_client,
            complete: moved.complete,
            user_agent: header_str(self.user_agent.as_ref()),
        };
        match &self.file {
            None => line.trace(),
            Some((sink, format)) => LINE.with_borrow_mut(|buf| {
                buf.clear();
                match format {
                    AccessLogFormat::Json => {
                        // Serializing plain fields into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut *buf, &line);
                    }
                    AccessLogFormat::Text => line.text(buf),
                }
                buf.push(b'\n');
                sink.push(buf);
                if buf.capacity() > KEEP {
                    *buf = Vec::with_capacity(KEEP);
                }
            }),
        }
    }
}

/// Capacity the per-thread line buffer keeps (a line with a long path or
/// user agent may take more, once).
const KEEP: usize = 4096;

thread_local! {
    /// Where a file line is formatted before it is queued.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(KEEP));
}

impl Line<'_> {
    /// To stderr, as a `tracing` event of the `access` target.
    fn trace(&self) {
        tracing::info!(
            target: "access",
            peer = %self.peer,
            client = %self.client,
            method = self.method,
            host = self.host,
            path = self.path,
            protocol = self.protocol,
            tls = self.tls,
            status = self.status,
            upstream = self.upstream,
            duration_ms = self.duration_ms,
            bytes = self.bytes,
            bytes_from_client = self.bytes_from_client,
            complete = self.complete,
            user_agent = self.user_agent,
            "request"
        );
    }

    /// `TIME key=value …`; a value with spaces or quotes is quoted and escaped.
    fn text(&self, buf: &mut Vec<u8>) {
        self.time.write_to(buf);
        // Writing to a Vec cannot fail.
        let _ = write!(
            buf,
            " peer={} client={} method={} host={} path={} protocol={} tls={} status={} upstream={} duration_ms={} bytes={}",
            self.peer,
            self.client,
            Text(self.method),
            Text(self.host),
            Text(self.path),
            self.protocol,
            self.tls,
            self.status,
            Text(self.upstream),
            self.duration_ms,
            self.bytes,
        );
        if let Some(n) = self.bytes_from_client {
            let _ = write!(buf, " bytes_from_client={n}");
        }
        let _ = write!(
            buf,
            " complete={} user_agent={}",
            self.complete,
            Text(self.user_agent)
        );
    }
}

/// A text-format value: as is when it is one plain word, else quoted with
/// `"` and `\` escaped (so a line always splits back into its fields).
struct Text<'a>(&'a str);

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = !self.0.is_empty()
            && !self
                .0
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'"' || b == b'\\');
        if plain {
            return f.write_str(self.0);
        }
        f.write_str("\"")?;
        for c in self.0.chars() {
            if matches!(c, '"' | '\\') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

/// The time a line is written, RFC 3339 in UTC, formatted without allocating.
struct Timestamp(OffsetDateTime);

impl Timestamp {
    fn write_to(&self, buf: &mut Vec<u8>) {
        // A UTC time in the years 0..=9999 always formats.
        let _ = self.0.format_into(buf, &Rfc3339);
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `2026-12-02T00:57:57.123456789Z` is 30 bytes.
        let mut bytes = [0u8; 40];
        let mut out = &mut bytes[..];
        let _ = self.0.format_into(&mut out, &Rfc3339);
        let len = 40 - out.len();
        serializer.serialize_str(std::str::from_utf8(&bytes[..len]).unwrap_or_default())
    }
}

/// A header's value for the log: `-` when absent or not visible ASCII.
fn header_str(value: Option<&HeaderValue>) -> &str {
    value.and_then(|v| v.to_str().ok()).unwrap_or("-")
}

/// `HTTP/1.1`, `HTTP/2`, …
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_split_back_into_fields() {
        assert_eq!(Text("curl/8.5").to_string(), "curl/8.5");
        assert_eq!(
            Text("Mozilla/5.0 (X11; \"x\")").to_string(),
            r#""Mozilla/5.0 (X11; \"x\")""#
        );
        assert_eq!(Text("").to_string(), "\"\"");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = Timestamp(OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(123_456_789));
        let mut buf = Vec::new();
        t.write_to(&mut buf);
        assert_eq!(buf, b"1970-01-01T00:00:00.123456789Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"1970-01-01T00:00:00.123456789Z\""
        );
    }
}
