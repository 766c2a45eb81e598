//! bellhop's own certificate authority for `tls internal`, `localhost` and IPs.
//!
//! A root key and certificate are created once under `state-dir/internal/` and
//! reused for the life of the installation, because users trust that root by
//! hand (`bellhop ca-root`). Leaves are short-lived, kept only in memory and
//! re-issued by the certificate manager (or on demand, through
//! [`LeafSigner`]) at half their lifetime, so a leaked leaf
//! key is worth little and nothing needs revoking.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::CertError;
use crate::crypto::{provider, random_u32};
use crate::state_file::{read_optional, write_atomic, PUBLIC_MODE, SECRET_MODE};
use crate::tls::LeafSigner;

/// How long the root is valid. Long, because re-trusting a root is manual work.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Default lifetime of a leaf. Short: leaves are re-issued automatically, and
/// Apple platforms reject leaves valid for more than 825 days anyway.
pub(crate) const LEAF_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// Leaves start this far in the past so a client whose clock lags a little still
/// accepts a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// The local root CA and the means to sign leaves with it.
pub struct InternalCa {
    root_path: PathBuf,
    root_pem: String,
    root_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for InternalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalCa")
            .field("root_path", &self.root_path)
            .finish_non_exhaustive()
    }
}

impl InternalCa {
    /// Directory of the internal CA under a state dir.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("internal")
    }

    /// Where the root certificate (PEM) lives; this is the file users trust.
    pub fn root_path(state_dir: &Path) -> PathBuf {
        Self::dir(state_dir).join("root.pem")
    }

    /// Loads the root from `state_dir`, creating it on first use.
    ///
    /// A root certificate without its key is an error rather than a reason to make
    /// a new root: users may already trust the old one, and silently replacing it
    /// would break every client. A key without a certificate only happens after a
    /// crash during creation (the key is written first), so then we start over.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, CertError> {
        if let Some(ca) = Self::load_local(state_dir)? {
            return Ok(ca);
        }
        let (ca, key_pem) = Self::generate(Self::root_path(state_dir))?;
        write_atomic(&Self::key_path(state_dir), key_pem.as_bytes(), SECRET_MODE)?;
        write_atomic(&ca.root_path, ca.root_pem.as_bytes(), PUBLIC_MODE)?;
        tracing::info!(root = %ca.root_path.display(), "created the internal CA; run `bellhop ca-root` to see how to trust it");
        Ok(ca)
    }

    /// The root kept in `state_dir`, `None` if there is none yet (see
    /// [`load_or_create`](Self::load_or_create) for a root without its key).
    pub fn load_local(state_dir: &Path) -> Result<Option<Self>, CertError> {
        let cert = read_optional(&Self::root_path(state_dir))?;
        let key = read_optional(&Self::key_path(state_dir))?;
        Self::from_parts(state_dir, cert.as_deref(), key.as_deref())
    }

    /// The CA from its stored certificate and key (read from the state
    /// directory or from shared storage); `None` when there is no certificate.
    pub(crate) fn from_parts(
        state_dir: &Path,
        cert_pem: Option<&[u8]>,
        key_pem: Option<&[u8]>,
    ) -> Result<Option<Self>, CertError> {
        let root_path = Self::root_path(state_dir);
        let key_path = Self::key_path(state_dir);
        match (cert_pem, key_pem) {
            (Some(cert), Some(key)) => Self::load(root_path, cert, &key_path, key).map(Some),
            (Some(_), None) => Err(CertError::Invalid {
                path: key_path,
                reason: format!(
                    "the internal CA key is missing but {} exists; restore the key or delete both to create a new root (clients must then trust the new one)",
                    root_path.display()
                ),
            }),
            (None, _) => Ok(None),
        }
    }

    /// Where the root's key lives under a state dir.
    pub(crate) fn key_path(state_dir: &Path) -> PathBuf {
        Self::dir(state_dir).join("root.key")
    }

    fn load(
        root_path: PathBuf,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<Self, CertError> {
        let root_pem = String::from_utf8(cert_pem.to_vec()).map_err(|_| CertError::Pem {
            path: root_path.clone(),
            reason: "not UTF-8 PEM".into(),
        })?;
        let key_text = std::str::from_utf8(key_pem).map_err(|_| CertError::Pem {
            path: key_path.to_path_buf(),
            reason: "not UTF-8 PEM".into(),
        })?;
        let key = KeyPair::from_pem(key_text)
            .map_err(|e| CertError::rcgen(format!("loading {}", key_path.display()), e))?;
        let root_der = CertificateDer::from_pem_slice(cert_pem).map_err(|e| CertError::Pem {
            path: root_path.clone(),
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_der(&root_der, key)
            .map_err(|e| CertError::rcgen(format!("loading {}", root_path.display()), e))?;
        Ok(InternalCa {
            root_path,
            root_pem,
            root_der,
            issuer,
        })
    }

    /// A new root (to be kept at `root_path`) and its key as PEM; nothing is
    /// written: the caller stores the key first, then the certificate.
    pub(crate) fn generate(root_path: PathBuf) -> Result<(Self, String), CertError> {
        let key = KeyPair::generate().map_err(|e| CertError::rcgen("generating CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "bellhop");
        // A unique name per installation, so several bellhop roots in one trust
        // store can be told apart.
        let now = OffsetDateTime::now_utc();
        dn.push(
            DnType::CommonName,
            format!(
                "bellhop local CA {}-{:02}-{:02} {:08x}",
                now.year(),
                u8::from(now.month()),
                now.day(),
                random_u32()
            ),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + ROOT_LIFETIME;
        let cert = params
            .self_signed(&key)
            .map_err(|e| CertError::rcgen("creating the internal CA root", e))?;
        let key_pem = key.serialize_pem();
        let ca = InternalCa {
            root_path,
            root_pem: cert.pem(),
            root_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    /// What `bellhop ca-root` prints: where the root is, how to trust it, and
    /// the PEM itself (last, so `bellhop ca-root | tail -n +N` or a PEM parser
    /// that skips text both work).
    pub fn trust_instructions(&self) -> String {
        let path = self.root_path.display();
        format!(
            "# bellhop's internal CA root certificate: {path}\n\
             # It signs the certificates of `localhost`, `*.localhost`, IP addresses and\n\
             # `tls internal` sites. To trust it:\n\
             #   Debian/Ubuntu: sudo cp {path} /usr/local/share/ca-certificates/bellhop.crt && sudo update-ca-certificates\n\
             #   Fedora/RHEL:   sudo cp {path} /etc/pki/ca-trust/source/anchors/bellhop.pem && sudo update-ca-trust\n\
             #   macOS:         sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {path}\n\
             #   curl:          curl --cacert {path} https://localhost/\n\
             #   Firefox uses its own store: Settings → Certificates → Import.\n\
             {}",
            self.root_pem
        )
    }

    /// Path of the root certificate file.
    pub fn path(&self) -> &Path {
        &self.root_path
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The root certificate, DER (for a client's root store).
    pub fn root_der(&self) -> &CertificateDer<'static> {
        &self.root_der
    }

    /// Issues a leaf for DNS names and/or IP addresses (given as text), valid from
    /// a little before `now` for `lifetime`.
    pub fn issue(
        &self,
        names: &[String],
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<CertifiedKey, CertError> {
        let context = || format!("issuing an internal certificate for {}", names.join(", "));
        let key = KeyPair::generate().map_err(|e| CertError::rcgen(context(), e))?;
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|e| CertError::rcgen(context(), e))?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::from(now);
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + lifetime;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CertError::rcgen(context(), e))?;
        let key_der = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        // The chain includes the root so clients that were handed only the leaf's
        // issuer name can still build it; trusting clients ignore the extra cert.
        CertifiedKey::from_der(
            vec![cert.der().clone(), self.root_der.clone()],
            key_der,
            &provider(),
        )
        .map_err(|e| CertError::rustls(context(), e))
    }
}

/// On-demand issuance (`tls::OnDemand`) signs with the internal CA through this.
impl LeafSigner for InternalCa {
    fn sign_leaf(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<CertifiedKey, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.issue(names, now, LEAF_LIFETIME)?)
    }

    fn leaf_lifetime(&self) -> Duration {
        LEAF_LIFETIME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_reloaded() {
        let dir = std::env::temp_dir().join(format!("bellhop-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = InternalCa::load_or_create(&dir).unwrap();
        let again = InternalCa::load_or_create(&dir).unwrap();
        assert_eq!(ca.root_pem(), again.root_pem());
        let text = again.trust_instructions();
        assert!(text.contains(&InternalCa::root_path(&dir).display().to_string()));
        assert!(text.ends_with(ca.root_pem()));
        let key_mode = std::fs::metadata(dir.join("internal/root.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(dir.join("internal"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // A leaf from the reloaded CA chains to the original root.
        let leaf = again
            .issue(
                &["localhost".into(), "127.0.0.1".into()],
                SystemTime::now(),
                LEAF_LIFETIME,
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.root_der().clone()).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider())
                .build()
                .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        for name in ["localhost", "127.0.0.1"] {
            verifier
                .verify_server_cert(
                    &leaf.cert[0],
                    &leaf.cert[1..],
                    &rustls_pki_types::ServerName::try_from(name).unwrap(),
                    &[],
                    rustls_pki_types::UnixTime::now(),
                )
                .unwrap();
        }
        // Deleting the key while keeping the root is refused.
        std::fs::remove_file(dir.join("internal/root.key")).unwrap();
        assert!(InternalCa::load_or_create(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
