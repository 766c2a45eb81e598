//! The ACME account: created once per CA, stored, reused.
//!
//! ```text
//! <state-dir>/acme/<issuer>/account.json   instant-acme credentials (0600)
//! ```
//! The path is also the key in shared storage (`storage "redis://…"`), so
//! every instance of a cluster orders with the same account.
//! `<issuer>` is derived from the directory URL ([`issuer_id`]), so switching
//! between staging and production keeps both accounts (and both sets of certs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{Account, AccountCredentials, NewAccount};

use super::client::AcmeHttp;
use super::AcmeError;
use crate::storage::{Kind, Storage};

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
    state_dir.join(account_key(directory_url))
}

/// The storage key of the account credentials (relative to the state dir).
fn account_key(directory_url: &str) -> String {
    format!("acme/{}/account.json", issuer_id(directory_url))
}

/// How long one instance may take to register the account before another
/// instance of a cluster may try.
const REGISTER_LEASE: Duration = Duration::from_secs(60);

/// Restores the stored account for `directory_url`, or registers a new one and
/// stores its credentials (0600, atomically) before using it.
///
/// Restoring fetches the CA's directory, so it needs the CA to be reachable; the
/// certificate manager therefore only calls this when it has an order to place.
///
/// In a cluster the registration runs under a lease, so instances that start
/// together register one account, not one each.
pub(crate) async fn load_or_create(
    storage: &dyn Storage,
    directory_url: &str,
    email: Option<&str>,
    http: &AcmeHttp,
) -> Result<Account, AcmeError> {
    let key = account_key(directory_url);
    if let Some(account) = restore(storage, &key, directory_url, http).await? {
        return Ok(account);
    }
    let lease_key = format!("{key}.lock");
    let lease = loop {
        match storage.lock(&lease_key, REGISTER_LEASE).await? {
            Some(lease) => break lease,
            // Another instance is registering: use its account once stored.
            None => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some(account) = restore(storage, &key, directory_url, http).await? {
                    return Ok(account);
                }
            }
        }
    };
    let result = match restore(storage, &key, directory_url, http).await {
        Ok(Some(account)) => Ok(account),
        Ok(None) => register(storage, &key, directory_url, email, http).await,
        Err(e) => Err(e),
    };
    if let Err(e) = storage.unlock(&lease).await {
        tracing::debug!(error = %e, "could not release the account lease; it expires by itself");
    }
    result
}

/// The stored account, if there is one.
async fn restore(
    storage: &dyn Storage,
    key: &str,
    directory_url: &str,
    http: &AcmeHttp,
) -> Result<Option<Account>, AcmeError> {
    let Some(bytes) = storage.get(key).await? else {
        return Ok(None);
    };
    let credentials: AccountCredentials =
        serde_json::from_slice(&bytes).map_err(|e| AcmeError::Credentials {
            path: key.to_string(),
            reason: e.to_string(),
        })?;
    Account::builder_with_http(Box::new(http.clone()))
        .from_credentials(credentials)
        .await
        .map(Some)
        .map_err(|e| AcmeError::acme(format!("restoring the account at {directory_url}"), e))
}

/// Registers a new account and stores its credentials before using it.
async fn register(
    storage: &dyn Storage,
    key: &str,
    directory_url: &str,
    email: Option<&str>,
    http: &AcmeHttp,
) -> Result<Account, AcmeError> {
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
        path: key.to_string(),
        reason: e.to_string(),
    })?;
    storage.put(key, &json, Kind::Secret).await?;
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
pub(crate) async fn retire(storage: &dyn Storage, directory_url: &str) -> Result<(), AcmeError> {
    let key = account_key(directory_url);
    if let Some(bytes) = storage.get(&key).await? {
        storage
            .put(&format!("{key}.gone"), &bytes, Kind::Secret)
            .await?;
        storage.delete(&key).await?;
    }
    Ok(())
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
