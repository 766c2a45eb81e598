//! Limits that protect the backends and bellhop itself from abusive clients.
//! Every structure here is bounded in memory whatever the clients do.

mod rate;

pub(crate) use rate::{ClientKey, RateLimiter};
