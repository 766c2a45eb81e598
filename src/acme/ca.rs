//! One ACME CA as bellhop uses it: "obtain a certificate for this name", and
//! "when does the CA suggest renewing this one".
//!
//! Owns what the protocol needs across orders: the account (restored or
//! registered on first use, re-registered when the CA forgot it) and whether
//! the CA supports ARI (RFC 9773), learnt from its first answer. When to ask,
//! and what to do with the result, is the certificate lifecycle's business.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use rustls_pki_types::CertificateDer;

use super::account;
use super::client::AcmeHttp;
use super::issue::{self, Issued, OrderRequest};
use super::publish::ChallengeResponder;
use super::AcmeError;
use crate::config::AcmeChallenge;
use crate::storage::Storage;

/// ACME settings from the `options` block.
#[derive(Debug, Clone)]
pub(crate) struct CaSettings {
    /// The directory URL (`acme-ca`).
    pub directory: String,
    /// An extra root to trust for the CA's HTTPS (`acme-ca-root`).
    pub root: Option<PathBuf>,
    /// The account contact (`email`).
    pub email: Option<String>,
    /// The CA profile to order (`profile`).
    pub profile: Option<String>,
}

/// The CA's suggested renewal window for a certificate (ARI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RenewalInfo {
    /// Earliest suggested renewal time.
    pub start: SystemTime,
    /// Latest suggested renewal time.
    pub end: SystemTime,
    /// How long the CA asks us to wait before asking again.
    pub poll: Duration,
}

/// ARI support of the CA, learnt from the first `renewal_info` call.
const ARI_UNKNOWN: u8 = 0;
const ARI_YES: u8 = 1;
const ARI_NO: u8 = 2;

/// An ACME CA: account, orders, challenges and ARI.
pub(crate) struct Acme {
    storage: Arc<dyn Storage>,
    settings: CaSettings,
    responder: Arc<dyn ChallengeResponder>,
    account: tokio::sync::Mutex<Option<Account>>,
    ari: AtomicU8,
}

impl Acme {
    /// A CA whose account lives in `storage` and whose challenge answers
    /// are published through `responder`. Nothing is fetched until first use.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        settings: CaSettings,
        responder: Arc<dyn ChallengeResponder>,
    ) -> Self {
        Acme {
            storage,
            settings,
            responder,
            account: tokio::sync::Mutex::new(None),
            ari: AtomicU8::new(ARI_UNKNOWN),
        }
    }

    /// The directory URL.
    pub(crate) fn directory(&self) -> &str {
        &self.settings.directory
    }

    /// Whether asking for renewal information may be useful: true until the
    /// CA has shown it does not support ARI.
    pub(crate) fn may_support_ari(&self) -> bool {
        self.ari.load(Ordering::Relaxed) != ARI_NO
    }

    /// One issuance attempt for `name`, trying `challenges` in order. `current`
    /// is the leaf being renewed, named to an ARI-capable CA as the one this
    /// order replaces. Re-registers once if the CA forgot our account, and
    /// retries once without `replaces` if the CA rejected that hint.
    pub(crate) async fn obtain(
        &self,
        name: &str,
        challenges: &[AcmeChallenge],
        current: Option<&CertificateDer<'_>>,
    ) -> Result<Issued, AcmeError> {
        let replaces = match self.ari.load(Ordering::Relaxed) {
            ARI_YES => current
                .and_then(|leaf| CertificateIdentifier::try_from(leaf).ok())
                .map(CertificateIdentifier::into_owned),
            _ => None,
        };
        let mut request = OrderRequest {
            name,
            challenges,
            profile: self.settings.profile.as_deref(),
            replaces,
        };
        let account = self.account().await?;
        let result = issue::obtain(&account, &request, &self.responder).await;
        match result {
            Err(e) if e.is_account_gone() => {
                tracing::warn!(ca = %self.settings.directory, error = %e, "the CA does not know our account any more; registering a new one");
                self.forget_account().await?;
                let account = self.account().await?;
                issue::obtain(&account, &request, &self.responder).await
            }
            Err(e)
                if request.replaces.is_some()
                    && e.problem().is_some()
                    && !e.is_validation_failure()
                    && !e.is_rate_limited() =>
            {
                tracing::info!(name, error = %e, "retrying the order without the ARI `replaces` field");
                request.replaces = None;
                issue::obtain(&account, &request, &self.responder).await
            }
            other => other,
        }
    }

    /// Asks the CA for its suggested renewal window for `leaf` (best effort):
    /// `None` when the CA has no ARI or the leaf cannot be identified.
    pub(crate) async fn renewal_info(
        &self,
        leaf: &CertificateDer<'_>,
    ) -> Result<Option<RenewalInfo>, AcmeError> {
        if !self.may_support_ari() {
            return Ok(None);
        }
        let Ok(id) = CertificateIdentifier::try_from(leaf) else {
            return Ok(None);
        };
        let account = self.account().await?;
        match account.renewal_info(&id).await {
            Ok((info, poll)) => {
                self.ari.store(ARI_YES, Ordering::Relaxed);
                Ok(Some(RenewalInfo {
                    start: SystemTime::from(info.suggested_window.start),
                    end: SystemTime::from(info.suggested_window.end),
                    poll,
                }))
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.ari.store(ARI_NO, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(AcmeError::acme("fetching renewal information", e)),
        }
    }

    /// The ACME account, restored or created on first use. Not cached on error,
    /// so a CA that was down is simply tried again next time.
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut slot = self.account.lock().await;
        if let Some(account) = slot.as_ref() {
            return Ok(account.clone());
        }
        let http = AcmeHttp::new(self.settings.root.as_deref())?;
        let account = account::load_or_create(
            self.storage.as_ref(),
            &self.settings.directory,
            self.settings.email.as_deref(),
            &http,
        )
        .await?;
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Drops the cached account and moves its credentials aside.
    async fn forget_account(&self) -> Result<(), AcmeError> {
        let mut slot = self.account.lock().await;
        *slot = None;
        account::retire(self.storage.as_ref(), &self.settings.directory).await
    }
}
