//! PEM certificate chains and keys → rustls [`CertifiedKey`]s.
//!
//! Used for `tls "cert.pem" "key.pem"` and for everything bellhop stores itself.

use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::CertError;
use crate::crypto::provider;

/// Loads a PEM certificate chain (leaf first) and its private key (PKCS#8, PKCS#1
/// or SEC1), and checks that the key belongs to the leaf.
pub(crate) fn load_cert_files(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let cert_pem = std::fs::read(cert).map_err(|e| CertError::io("reading", cert, e))?;
    let key_pem = std::fs::read(key).map_err(|e| CertError::io("reading", key, e))?;
    certified_key_from_pem(&cert_pem, cert, &key_pem, key)
}

/// Like [`load_cert_files`] but from bytes already read; the paths only label errors.
pub(crate) fn certified_key_from_pem(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<CertifiedKey, CertError> {
    let chain = parse_chain(cert_pem, cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Pem {
        path: key_path.to_path_buf(),
        reason: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM expected): {e}"),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        CertError::rustls(
            format!("using {} with {}", cert_path.display(), key_path.display()),
            e,
        )
    })
}

/// Parses every `CERTIFICATE` block of a PEM file, leaf first; at least one is required.
pub(crate) fn parse_chain(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: path.to_path_buf(),
            reason: format!("invalid certificate PEM: {e}"),
        })?;
    if chain.is_empty() {
        return Err(CertError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_matching_pair_and_rejects_mismatch() {
        let dir = std::env::temp_dir().join(format!("bellhop-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["site.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("o.pem"), other.serialize_pem()).unwrap();
        assert!(load_cert_files(&dir.join("c.pem"), &dir.join("k.pem")).is_ok());
        let err = load_cert_files(&dir.join("c.pem"), &dir.join("o.pem")).unwrap_err();
        assert!(err.to_string().contains("o.pem"), "{err}");
        let err = load_cert_files(&dir.join("k.pem"), &dir.join("k.pem")).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        let err = load_cert_files(&dir.join("nope.pem"), &dir.join("k.pem")).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
