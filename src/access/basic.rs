//! `basic-auth`: HTTP Basic authentication (RFC 7617) against password hashes.
//!
//! - User names are compared in constant time (SHA-256 digests, every user
//!   compared), and an unknown user still costs one hash verification, so
//!   timing tells a client neither which names exist nor how close it came.
//! - A hash verification takes tens of milliseconds of CPU and 19 MiB
//!   (argon2id defaults). It runs on tokio's blocking pool, never on a
//!   worker (which would stall every connection of that worker meanwhile),
//!   and at most [`PARALLEL_VERIFICATIONS`] at once, so a flood of guesses
//!   costs bounded CPU and memory.
//! - Credentials that verified are remembered as a keyed SHA-256 digest (the
//!   key is random per gate, the password itself is never kept), so a
//!   browser that sends them on every request pays the hash once; the set is
//!   bounded and cleared when full.
//! - Each client may fail [`FAILURES`] times, regaining one try every
//!   [`FAILURE_REFILL`]; past that it gets 429 without a verification.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use ring::digest::{Context, SHA256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::sync::Semaphore;

use super::password;
use crate::body::{text_response, Body};
use crate::config::{BasicAuth, RateLimit};
use crate::limit::{ClientKey, RateLimiter};

/// Hash verifications running at once, over all sites (the reference box
/// has two cores).
const PARALLEL_VERIFICATIONS: usize = 2;
/// Failed attempts a client may make in a row.
const FAILURES: u32 = 10;
/// How often a client regains one failed attempt.
const FAILURE_REFILL: Duration = Duration::from_secs(6);
/// Verified credentials remembered per gate before the set is cleared.
const REMEMBERED: usize = 1024;

static VERIFYING: Semaphore = Semaphore::const_new(PARALLEL_VERIFICATIONS);

/// A configured `basic-auth` user list, ready to check requests.
#[derive(Debug)]
pub(crate) struct BasicAuthGate {
    /// `Basic realm="…", charset="UTF-8"`.
    challenge: HeaderValue,
    users: Box<[User]>,
    /// Key of the remembered-credentials digests.
    key: [u8; 32],
    remembered: Mutex<HashSet<[u8; 32]>>,
    failures: RateLimiter,
}

#[derive(Debug)]
struct User {
    name_digest: [u8; 32],
    hash: Arc<str>,
}

/// What a request's credentials earn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Credentials of a configured user.
    Pass,
    /// None, malformed or wrong: 401 with the challenge.
    Challenge,
    /// Too many failures from this client: 429, retry after this long.
    Wait(Duration),
}

impl BasicAuthGate {
    /// A gate for `config`, which has at least one user (the parser makes
    /// no empty list); with none, every request is challenged.
    pub(crate) fn new(config: &BasicAuth) -> Self {
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", config.realm);
        // A random key means digests of one process say nothing in another;
        // if the system cannot provide one, a fixed key only loses that.
        let key = ring::rand::generate::<[u8; 32]>(&ring::rand::SystemRandom::new())
            .map(|k| k.expose())
            .unwrap_or([0; 32]);
        BasicAuthGate {
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or(HeaderValue::from_static("Basic")),
            users: config
                .users
                .iter()
                .map(|u| User {
                    name_digest: sha256(&[u.name.as_bytes()]),
                    hash: u.hash.as_str().into(),
                })
                .collect(),
            key,
            remembered: Mutex::new(HashSet::new()),
            failures: RateLimiter::new(RateLimit {
                per_second: 1.0 / FAILURE_REFILL.as_secs_f64(),
                burst: FAILURES,
                shared: false,
            }),
        }
    }

    /// Checks the request's `Authorization` header for a client at `ip`.
    pub(crate) async fn check(&self, headers: &HeaderMap, ip: IpAddr) -> Verdict {
        let Some((name, password)) = credentials(headers) else {
            return Verdict::Challenge;
        };
        let digest = sha256(&[
            &self.key,
            &(name.len() as u64).to_le_bytes(),
            &name,
            &password,
        ]);
        if self.lock().contains(&digest) {
            return Verdict::Pass;
        }
        let client = ClientKey::from(ip);
        if let Err(wait) = self.failures.peek(client, Instant::now()) {
            return Verdict::Wait(wait);
        }
        let (known, hash) = self.find(&name);
        if verify(hash, password).await && known {
            let mut remembered = self.lock();
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
            remembered.insert(digest);
            return Verdict::Pass;
        }
        match self.failures.check(client, Instant::now()) {
            Ok(()) => Verdict::Challenge,
            Err(wait) => Verdict::Wait(wait),
        }
    }

    /// The 401 answer, with `WWW-Authenticate`.
    pub(crate) fn challenge(&self) -> Response<Body> {
        let mut response = text_response(StatusCode::UNAUTHORIZED, "authentication required");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        response
    }

    /// Whether `name` is a user, and the hash to verify against: that user's,
    /// or for an unknown name the first user's (so the time spent is the
    /// same). Every user is compared, without an early exit.
    fn find(&self, name: &[u8]) -> (bool, Option<Arc<str>>) {
        let wanted = sha256(&[name]);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, user) in self.users.iter().enumerate() {
            let same = wanted.ct_eq(&user.name_digest);
            index = u32::conditional_select(&index, &(i as u32), same);
            found |= same;
        }
        let hash = self.users.get(index as usize).map(|u| u.hash.clone());
        (bool::from(found), hash)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the set is fine.
        self.remembered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Verifies off the async workers, a bounded number at a time. A failure to
/// run the check counts as a wrong password.
async fn verify(hash: Option<Arc<str>>, password: Vec<u8>) -> bool {
    let Some(hash) = hash else { return false };
    let Ok(_permit) = VERIFYING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || password::verify(&hash, &password))
        .await
        .unwrap_or(false)
}

/// User name and password of `Authorization: Basic …`, if well-formed.
fn credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded[colon + 1..].to_vec();
    let mut name = decoded;
    name.truncate(colon);
    Some((name, password))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = Context::new(&SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BasicUser;

    fn gate() -> BasicAuthGate {
        BasicAuthGate::new(&BasicAuth {
            realm: "admin".into(),
            users: vec![BasicUser {
                name: "alice".into(),
                hash: bcrypt::hash("s3cret", 4).unwrap(),
            }],
        })
    }

    fn auth(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn right_wrong_and_missing_credentials() {
        let g = gate();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(g.check(&auth("alice:s3cret"), ip).await, Verdict::Pass);
        // Now remembered: passes again without a verification.
        assert_eq!(g.check(&auth("alice:s3cret"), ip).await, Verdict::Pass);
        assert_eq!(g.check(&auth("alice:wrong"), ip).await, Verdict::Challenge);
        assert_eq!(g.check(&auth("bob:s3cret"), ip).await, Verdict::Challenge);
        assert_eq!(g.check(&HeaderMap::new(), ip).await, Verdict::Challenge);
        let challenge = g.challenge();
        assert_eq!(challenge.status(), 401);
        assert_eq!(
            challenge.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"admin\", charset=\"UTF-8\""
        );
    }

    #[tokio::test]
    async fn repeated_failures_get_429_without_verifying() {
        let g = gate();
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FAILURES {
            assert_eq!(g.check(&auth("alice:x"), ip).await, Verdict::Challenge);
        }
        assert!(matches!(
            g.check(&auth("alice:x"), ip).await,
            Verdict::Wait(_)
        ));
        // Even the right password waits: the client is out of attempts.
        assert!(matches!(
            g.check(&auth("alice:s3cret"), ip).await,
            Verdict::Wait(_)
        ));
        // Another client is unaffected.
        let other: IpAddr = "192.0.2.3".parse().unwrap();
        assert_eq!(g.check(&auth("alice:s3cret"), other).await, Verdict::Pass);
    }

    #[test]
    fn malformed_authorization_is_no_credentials() {
        for value in ["Basic", "Basic !!!", "Bearer abc", "Basic YWxpY2U="] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(credentials(&h), None, "{value}");
        }
        let (name, password) = credentials(&auth("a:b:c")).unwrap();
        assert_eq!(
            (name.as_slice(), password.as_slice()),
            (&b"a"[..], &b"b:c"[..])
        );
    }
}
