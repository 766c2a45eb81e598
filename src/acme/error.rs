//! The error type of the `acme` module, and how failures are classified.

use std::fmt;
use std::time::SystemTime;

use instant_acme::Problem;

use crate::state_file::FileError;

/// Problem types (RFC 8555 §6.7) after which another challenge type may succeed.
const VALIDATION_PROBLEMS: &[&str] = &[
    "connection",
    "dns",
    "incorrectResponse",
    "tls",
    "unauthorized",
    "caa",
];

/// Everything that can go wrong obtaining a certificate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeError {
    /// The HTTPS client for the CA could not be built (no trust roots, bad root file).
    #[error("setting up the ACME HTTP client: {0}")]
    Client(String),
    /// Account credentials on disk are unreadable.
    #[error("account credentials {path}: {reason}")]
    Credentials {
        /// The credentials file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The CA (or the way to it) failed a request; `source` carries the CA's
    /// problem document when there is one.
    #[error("{step}: {}", describe(source))]
    Acme {
        /// What we were doing ("creating account at …", "ordering app.example.com").
        step: String,
        /// The instant-acme error.
        #[source]
        source: instant_acme::Error,
    },
    /// The CA tried the challenge and it failed.
    #[error("{challenge} validation of {name} failed: {}", problem_text(problem))]
    Validation {
        /// The name being validated.
        name: String,
        /// `http-01` or `tls-alpn-01`.
        challenge: &'static str,
        /// The CA's problem document, verbatim.
        problem: Problem,
    },
    /// The order or authorization ended in a state we cannot continue from.
    #[error("{name}: {reason}")]
    Order {
        /// The name being ordered.
        name: String,
        /// What happened.
        reason: String,
    },
    /// The whole attempt took too long.
    #[error("obtaining a certificate for {name} timed out after {secs} s")]
    Timeout {
        /// The name being ordered.
        name: String,
        /// The limit that was hit.
        secs: u64,
    },
    /// Reading or writing the account credentials failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The shared storage (account credentials, a cluster's lease) failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// Generating a key, CSR or challenge certificate failed.
    #[error("{context}: {source}")]
    Rcgen {
        /// What we were generating.
        context: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused a key we generated.
    #[error("{context}: {source}")]
    Rustls {
        /// What we were building.
        context: String,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
}

/// Whether `problem` says a challenge failed in a way another challenge type
/// might not (unreachable, wrong answer, DNS, CAA).
fn is_validation_problem(problem: &Problem) -> bool {
    short_type(problem).is_some_and(|t| VALIDATION_PROBLEMS.contains(&t))
}

/// `connection` for `urn:ietf:params:acme:error:connection`.
fn short_type(problem: &Problem) -> Option<&str> {
    let full = problem.r#type.as_deref()?;
    Some(full.rsplit(':').next().unwrap_or(full))
}

impl AcmeError {
    pub(crate) fn acme(step: impl Into<String>, source: instant_acme::Error) -> Self {
        AcmeError::Acme {
            step: step.into(),
            source,
        }
    }

    /// Why telling the CA that a challenge is ready failed. A quick CA can
    /// validate before it answers; the challenge in its answer then already
    /// carries the failure. That is the CA's verdict on the challenge, the same
    /// as polling would have found, so it becomes the same [`Validation`] error
    /// (same message, same fallback) instead of a failed request.
    ///
    /// [`Validation`]: AcmeError::Validation
    pub(crate) fn challenge_ready(
        name: &str,
        challenge: &'static str,
        source: instant_acme::Error,
    ) -> Self {
        match source {
            instant_acme::Error::Api(problem) if is_validation_problem(&problem) => {
                AcmeError::Validation {
                    name: name.to_string(),
                    challenge,
                    problem,
                }
            }
            source => AcmeError::acme(format!("starting {challenge} validation of {name}"), source),
        }
    }

    /// Shorthand for an [`AcmeError::Rcgen`] with its context.
    pub(crate) fn rcgen(context: impl Into<String>, source: rcgen::Error) -> Self {
        AcmeError::Rcgen {
            context: context.into(),
            source,
        }
    }

    /// Shorthand for an [`AcmeError::Rustls`] with its context.
    pub(crate) fn rustls(context: impl Into<String>, source: rustls::Error) -> Self {
        AcmeError::Rustls {
            context: context.into(),
            source,
        }
    }

    /// The CA's problem document, if the CA sent one.
    pub(crate) fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Acme {
                source: instant_acme::Error::Api(problem),
                ..
            } => Some(problem),
            AcmeError::Validation { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The short problem type (`rateLimited`, `connection`, …), if any.
    pub(crate) fn problem_type(&self) -> Option<&str> {
        short_type(self.problem()?)
    }

    /// Whether trying another challenge type is worthwhile.
    pub(crate) fn is_validation_failure(&self) -> bool {
        matches!(self, AcmeError::Validation { .. })
            || self.problem().is_some_and(is_validation_problem)
    }

    /// Whether the CA no longer knows our account (e.g. a test CA was reset).
    pub(crate) fn is_account_gone(&self) -> bool {
        self.problem_type() == Some("accountDoesNotExist")
    }

    /// Whether the CA refused because of a rate limit (`rateLimited`).
    pub(crate) fn is_rate_limited(&self) -> bool {
        self.problem_type() == Some("rateLimited")
    }

    /// For a rate limit, the time the CA's problem detail says to retry after,
    /// if it names one.
    pub(crate) fn retry_after(&self) -> Option<SystemTime> {
        if !self.is_rate_limited() {
            return None;
        }
        self.problem()
            .and_then(|p| p.detail.as_deref())
            .and_then(retry_after_from_detail)
    }
}

/// Reads the retry time out of a rate-limit problem detail such as Let's
/// Encrypt's "… retry after 2025-01-01 00:00:00 UTC: see https://…".
fn retry_after_from_detail(detail: &str) -> Option<SystemTime> {
    let lower = detail.to_ascii_lowercase();
    let at = lower.find("retry after ")? + "retry after ".len();
    let rest = detail.get(at..)?;
    let mut parts = rest.split_whitespace();
    let date = parts.next()?;
    let clock = parts.next()?.trim_end_matches([',', ':', ';']);
    let zone = parts.next().map(|z| z.trim_end_matches([',', ':', ';']));
    if zone.is_some_and(|z| !z.eq_ignore_ascii_case("UTC")) {
        return None;
    }
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (c.next()??, c.next()??, c.next()??);
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
            .ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    Some(SystemTime::from(
        time::PrimitiveDateTime::new(date, clock).assume_utc(),
    ))
}

/// An instant-acme error in words, with a problem document shown in full.
fn describe(err: &instant_acme::Error) -> String {
    match err {
        instant_acme::Error::Api(problem) => problem_text(problem),
        other => {
            // Transport errors hide the useful part (connection refused, bad
            // certificate) in their source chain.
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            text
        }
    }
}

/// `type: detail` plus subproblems, keeping the CA's words verbatim.
fn problem_text(problem: &Problem) -> String {
    let mut out = String::new();
    let _ = fmt::write(
        &mut out,
        format_args!(
            "{}: {}",
            problem.r#type.as_deref().unwrap_or("(no problem type)"),
            problem.detail.as_deref().unwrap_or("(no detail)")
        ),
    );
    for sub in &problem.subproblems {
        out.push_str("; ");
        out.push_str(&sub.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, detail: &str) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": format!("urn:ietf:params:acme:error:{kind}"),
            "detail": detail,
            "status": 429,
        }))
        .unwrap()
    }

    #[test]
    fn classifies_rate_limits_and_validation() {
        let err = AcmeError::acme(
            "ordering a.test",
            instant_acme::Error::Api(problem(
                "rateLimited",
                "too many, retry after 2030-01-01 00:00:00 UTC: see docs",
            )),
        );
        assert!(!err.is_validation_failure());
        assert!(err.is_rate_limited());
        assert!(err.retry_after().is_some());
        // The CA's detail appears verbatim.
        assert!(err
            .to_string()
            .contains("too many, retry after 2030-01-01 00:00:00 UTC: see docs"));
        let v = AcmeError::Validation {
            name: "a.test".into(),
            challenge: "http-01",
            problem: problem("connection", "refused"),
        };
        assert!(v.is_validation_failure());
        assert!(!v.is_rate_limited());
        assert_eq!(v.retry_after(), None);
        assert_eq!(
            v.to_string(),
            "http-01 validation of a.test failed: urn:ietf:params:acme:error:connection: refused"
        );
    }

    #[test]
    fn a_failed_challenge_in_the_ready_answer_is_a_validation_failure() {
        // The challenge came back already invalid: reads like a polled failure.
        let err = AcmeError::challenge_ready(
            "a.test",
            "tls-alpn-01",
            instant_acme::Error::Api(problem("connection", "refused")),
        );
        assert!(matches!(err, AcmeError::Validation { .. }));
        assert_eq!(
            err.to_string(),
            "tls-alpn-01 validation of a.test failed: urn:ietf:params:acme:error:connection: refused"
        );
        // Anything else is the request failing.
        let err = AcmeError::challenge_ready(
            "a.test",
            "http-01",
            instant_acme::Error::Api(problem("malformed", "bad JWS")),
        );
        assert!(!err.is_validation_failure());
        assert!(err
            .to_string()
            .starts_with("starting http-01 validation of a.test"));
    }

    #[test]
    fn parses_lets_encrypt_retry_after() {
        let detail = "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2025-01-02 03:04:05 UTC: see https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-identifiers";
        let expected = SystemTime::from(
            time::PrimitiveDateTime::new(
                time::Date::from_calendar_date(2025, time::Month::January, 2).unwrap(),
                time::Time::from_hms(3, 4, 5).unwrap(),
            )
            .assume_utc(),
        );
        assert_eq!(retry_after_from_detail(detail), Some(expected));
        assert_eq!(retry_after_from_detail("rate limited"), None);
        assert_eq!(retry_after_from_detail("retry after tomorrow"), None);
    }
}
