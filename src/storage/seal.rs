//! Encryption at rest for secrets kept in Redis (`key-file`).
//!
//! Why: whoever can read Redis (its operator, a backup, a replica) would
//! otherwise hold every private key and the ACME account. With a key file that
//! only the instances have, Redis holds AES-256-GCM ciphertext; the value's
//! Redis key is the associated data, so a value copied under another name does
//! not open. ring is already in the tree through rustls.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use super::StorageError;
use crate::crypto::provider;

/// Marks a sealed value (and its format version).
const MAGIC: &[u8] = b"bellhop-sealed-v1:";

/// The key from `key-file`.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Reads the key file: exactly 32 bytes, raw or as 64 hex digits.
    pub(crate) fn from_file(path: &Path) -> Result<Self, StorageError> {
        let bytes = std::fs::read(path).map_err(|e| {
            StorageError::Config(format!("reading key-file {}: {e}", path.display()))
        })?;
        let raw = match std::str::from_utf8(&bytes).map(str::trim) {
            Ok(text) if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) => (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
                .collect(),
            _ => bytes,
        };
        Self::from_bytes(&raw).map_err(|()| {
            StorageError::Config(format!(
                "key-file {} must hold 32 bytes (e.g. head -c 32 /dev/urandom > {0})",
                path.display()
            ))
        })
    }

    fn from_bytes(raw: &[u8]) -> Result<Self, ()> {
        let key = UnboundKey::new(&AES_256_GCM, raw).map_err(|_| ())?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    /// `MAGIC ‖ nonce ‖ ciphertext+tag`, bound to `name`.
    pub(crate) fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, StorageError> {
        let mut nonce = [0u8; NONCE_LEN];
        provider()
            .secure_random
            .fill(&mut nonce)
            .map_err(|_| StorageError::Config("no random numbers for a nonce".into()))?;
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut body,
            )
            .map_err(|_| StorageError::Sealed { key: name.into() })?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plaintext of a value sealed for `name`.
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
        let err = || StorageError::Sealed { key: name.into() };
        let rest = sealed.strip_prefix(MAGIC).ok_or_else(err)?;
        if rest.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err())?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .map_err(|_| err())?;
        Ok(plain.to_vec())
    }
}

/// Whether a value from Redis is sealed (a key file was in use when it was written).
pub(crate) fn is_sealed(value: &[u8]) -> bool {
    value.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bind_to_name() {
        let s = Sealer::from_bytes(&[7u8; 32]).unwrap();
        let sealed = s.seal("certs/a/key.pem", b"secret").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open("certs/a/key.pem", &sealed).unwrap(), b"secret");
        assert!(s.open("certs/b/key.pem", &sealed).is_err());
        let other = Sealer::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("certs/a/key.pem", &sealed).is_err());
        assert!(Sealer::from_bytes(&[1u8; 16]).is_err());
    }
}
