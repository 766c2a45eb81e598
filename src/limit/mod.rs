//! Limits that protect the backends and bellhop itself from abusive clients.
//! Every structure here is bounded in memory whatever the clients do.

mod rate;
mod shared;

pub(crate) use rate::ClientKey;
pub(crate) use shared::Limiter;
