//! Limits that protect the backends and bellhop itself from abusive clients.
//! Every structure here is bounded in memory whatever the clients do.

mod body;
mod conns;
mod rate;
mod shared;

pub(crate) use body::{BodyLimits, ClientBody, ClientBodyError, RequestBody};
pub(crate) use conns::{ConnCaps, ConnPermit, RefusedCounters};
pub(crate) use rate::{ClientKey, RateLimiter};
pub(crate) use shared::Limiter;
