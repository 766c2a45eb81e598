//! `proxy … { upstream-wait "5s" }`: how long a request waits for an upstream
//! that is restarting.
//!
//! Unlike the timeouts next to it, zero is allowed: it turns the waiting off,
//! for operators who prefer an immediate 502 to a held request.

use std::time::Duration;

use super::directives::duration_value;
use super::error::{Problem, Problems};
use super::reader::Directive;

/// Longest wait accepted: a waiting request holds a client connection, so a
/// typo (`"5m"` for `"5s"`) should not turn into minutes of held requests.
pub(crate) const MAX_UPSTREAM_WAIT: Duration = Duration::from_secs(60);

/// Reads the setting's one duration, from `"0s"` (off) to [`MAX_UPSTREAM_WAIT`].
pub(super) fn parse(d: &Directive<'_>, problems: &mut Problems) -> Option<Duration> {
    const USAGE: &str = "upstream-wait \"5s\"";
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, 1, USAGE, problems) {
        return None;
    }
    let arg = d.args().into_iter().next()?;
    let wait = duration_value(&arg, USAGE, problems)?;
    if wait > MAX_UPSTREAM_WAIT {
        problems.push(
            Problem::new("`upstream-wait` is longer than the 60s it allows")
                .at(arg.span, "too long")
                .help("a waiting request holds its client; a few seconds cover a backend restart, e.g. upstream-wait \"5s\" (\"0s\" answers 502 at once)"),
        );
        return None;
    }
    Some(wait)
}
