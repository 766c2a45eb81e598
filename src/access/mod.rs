//! The admit phase's checks on who is asking: `allow` / `deny` lists (their
//! rule is [`AccessRule::admits`], kept with the config type) and `basic-auth`.
//!
//! Both run on the client after trusted-proxy resolution (`proxy::ClientInfo`)
//! and on the normalized path's route (`http_path`), so neither a forged
//! `X-Forwarded-For` nor `/public/../admin` gets past them.

mod basic;
mod password;

pub(crate) use basic::{BasicAuthGate, Verdict};
pub use password::hash_password;

pub(crate) use crate::config::AccessRule;
