//! The few facts about a certificate that scheduling and the certificate table
//! need: validity, names, issuer, and the ARI identifier (RFC 9773) that names
//! it to the CA.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use super::CertError;

/// What bellhop knows about a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// DNS names and IP addresses (as text) from the subjectAltName extension.
    pub names: Vec<String>,
    /// The issuer's distinguished name, as RFC 4514 text (`CN=…, O=…`).
    pub issuer: String,
    /// `base64url(AKI).base64url(serial)`, the certificate's ARI identifier; `None`
    /// when the certificate has no Authority Key Identifier.
    pub ari_id: Option<String>,
}

impl CertInfo {
    /// Every name `resolver` serves a certificate for, with what its leaf says
    /// (for metrics and status lines; unreadable leaves are left out).
    pub(crate) fn served(resolver: &crate::tls::CertResolver) -> Vec<(String, CertInfo)> {
        resolver
            .names()
            .into_iter()
            .filter_map(|name| {
                let key = resolver.get(&name)?;
                let info = CertInfo::parse(key.cert.first()?, &name).ok()?;
                Some((name, info))
            })
            .collect()
    }

    /// Reads a DER certificate; `context` (a path or a name) labels errors.
    pub fn parse(der: &CertificateDer<'_>, context: &str) -> Result<Self, CertError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| CertError::X509 {
                context: context.to_string(),
                reason: e.to_string(),
            })?;
        let validity = cert.validity();
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let ari_id = instant_acme::CertificateIdentifier::try_from(der)
            .ok()
            .map(|id| id.to_string());
        Ok(CertInfo {
            not_before: from_unix(validity.not_before.timestamp()),
            not_after: from_unix(validity.not_after.timestamp()),
            names,
            issuer: cert.issuer().to_string(),
            ari_id,
        })
    }

    /// Reads the leaf of a PEM chain file without its key (which a status
    /// reader may not be allowed to read); `Ok(None)` if the file is missing.
    pub fn from_chain_file(path: &Path) -> Result<Option<Self>, CertError> {
        let Some(pem) = crate::state_file::read_optional(path)? else {
            return Ok(None);
        };
        let chain = super::files::parse_chain(&pem, path)?;
        // parse_chain never returns an empty chain.
        match chain.first() {
            Some(leaf) => Self::parse(leaf, &path.display().to_string()).map(Some),
            None => Ok(None),
        }
    }

    /// Total validity period.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether `now` lies inside the validity period.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// Whether the certificate names `name` (exactly, case-insensitively).
    pub fn covers(&self, name: &str) -> bool {
        let name = crate::config::normalize_host(name);
        self.names.iter().any(|n| *n == name)
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Seconds since the epoch → `SystemTime`, saturating for dates before 1970.
fn from_unix(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_validity_and_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["App.test".into(), "127.0.0.1".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 4, 1);
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::parse(cert.der(), "test").unwrap();
        assert_eq!(info.names, vec!["app.test", "127.0.0.1"]);
        assert!(info.issuer.contains("CN="), "{}", info.issuer);
        assert!(info.covers("APP.test."));
        assert_eq!(info.lifetime(), Duration::from_secs(90 * 86400));
        assert!(!info.is_valid_at(SystemTime::now()));
    }
}
