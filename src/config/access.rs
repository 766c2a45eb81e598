//! Who may use a site or route: `allow` / `deny` lines and `basic-auth` users.
//!
//! ```kdl
//! route "/admin/*" {
//!     allow "10.0.0.0/8" "203.0.113.7"            // anyone else: 403
//!     basic-auth "alice" "$argon2id$v=19$…"       // one line per user
//!     proxy 8000
//! }
//! ```
//!
//! A block's lines form one list; a route that has its own list replaces the
//! site's, a route without inherits it (like `rate-limit`). `basic-auth off`
//! opens a route of a protected site.

use kdl::KdlValue;
use miette::SourceSpan;

use super::error::{Problem, Problems};
use super::hosts::IpNet;
use super::model::{defaults, AccessRule, BasicAuth, BasicUser};
use super::reader::{Directive, Value};
use super::values::{self, Invalid};

/// The access directives of one block, before inheritance.
#[derive(Default)]
pub(crate) struct AccessBlock {
    /// `allow` / `deny` lines in order; `None` when the block has none.
    rules: Option<Vec<AccessRule>>,
    /// The block's users, if it has `basic-auth` lines.
    auth: Option<BasicAuth>,
    /// Where `basic-auth off` was written, if it was.
    off_at: Option<SourceSpan>,
    /// Where `realm=` was first given, to report a second, different one.
    realm_at: Option<SourceSpan>,
    /// Where each user was first given, to report duplicates.
    user_spans: Vec<SourceSpan>,
}

impl AccessBlock {
    /// Reads an `allow`, `deny` or `basic-auth` line of this block.
    pub(crate) fn read(&mut self, d: &Directive<'_>, problems: &mut Problems) {
        match d.name() {
            "basic-auth" => self.basic_auth(d, problems),
            name => {
                if let Some(nets) = networks(d, problems) {
                    self.rules.get_or_insert_with(Vec::new).push(AccessRule {
                        allow: name == "allow",
                        nets,
                    });
                }
            }
        }
    }

    /// The rules of a route with this block, inheriting `site`'s when it has none.
    pub(crate) fn rules_or(&self, site: &AccessBlock) -> Vec<AccessRule> {
        self.rules
            .as_ref()
            .or(site.rules.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// The users of a route with this block, inheriting `site`'s when it has none.
    pub(crate) fn auth_or(&self, site: &AccessBlock) -> Option<BasicAuth> {
        if self.auth.is_some() || self.off_at.is_some() {
            self.auth.clone()
        } else {
            site.auth.clone()
        }
    }

    /// `basic-auth "user" "hash" realm="…"` or `basic-auth off`.
    fn basic_auth(&mut self, d: &Directive<'_>, problems: &mut Problems) {
        const USAGE: &str = "basic-auth \"alice\" \"$argon2id$v=19$…\" (make the hash with `bellhop hash-password`)";
        d.check_props(&["realm"], None, problems);
        d.check_no_children(problems);
        let args = d.args();
        if let [only] = args.as_slice() {
            if only.value.as_string() == Some("off") {
                if self.off_at.replace(d.name_span()).is_none() {
                    self.check_off(problems);
                }
                return;
            }
        }
        if !d.check_arg_count(2, 2, USAGE, problems) {
            return;
        }
        let name = args[0].parse_string("a user name", USAGE, user_name, problems);
        let hash = args[1].parse_string("a password hash", USAGE, password_hash, problems);
        let realm = d.prop("realm").and_then(|v| {
            let realm = v.parse_string("a realm", "realm=\"admin\"", realm, problems)?;
            Some((realm, v.span))
        });
        let auth = self.auth.get_or_insert_with(|| BasicAuth {
            realm: defaults::BASIC_AUTH_REALM.to_string(),
            users: Vec::new(),
        });
        if let Some((realm, span)) = realm {
            match self.realm_at {
                Some(first) if auth.realm != realm => problems.push(
                    Problem::new("two different realms for one block's users")
                        .at(span, "this realm")
                        .at(first, "first realm")
                        .help("the browser asks once per realm: give realm=… once, on any line"),
                ),
                Some(_) => {}
                None => {
                    auth.realm = realm;
                    self.realm_at = Some(span);
                }
            }
        }
        let (Some(name), Some(hash)) = (name, hash) else {
            return;
        };
        if let Some(i) = auth.users.iter().position(|u| u.name == name) {
            problems.push(
                Problem::new(format!("user `{name}` is listed twice"))
                    .at(args[0].span, "listed again")
                    .at(self.user_spans[i], "first listed here")
                    .help("keep one line per user"),
            );
            return;
        }
        auth.users.push(BasicUser { name, hash });
        self.user_spans.push(args[0].span);
        if self.user_spans.len() == 1 {
            self.check_off(problems);
        }
    }

    /// Users and `basic-auth off` in one block contradict each other (reported once).
    fn check_off(&self, problems: &mut Problems) {
        if let (Some(off), [first, ..]) = (self.off_at, self.user_spans.as_slice()) {
            problems.push(
                Problem::new("`basic-auth off` in a block that has users")
                    .at(off, "turns authentication off")
                    .at(*first, "a user")
                    .help("keep either the users or `basic-auth off`"),
            );
        }
    }
}

/// The arguments of `allow` / `deny`: addresses, networks or `all`.
fn networks(d: &Directive<'_>, problems: &mut Problems) -> Option<Vec<IpNet>> {
    let usage = format!("{} \"10.0.0.0/8\" \"203.0.113.7\"", d.name());
    d.check_props(&[], None, problems);
    d.check_no_children(problems);
    if !d.check_arg_count(1, usize::MAX, &usage, problems) {
        return None;
    }
    let mut nets = Vec::new();
    let mut ok = true;
    for arg in d.args() {
        if arg.value.as_string() == Some("all") {
            nets.extend(ALL);
            continue;
        }
        match network(&arg, &usage, problems) {
            Some(net) => nets.push(net),
            None => ok = false,
        }
    }
    ok.then_some(nets)
}

/// One quoted address or network (`allow`, `deny`, `trusted-proxies`), with
/// a hint for the unquoted number KDL reads `10` or `10.5` as.
pub(crate) fn network(arg: &Value<'_>, usage: &str, problems: &mut Problems) -> Option<IpNet> {
    if let KdlValue::Integer(_) | KdlValue::Float(_) = arg.value {
        problems.push(
            Problem::new("an address needs quotes")
                .at(arg.span, "a number, not an address")
                .help(format!("for example: {usage}")),
        );
        return None;
    }
    arg.parse_string("an address or network", usage, values::ip_net, problems)
}

/// `all`: every IPv4 and IPv6 address.
const ALL: [IpNet; 2] = [
    IpNet {
        addr: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    },
    IpNet {
        addr: std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    },
];

/// A Basic user name: RFC 7617 forbids `:` in it, and control characters
/// could not be typed into a browser's dialog.
fn user_name(s: &str) -> Result<String, Invalid> {
    if s.is_empty() || s.contains(':') || s.chars().any(char::is_control) {
        Err(Invalid::new(format!("`{s}` is not a usable user name"))
            .help("a user name is not empty and has no `:` or control characters"))
    } else {
        Ok(s.to_string())
    }
}

/// A realm goes inside a quoted string in `WWW-Authenticate`.
fn realm(s: &str) -> Result<String, Invalid> {
    if s.is_empty() || s.contains(['"', '\\']) || s.chars().any(|c| c.is_control() || !c.is_ascii())
    {
        Err(Invalid::new(format!("`{s}` is not a usable realm"))
            .help("write a short ASCII name without quotes or backslashes, e.g. realm=\"admin\""))
    } else {
        Ok(s.to_string())
    }
}

/// A password hash bellhop can verify: argon2 (`$argon2id$…`, PHC string) or
/// bcrypt (`$2b$…`). A plain password here is the mistake this catches.
pub(crate) fn password_hash(s: &str) -> Result<String, Invalid> {
    const HELP: &str =
        "write an argon2id or bcrypt hash, not the password: `bellhop hash-password` prints one";
    let valid = if s.starts_with("$argon2") {
        argon2::password_hash::phc::PasswordHash::new(s).is_ok_and(|h| {
            matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d") && h.hash.is_some()
        })
    } else if s.starts_with("$2") {
        s.parse::<bcrypt::HashParts>().is_ok()
    } else {
        return Err(Invalid::new("this is not a password hash").help(HELP));
    };
    if valid {
        Ok(s.to_string())
    } else {
        Err(
            Invalid::new("this password hash does not parse (cut short, or a `$` lost?)")
                .help(HELP),
        )
    }
}
