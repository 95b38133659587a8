//! HTTPS: each site's certificate (ACME's or its member's own, the key sealed), what ACME last
//! did for it, the answers to challenges while an order runs, the co-op's ACME account, and
//! the events the CA's rate limits count.

use alveole_model::{AcmeChallenge, NodeId, SiteId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{AuditContext, StoreResult};

/// Where a site's certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateSource {
    /// Ordered and renewed by the panel from the co-op's ACME CA.
    Acme,
    /// Brought by the site's member; never renewed by the panel.
    Uploaded,
}

impl CertificateSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acme => "acme",
            Self::Uploaded => "uploaded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Acme, Self::Uploaded]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A site's certificate as kept (its key sealed with the panel's secrets key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCertificate {
    pub site_id: SiteId,
    pub source: CertificateSource,
    /// The certificate, then its chain, in PEM.
    pub chain_pem: String,
    pub key_sealed: String,
    /// The DNS names it is for.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// When the next order is due (ACME's only).
    pub renew_at: Option<DateTime<Utc>>,
    /// When the CA's renewal information is asked for again, where it gives one.
    pub ari_next: Option<DateTime<Utc>>,
}

/// What ACME last did for a site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AcmeStatus {
    pub site_id: SiteId,
    /// The last failure (an order refused, a challenge failed, a name that points elsewhere),
    /// until a certificate is issued.
    pub last_error: Option<String>,
    pub error_at: Option<DateTime<Utc>>,
    /// Failures in a row.
    pub failures: u32,
    /// No order before then.
    pub retry_at: Option<DateTime<Utc>>,
    /// The last certificate issued to it.
    pub renewed_at: Option<DateTime<Utc>>,
}

/// What a CA's rate limits count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcmeEventKind {
    /// A new order (keyed by the account's directory).
    Order,
    /// A certificate issued (keyed by registered domain).
    Issued,
    /// A failed validation (keyed by name).
    Failed,
}

impl AcmeEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Issued => "issued",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Order, Self::Issued, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One counted event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeEvent {
    pub kind: AcmeEventKind,
    pub key: String,
    pub at: DateTime<Utc>,
}

/// The co-op's account at a CA, as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeAccount {
    pub directory: String,
    /// Its credentials (the account key), sealed.
    pub sealed: String,
    /// The CA asked to be left alone until then (429, Retry-After).
    pub backoff_until: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait CertificateStore: Send + Sync {
    async fn certificate(&self, site: SiteId) -> StoreResult<Option<StoredCertificate>>;
    /// Every site's certificate.
    async fn certificates(&self) -> StoreResult<Vec<StoredCertificate>>;
    /// Keeps a site's certificate, replacing any (audited `action`: `certificate.upload`,
    /// `certificate.issue`, `certificate.renew`); an ACME one ends the site's errors and
    /// challenges. Its node hears of it (and a move's target).
    async fn put_certificate(
        &self,
        ctx: &AuditContext,
        certificate: &StoredCertificate,
        action: &'static str,
    ) -> StoreResult<()>;
    /// Forgets a site's certificate (audited `action`: `certificate.remove`,
    /// `certificate.revoke`): whether it had one.
    async fn remove_certificate(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        action: &'static str,
    ) -> StoreResult<bool>;
    /// When a certificate is renewed next (the CA's window, asked again at `ari_next`).
    async fn set_renewal(
        &self,
        site: SiteId,
        renew_at: DateTime<Utc>,
        ari_next: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;
    /// Every site's ACME status.
    async fn acme_statuses(&self) -> StoreResult<Vec<AcmeStatus>>;
    /// An order starts (audited `certificate.order`, with its names): its challenges'
    /// answers go to the site's nodes, returned with the generation that carries them.
    async fn start_order(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        names: &[String],
        challenges: &[AcmeChallenge],
    ) -> StoreResult<Vec<(NodeId, u64)>>;
    /// An order failed (audited `certificate.fail`): its error on the site, its challenges
    /// gone, no order before `retry_at`.
    async fn fail_order(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// A problem found before ordering (a name that points elsewhere), or none any more: on
    /// the site, not audited (nothing was asked of the CA).
    async fn note_acme_problem(
        &self,
        site: SiteId,
        problem: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;
    /// The account at a CA's directory.
    async fn acme_account(&self, directory: &str) -> StoreResult<Option<AcmeAccount>>;
    /// Keeps the account made at a CA (audited `acme.account`).
    async fn put_acme_account(
        &self,
        ctx: &AuditContext,
        directory: &str,
        sealed: &str,
    ) -> StoreResult<()>;
    /// The CA asked (429) to be left alone until `until`.
    async fn set_acme_backoff(&self, directory: &str, until: DateTime<Utc>) -> StoreResult<()>;
    /// Counts events for the rate limits, at the store's now.
    async fn record_acme_events(&self, kind: AcmeEventKind, keys: &[String]) -> StoreResult<()>;
    /// The events since `since` (and forgets those older than a week).
    async fn acme_events_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<AcmeEvent>>;
    /// Keys and account credentials sealed again (the secrets key's rotation).
    async fn reseal_certificates(
        &self,
        keys: &[(SiteId, String)],
        accounts: &[(String, String)],
    ) -> StoreResult<()>;
    /// Every account kept, at every CA.
    async fn acme_accounts(&self) -> StoreResult<Vec<AcmeAccount>>;
}
