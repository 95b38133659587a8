//! HTTPS for sites: the certificate each is served with, from the co-op's ACME CA (orders in
//! `orders.rs`, under the CA's rate limits in `limits.rs`) or brought by its member; what a
//! site shows of it; its part in nodes' documents (keys opened for the node alone); its
//! expiry, watched.

pub mod limits;
mod orders;

pub use orders::CertificateRun;

use std::collections::BTreeMap;

use alveole_model::{MemberId, Site, SiteId, SiteSpec, SiteTls, backup::WireSecret};
use alveole_store::{AcmeStatus, AuditContext, CertificateSource, StoredCertificate};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Service;
use crate::error::{ApiError, ApiResult};

/// A certificate a member brings: PEM, the site's certificate first then its chain, and its
/// key.
#[derive(Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateUpload {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertificateUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateUpload { key: [redacted] }")
    }
}

/// A site's HTTPS as its member sees it (never the key).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SiteCertificate {
    pub site_id: SiteId,
    /// Certificates from the co-op's CA are on for the site, and the panel has a CA.
    pub acme: bool,
    /// The certificate served, if any.
    pub certificate: Option<CertificateView>,
    /// When the panel orders its next certificate (ACME only).
    pub renew_at: Option<DateTime<Utc>>,
    /// The last certificate the CA issued for it.
    pub last_renewal: Option<DateTime<Utc>>,
    /// The last failure, until a certificate is issued (a refused order, a failed challenge,
    /// a name that points elsewhere, a rate limit).
    pub last_error: Option<String>,
    pub error_at: Option<DateTime<Utc>>,
    /// No order before then.
    pub retry_at: Option<DateTime<Utc>>,
    /// The site's names no certificate covers yet (new names, wildcards that need DNS-01).
    pub uncovered: Vec<String>,
    /// Expiry is near and the certificate was not renewed.
    pub alert: Option<String>,
}

/// A certificate's public part.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct CertificateView {
    pub source: CertificateSource,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    /// Its serial number (hexadecimal), as its CA names it.
    pub serial: String,
}

/// A certificate's expiry, for the metrics.
#[derive(Clone, Debug)]
pub struct Expiry {
    pub site: SiteId,
    pub name: String,
    pub not_after: DateTime<Utc>,
    pub alerted: bool,
}

impl Service {
    /// The site's HTTPS: its certificate, its renewal, its last error.
    pub async fn site_certificate(
        &self,
        limited_to: Option<MemberId>,
        site: SiteId,
    ) -> ApiResult<SiteCertificate> {
        let site = self.get::<Site>(limited_to, site).await?;
        let certificate = self.store().certificate(site.id).await?;
        let status = self
            .store()
            .acme_statuses()
            .await?
            .into_iter()
            .find(|s| s.site_id == site.id);
        Ok(self.view(&site, certificate.as_ref(), status.as_ref()))
    }

    fn view(
        &self,
        site: &Site,
        certificate: Option<&StoredCertificate>,
        status: Option<&AcmeStatus>,
    ) -> SiteCertificate {
        let now = self.now();
        let names: Vec<String> = site_names(site);
        let uncovered = names
            .iter()
            .filter(|name| {
                certificate
                    .is_none_or(|c| !c.names.iter().any(|n| crate::certificates::covers(n, name)))
            })
            .cloned()
            .collect();
        let alert = certificate.and_then(|c| alert_of(c, now));
        SiteCertificate {
            site_id: site.id,
            acme: site.https.acme && self.config().acme.is_some(),
            certificate: certificate.map(|c| CertificateView {
                source: c.source,
                issuer: c.issuer.clone(),
                names: c.names.clone(),
                not_before: c.not_before,
                not_after: c.not_after,
                issued_at: c.issued_at,
                serial: crate::certificates::describe(&c.chain_pem)
                    .map(|info| info.serial)
                    .unwrap_or_default(),
            }),
            renew_at: certificate
                .filter(|c| c.source == CertificateSource::Acme)
                .and_then(|c| c.renew_at),
            last_renewal: status.and_then(|s| s.renewed_at),
            last_error: status.and_then(|s| s.last_error.clone()),
            error_at: status.and_then(|s| s.error_at),
            retry_at: status.and_then(|s| s.retry_at).filter(|at| *at > now),
            uncovered,
            alert,
        }
    }

    /// Keeps a member's own certificate for the site (audited `certificate.upload`): checked
    /// first (chain, key, validity, names), each refusal on its field. ACME orders nothing
    /// for the site while it is in place.
    pub async fn upload_certificate(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        site: SiteId,
        upload: CertificateUpload,
    ) -> ApiResult<SiteCertificate> {
        let site = self.get::<Site>(limited_to, site).await?;
        let info = crate::certificates::check(
            &upload.chain_pem,
            &upload.key_pem,
            &site_names(&site),
            self.now(),
        )
        .map_err(ApiError::Validation)?;
        let key_sealed = self
            .config()
            .secrets
            .seal(&upload.key_pem)
            .map_err(crate::service::secrets::unavailable)?;
        let certificate = StoredCertificate {
            site_id: site.id,
            source: CertificateSource::Uploaded,
            chain_pem: upload.chain_pem,
            key_sealed,
            names: info.names,
            issuer: info.issuer,
            not_before: info.not_before,
            not_after: info.not_after,
            issued_at: self.now(),
            renew_at: None,
            ari_next: None,
        };
        self.store()
            .put_certificate(ctx, &certificate, "certificate.upload")
            .await?;
        self.tell_nodes();
        self.site_certificate(limited_to, site.id).await
    }

    /// Stops serving the site's certificate (audited `certificate.remove`); with ACME on, a
    /// new one is ordered. `NotFound` when it has none.
    pub async fn remove_certificate(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        site: SiteId,
    ) -> ApiResult<SiteCertificate> {
        let site = self.get::<Site>(limited_to, site).await?;
        if !self
            .store()
            .remove_certificate(ctx, site.id, "certificate.remove")
            .await?
        {
            return Err(ApiError::NotFound("certificate"));
        }
        self.tell_nodes();
        self.poke(crate::background::Task::Certificates);
        self.site_certificate(limited_to, site.id).await
    }

    /// Revokes the site's certificate at the CA that issued it (a key that leaked), then
    /// forgets it (audited `certificate.revoke`); with ACME on, a new one is ordered at once.
    pub async fn revoke_certificate(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        site: SiteId,
    ) -> ApiResult<SiteCertificate> {
        let site = self.get::<Site>(limited_to, site).await?;
        let certificate = self
            .store()
            .certificate(site.id)
            .await?
            .ok_or(ApiError::NotFound("certificate"))?;
        if certificate.source != CertificateSource::Acme {
            return Err(ApiError::Conflict {
                message: "this certificate is the member's own: revoke it at the CA that \
                          issued it, then remove it here"
                    .into(),
                errors: vec![],
            });
        }
        let ca = self.ca().await?;
        ca.revoke(&certificate.chain_pem)
            .await
            .map_err(|error| ApiError::Upstream(format!("the CA did not revoke it: {error}")))?;
        self.store()
            .remove_certificate(ctx, site.id, "certificate.revoke")
            .await?;
        self.tell_nodes();
        self.poke(crate::background::Task::Certificates);
        self.site_certificate(limited_to, site.id).await
    }

    /// Opens the certificates' keys, for the node's agent only.
    pub(crate) fn open_certificate_keys(
        &self,
        certificates: &mut BTreeMap<SiteId, StoredCertificate>,
    ) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        for (site, certificate) in certificates.iter_mut() {
            certificate.key_sealed = keyring.open(&certificate.key_sealed).map_err(|error| {
                tracing::error!(%site, %error, "a certificate's key does not open");
                ApiError::Unavailable("the panel cannot open a certificate's key: see the log")
            })?;
        }
        Ok(())
    }

    /// The certificates' keys and the ACME accounts sealed again with the current key
    /// (`current` is its prefix).
    pub(crate) async fn reseal_certificates(&self, current: &str) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        let again = |sealed: &str| -> ApiResult<Option<String>> {
            if sealed.starts_with(current) {
                return Ok(None);
            }
            let plain = keyring.open(sealed).map_err(|error| {
                tracing::error!(%error, "a certificate key or ACME account does not open");
                ApiError::Unavailable("the panel cannot open a certificate's key: see the log")
            })?;
            keyring
                .seal(&plain)
                .map(Some)
                .map_err(crate::service::secrets::unavailable)
        };
        let mut keys = Vec::new();
        for certificate in self.store().certificates().await? {
            if let Some(sealed) = again(&certificate.key_sealed)? {
                keys.push((certificate.site_id, sealed));
            }
        }
        let mut accounts = Vec::new();
        for account in self.store().acme_accounts().await? {
            if let Some(sealed) = again(&account.sealed)? {
                accounts.push((account.directory, sealed));
            }
        }
        self.store().reseal_certificates(&keys, &accounts).await?;
        Ok(())
    }

    /// Every site's certificate expiry, for the metrics.
    pub async fn certificate_expiries(&self) -> ApiResult<Vec<Expiry>> {
        let now = self.now();
        let names: BTreeMap<SiteId, String> = self
            .all_sites()
            .await?
            .into_iter()
            .map(|site| (site.id, site.primary_domain.to_string()))
            .collect();
        Ok(self
            .store()
            .certificates()
            .await?
            .into_iter()
            .filter_map(|c| {
                Some(Expiry {
                    name: names.get(&c.site_id)?.clone(),
                    site: c.site_id,
                    not_after: c.not_after,
                    alerted: alert_of(&c, now).is_some(),
                })
            })
            .collect())
    }
}

/// A site's names as a certificate lists them.
pub(crate) fn site_names(site: &Site) -> Vec<String> {
    std::iter::once(&site.primary_domain)
        .chain(&site.aliases)
        .map(ToString::to_string)
        .collect()
}

/// Why a certificate is alerted on: five sixths of its lifetime passed without a renewal.
fn alert_of(certificate: &StoredCertificate, now: DateTime<Utc>) -> Option<String> {
    let from = alveole_model::https::alert_at(certificate.not_before, certificate.not_after);
    (now >= from).then(|| {
        if now >= certificate.not_after {
            format!("the certificate expired on {}", certificate.not_after)
        } else {
            format!(
                "the certificate expires on {} and was not renewed",
                certificate.not_after
            )
        }
    })
}

/// Each spec's certificate, from `certificates` (keys opened), with the site's redirect and
/// HSTS settings.
pub(crate) fn with_certificates(
    specs: &mut [SiteSpec],
    sites: &BTreeMap<SiteId, &Site>,
    certificates: &BTreeMap<SiteId, StoredCertificate>,
) {
    for spec in specs {
        let (Some(certificate), Some(site)) =
            (certificates.get(&spec.site_id), sites.get(&spec.site_id))
        else {
            continue;
        };
        spec.tls = Some(SiteTls {
            chain_pem: certificate.chain_pem.clone(),
            key_pem: WireSecret(certificate.key_sealed.clone()),
            redirect: site.https.redirect,
            hsts_seconds: site.https.hsts_seconds,
        });
    }
}
