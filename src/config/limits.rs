//! What bounds a client: the connection caps and client deadlines in
//! `options { }`, and `max-body` at site and route level.
//!
//! Kept apart from `options.rs` and `site.rs`, which only dispatch here, so
//! the limits read as one unit (and their defaults sit in `defaults`).

use std::time::Duration;

use super::error::{Problem, Problems};
use super::model::Options;
use super::reader::{Directive, Value};
use super::values::{self, Invalid};

/// The options this file reads (each also listed in `OPTION_NAMES`).
pub(crate) const LIMIT_OPTIONS: &[&str] = &[
    "max-connections",
    "max-connections-per-ip",
    "client-body-timeout",
    "client-write-timeout",
];

/// The help shown for every malformed size.
const SIZE_HELP: &str =
    "write a whole number and a unit (B, KB, MB, GB, or KiB, MiB, GiB), e.g. \"10MB\" or \"512KiB\"";

/// An example of each limit option, for "expected …" messages.
pub(super) fn usage(name: &str) -> &'static str {
    match name {
        "max-connections" => "max-connections 10000",
        "max-connections-per-ip" => "max-connections-per-ip 256",
        "client-body-timeout" => "client-body-timeout \"30s\"",
        "client-write-timeout" => "client-write-timeout \"30s\"",
        _ => "",
    }
}

/// Reads the limit option `name` from its one argument into `o`.
pub(super) fn option(name: &str, arg: &Value<'_>, o: &mut Options, problems: &mut Problems) {
    let usage = usage(name);
    match name {
        "max-connections" => {
            if let Some(n) = count(arg, "connections", usage, problems) {
                o.max_connections = Some(n);
            }
        }
        "max-connections-per-ip" => {
            if let Some(n) = count(arg, "connections per IP", usage, problems) {
                o.max_connections_per_ip = n;
            }
        }
        "client-body-timeout" | "client-write-timeout" => {
            let Some(t) = arg.parse_string("a duration", usage, timeout, problems) else {
                return;
            };
            if name == "client-body-timeout" {
                o.client_body_timeout = t;
            } else {
                o.client_write_timeout = t;
            }
        }
        _ => {}
    }
}

/// A connection count: a whole number of at least 1 (0 would refuse every client).
fn count(arg: &Value<'_>, what: &str, usage: &str, problems: &mut Problems) -> Option<usize> {
    let n = arg.integer("a number of connections", usage, problems)?;
    let checked = usize::try_from(n)
        .ok()
        .filter(|n| (1..=u32::MAX as usize).contains(n))
        .ok_or_else(|| {
            Invalid::new(format!("{n} is not a usable number of {what}"))
                .help(format!("write a whole number of at least 1, e.g. {usage}"))
        });
    arg.check(checked, "limit", problems)
}

/// A deadline longer than zero (zero would cut every client at once).
fn timeout(s: &str) -> Result<Duration, Invalid> {
    let t = values::duration(s)?;
    if t.is_zero() {
        return Err(
            Invalid::new("the timeout must be longer than zero").help(values::DURATION_HELP)
        );
    }
    Ok(t)
}

/// `max-body "10MB"`: the largest request body a route accepts, in bytes.
pub(crate) fn max_body(d: &Directive<'_>, problems: &mut Problems) -> Option<u64> {
    const USAGE: &str = "max-body \"10MB\"";
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    if let kdl::KdlValue::Integer(n) = arg.value {
        problems.push(
            Problem::new(format!("size {n} has no unit"))
                .at(arg.span, "no unit")
                .help(format!(
                    "write the number and its unit in quotes, e.g. \"{n}B\" or \"{n}MB\"; {SIZE_HELP}"
                )),
        );
        return None;
    }
    arg.parse_string("a size", USAGE, size, problems)
}

/// Parses a size such as `"10MB"` (10,000,000 bytes), `"512KiB"` or `"100B"`:
/// KB, MB and GB are powers of 1000, KiB, MiB and GiB powers of 1024, as in
/// Caddy; the unit's case does not matter. More than zero.
pub(crate) fn size(s: &str) -> Result<u64, Invalid> {
    let bad = |message: String| Err(Invalid::new(message).help(SIZE_HELP));
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = s.split_at(digits);
    let Ok(number) = number.parse::<u64>() else {
        return bad(format!("`{s}` is not a size: expected a number first"));
    };
    let scale: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "" => return bad(format!("`{s}` has no unit")),
        other => return bad(format!("`{other}` is not a size unit in `{s}`")),
    };
    match number.checked_mul(scale) {
        Some(0) => bad("the size must be more than zero".into()),
        Some(bytes) => Ok(bytes),
        None => bad(format!("`{s}` is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes() {
        assert_eq!(size("10MB"), Ok(10_000_000));
        assert_eq!(size("10mb"), Ok(10_000_000));
        assert_eq!(size("512KiB"), Ok(512 * 1024));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("100B"), Ok(100));
        assert_eq!(size("3 KB"), Ok(3_000));
        for bad in [
            "",
            "MB",
            "10",
            "10XB",
            "0MB",
            "-1MB",
            "1.5MB",
            "99999999999999GB",
        ] {
            assert!(size(bad).is_err(), "{bad:?}");
        }
    }
}
