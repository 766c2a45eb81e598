//! Certificates on disk: one directory per hostname, per issuer.
//!
//! ```text
//! <state-dir>/certs/<issuer>/<name>/cert.pem   chain, leaf first (0644)
//! <state-dir>/certs/<issuer>/<name>/key.pem    private key (0600)
//! <state-dir>/certs/<issuer>/<name>/status.json failure record (0644, see `NameStatus`)
//! ```
//!
//! The manager and its tasks only load and save (certificates and failure
//! records, by name); the paths are for logs, docs and tests. That narrow
//! surface is what another backend (a shared store for several instances)
//! would have to provide.
//!
//! Every file is written atomically. The key and the chain are two files, so a
//! crash between the two renames can leave a new key next to the old chain; the
//! loader notices the mismatch and reports the name as having no certificate,
//! which simply causes a new one to be obtained.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::cert_info::CertInfo;
use super::files::certified_key_from_pem;
use super::status::NameStatus;
use super::CertError;
use crate::state_file::{read_optional, write_atomic, PUBLIC_MODE, SECRET_MODE};

/// A certificate ready to serve, with the facts needed to schedule its renewal.
#[derive(Debug, Clone)]
pub struct StoredCert {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// Validity, names and ARI identifier of the leaf.
    pub info: CertInfo,
}

impl StoredCert {
    /// Parses and checks a PEM chain and key (e.g. fresh from the CA) without storing them.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8], label: &Path) -> Result<Self, CertError> {
        let key = certified_key_from_pem(chain_pem, label, key_pem, label)?;
        let leaf = key.cert.first().ok_or_else(|| CertError::Pem {
            path: label.to_path_buf(),
            reason: "empty certificate chain".into(),
        })?;
        let info = CertInfo::parse(leaf, &label.display().to_string())?;
        Ok(StoredCert {
            key: Arc::new(key),
            info,
        })
    }
}

/// The certificates of one issuer (an ACME directory) under the state dir.
#[derive(Debug, Clone)]
pub struct CertStore {
    dir: PathBuf,
}

impl CertStore {
    /// The store for `issuer` (a file-name-safe issuer id) under `state_dir`.
    pub fn new(state_dir: &Path, issuer: &str) -> Self {
        CertStore {
            dir: state_dir.join("certs").join(issuer),
        }
    }

    /// The directory holding `name`'s files.
    pub fn name_dir(&self, name: &str) -> PathBuf {
        self.dir.join(file_name_for(name))
    }

    /// Path of `name`'s chain.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("cert.pem")
    }

    /// Path of `name`'s private key.
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("key.pem")
    }

    /// Path of `name`'s failure record.
    pub fn status_path(&self, name: &str) -> PathBuf {
        self.name_dir(name).join("status.json")
    }

    /// The failure record of `name`; a clean slate if there is none.
    pub fn load_status(&self, name: &str) -> Result<NameStatus, CertError> {
        NameStatus::load(&self.status_path(name))
    }

    /// Records `name`'s failures (atomically, like everything else here).
    pub fn save_status(&self, name: &str, status: &NameStatus) -> Result<(), CertError> {
        status.save(&self.status_path(name))
    }

    /// The stored certificate for `name`, `Ok(None)` if there is none.
    ///
    /// A chain that doesn't match its key, doesn't parse, or doesn't name `name`
    /// is an `Err`: the caller logs it and treats the name as uncovered.
    pub fn load(&self, name: &str) -> Result<Option<StoredCert>, CertError> {
        let cert_path = self.cert_path(name);
        let key_path = self.key_path(name);
        let (Some(chain), Some(key)) = (read_optional(&cert_path)?, read_optional(&key_path)?)
        else {
            return Ok(None);
        };
        let stored = StoredCert::from_pem(&chain, &key, &cert_path)?;
        if !stored.info.covers(name) {
            return Err(CertError::Invalid {
                path: cert_path,
                reason: format!("certificate does not name {name}"),
            });
        }
        Ok(Some(stored))
    }

    /// Checks and stores a chain and key for `name` (key first, see module docs).
    pub fn save(
        &self,
        name: &str,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<StoredCert, CertError> {
        let stored = StoredCert::from_pem(chain_pem, key_pem, &self.cert_path(name))?;
        write_atomic(&self.key_path(name), key_pem, SECRET_MODE)?;
        write_atomic(&self.cert_path(name), chain_pem, PUBLIC_MODE)?;
        Ok(stored)
    }
}

/// A host name as a directory name. Config names are already validated DNS names,
/// but this never trusts that: anything outside `[a-z0-9.-]` becomes `_`, and a
/// wildcard's `*` is spelled out so it survives shells and file managers.
pub(crate) fn file_name_for(name: &str) -> String {
    let name = crate::config::normalize_host(name).into_owned();
    let name = match name.strip_prefix("*.") {
        Some(rest) => format!("wildcard_.{rest}"),
        None => name,
    };
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    // "." and ".." would escape the store.
    if cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name_for("App.Test."), "app.test");
        assert_eq!(file_name_for("*.example.com"), "wildcard_.example.com");
        assert_eq!(file_name_for("../etc"), ".._etc");
        assert_eq!(file_name_for(".."), "_.");
        assert_eq!(file_name_for("a/.."), "a_.");
        assert_eq!(file_name_for("::1"), "__1");
    }

    #[test]
    fn save_then_load() {
        let dir = std::env::temp_dir().join(format!("bellhop-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = CertStore::new(&dir, "ca");
        assert!(store.load("a.test").unwrap().is_none());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        store
            .save(
                "a.test",
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
            )
            .unwrap();
        let loaded = store.load("a.test").unwrap().unwrap();
        assert!(loaded.info.covers("a.test"));
        // A key that doesn't match the chain (crash between the two renames) is an error.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(store.key_path("a.test"), other.serialize_pem()).unwrap();
        assert!(store.load("a.test").is_err());
        // Refuses to store a chain for the wrong key.
        assert!(store
            .save(
                "a.test",
                cert.pem().as_bytes(),
                other.serialize_pem().as_bytes()
            )
            .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
