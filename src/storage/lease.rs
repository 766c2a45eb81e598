//! A lease on a name: who may act on it, and until when.

use crate::crypto::random_u32;

/// A held lease. The token is random per acquisition, so a holder whose lease
/// expired and was taken over cannot release or extend the new holder's lease
/// (the check and the change happen in one Lua script on the Redis side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The lease's key.
    pub key: String,
    /// This holder's fencing token.
    pub token: String,
}

impl Lease {
    /// A new lease on `key` with a fresh random token.
    pub(crate) fn new(key: &str) -> Self {
        let token = format!(
            "{:08x}{:08x}{:08x}{:08x}-{}",
            random_u32(),
            random_u32(),
            random_u32(),
            random_u32(),
            std::process::id()
        );
        Lease {
            key: key.to_string(),
            token,
        }
    }
}
