//! Password hashes: verify argon2 (PHC string) and bcrypt, make argon2id.
//!
//! Both are deliberately slow (argon2id with the default parameters, m=19 MiB
//! and t=2, takes tens of milliseconds), so callers run [`verify`] off the
//! async workers and cache what verified (see `basic`).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Whether `password` matches `hash`, an argon2 PHC string or a bcrypt hash
/// (the config checked that it is one of them). bcrypt reads the first 72
/// bytes of a password, as every bcrypt implementation does.
pub(super) fn verify(hash: &str, password: &[u8]) -> bool {
    if hash.starts_with("$argon2") {
        // The hash carries its own algorithm and parameters.
        Argon2::default().verify_password(password, hash).is_ok()
    } else {
        bcrypt::verify(password, hash).unwrap_or(false)
    }
}

/// An argon2id hash of `password` with a random salt and the argon2 crate's
/// default parameters (m=19456 KiB, t=2, p=1: OWASP's recommendation), for
/// `bellhop hash-password`.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify(&hash, b"correct horse"));
        assert!(!verify(&hash, b"correct horsE"));
    }

    #[test]
    fn bcrypt_hashes_verify() {
        let hash = bcrypt::hash("hunter2", 4).unwrap();
        assert!(hash.starts_with("$2b$04$"));
        assert!(verify(&hash, b"hunter2"));
        assert!(!verify(&hash, b"hunter3"));
    }
}
