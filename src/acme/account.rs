//! The ACME account: created once per CA, stored, reused.
//!
//! ```text
//! <state-dir>/acme/<issuer>/account.json   instant-acme credentials (0600)
//! ```
//! `<issuer>` is derived from the directory URL ([`issuer_id`]), so switching
//! between staging and production keeps both accounts (and both sets of certs).

use std::path::{Path, PathBuf};

use instant_acme::{Account, AccountCredentials, NewAccount};

use super::client::AcmeHttp;
use super::AcmeError;
use crate::state_file::{read_optional, write_atomic, FileError, SECRET_MODE};

/// A file-name-safe id for a CA directory URL:
/// `https://acme-v02.api.letsencrypt.org/directory` → `acme-v02.api.letsencrypt.org-directory`.
pub(crate) fn issuer_id(directory_url: &str) -> String {
    let rest = directory_url
        .split_once("://")
        .map_or(directory_url, |(_, rest)| rest);
    let id: String = rest
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let id = id.trim_matches(['-', '.']).to_string();
    if id.is_empty() {
        "acme".to_string()
    } else {
        id
    }
}

/// Where the account credentials for a CA live.
pub fn account_path(state_dir: &Path, directory_url: &str) -> PathBuf {
    state_dir
        .join("acme")
        .join(issuer_id(directory_url))
        .join("account.json")
}

/// Restores the stored account for `directory_url`, or registers a new one and
/// stores its credentials (0600, atomically) before using it.
///
/// Restoring fetches the CA's directory, so it needs the CA to be reachable; the
/// certificate manager therefore only calls this when it has an order to place.
pub(crate) async fn load_or_create(
    state_dir: &Path,
    directory_url: &str,
    email: Option<&str>,
    http: &AcmeHttp,
) -> Result<Account, AcmeError> {
    let path = account_path(state_dir, directory_url);
    if let Some(bytes) = read_optional(&path)? {
        let credentials: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|e| AcmeError::Credentials {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        return Account::builder_with_http(Box::new(http.clone()))
            .from_credentials(credentials)
            .await
            .map_err(|e| AcmeError::acme(format!("restoring the account at {directory_url}"), e));
    }
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new_account = NewAccount {
        contact: &contacts,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = super::nonce::retry_bad_nonce!(
        Account::builder_with_http(Box::new(http.clone()))
            .create(&new_account, directory_url.to_string(), None)
            .await
    )
    .map_err(|e| AcmeError::acme(format!("creating an account at {directory_url}"), e))?;
    let json = serde_json::to_vec_pretty(&credentials).map_err(|e| AcmeError::Credentials {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &json, SECRET_MODE)?;
    tracing::info!(
        ca = directory_url,
        id = account.id(),
        "created ACME account"
    );
    Ok(account)
}

/// Moves stored credentials aside after the CA said the account does not exist
/// (a test CA restarted, or the account was deactivated), so the next call to
/// [`load_or_create`] registers a new one. Kept as `account.json.gone` for forensics.
pub(crate) fn retire(state_dir: &Path, directory_url: &str) -> Result<(), AcmeError> {
    let path = account_path(state_dir, directory_url);
    let aside = path.with_extension("json.gone");
    match std::fs::rename(&path, &aside) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError::new("moving aside", path, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_ids_are_file_names() {
        assert_eq!(
            issuer_id("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org-directory"
        );
        assert_eq!(
            issuer_id("https://127.0.0.1:14000/dir"),
            "127.0.0.1-14000-dir"
        );
        assert_eq!(issuer_id("https://../../x"), "x");
        assert_eq!(issuer_id(""), "acme");
    }
}
