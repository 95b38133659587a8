//! Secrets at rest (`crate::secrets`): what the service seals before the store writes it,
//! opens only for the node's own agent, seals when it finds it in clear (rows from before),
//! and reseals under a new key (rotation).

use alveole_model::{EnvValue, EnvVar, Secret, Site};
use alveole_store::{AuditContext, Change, PageRequest, SiteFilter};

use super::Service;
use crate::api::MAX_PAGE_SIZE;
use crate::error::{ApiError, ApiResult};

impl Service {
    /// Seals each secret variable of `env` that is not sealed yet (a value sent by a client).
    pub(crate) fn seal_env(&self, env: &mut [EnvVar]) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        for var in env.iter_mut() {
            let EnvValue::Secret(secret) = &var.value else {
                continue;
            };
            if keyring.is_sealed(secret.expose()) {
                continue;
            }
            let sealed = keyring.seal(secret.expose()).map_err(unavailable)?;
            var.value = EnvValue::Secret(Secret::new(sealed));
        }
        Ok(())
    }

    /// Opens each sealed secret of `site` (its variables, its databases' passwords), for its
    /// node's agent only.
    pub(crate) fn open_env(&self, site: &mut Site) -> ApiResult<()> {
        self.open_databases(site)?;
        let keyring = &self.config().secrets;
        for var in &mut site.env {
            let EnvValue::Secret(secret) = &var.value else {
                continue;
            };
            // A value stored before secrets were sealed is sent as it is (the start of the
            // panel seals those).
            if !secret.expose().starts_with(crate::secrets::SEALED_PREFIX) {
                continue;
            }
            let plain = keyring.open(secret.expose()).map_err(|error| {
                tracing::error!(site = %site.id, %error, "a secret does not open");
                unavailable(error)
            })?;
            var.value = EnvValue::Secret(Secret::new(plain));
        }
        Ok(())
    }

    /// Seals the secrets stored in clear (written before this panel sealed them), each site
    /// as an audited update that changes nothing else: how many sites it sealed.
    pub async fn seal_stored_secrets(&self, ctx: &AuditContext) -> ApiResult<usize> {
        let keyring = self.config().secrets.clone();
        self.reseal(ctx, |value| !keyring.is_sealed(value)).await
    }

    /// Rotates the secrets key: a new key first in the key file, every secret sealed again
    /// with it (each site audited), then the old key dropped, and the rotation recorded.
    /// Cut short, it loses nothing: the key file holds both keys until the end.
    pub async fn rotate_secrets_key(&self, ctx: &AuditContext) -> ApiResult<usize> {
        let keyring = self.config().secrets.clone();
        let old = keyring.current_id();
        let new = keyring.add_current().map_err(unavailable)?;
        let current = format!("{}{new}:", crate::secrets::SEALED_PREFIX);
        let sites = self
            .reseal(ctx, |value| !value.starts_with(&current))
            .await?;
        self.reseal_id_tokens(&current).await?;
        self.reseal_site_keys(&current).await?;
        self.reseal_certificates(&current).await?;
        keyring.drop_old().map_err(unavailable)?;
        let change = Change {
            action: "secrets.rotate",
            target_kind: "secrets_key",
            target_id: new.clone(),
            before: Some(serde_json::json!({"key_id": old})),
            after: Some(serde_json::json!({"key_id": new, "sites_resealed": sites})),
        };
        self.store().record_action(ctx, change).await?;
        Ok(sites)
    }

    /// The ID tokens kept with sessions, sealed again with the current key (`current` is its
    /// prefix). One that no key opens any more is left: its session signs out without a hint.
    async fn reseal_id_tokens(&self, current: &str) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        for (session, sealed) in self.store().sealed_id_tokens().await? {
            if sealed.starts_with(current) {
                continue;
            }
            let Ok(token) = keyring.open(&sealed) else {
                continue;
            };
            let resealed = keyring.seal(&token).map_err(unavailable)?;
            self.store().reseal_id_token(&session, &resealed).await?;
        }
        Ok(())
    }

    /// Writes again, sealed with the current key, every site with a secret `stale` says must
    /// be sealed again.
    async fn reseal(&self, ctx: &AuditContext, stale: impl Fn(&str) -> bool) -> ApiResult<usize> {
        let mut resealed = 0;
        let mut after = None;
        loop {
            let page = self
                .store()
                .sites()
                .list(
                    &SiteFilter::default(),
                    &PageRequest {
                        after,
                        limit: MAX_PAGE_SIZE,
                    },
                )
                .await?;
            for site in &page.items {
                let needs = site.env.iter().any(|var| match &var.value {
                    EnvValue::Secret(secret) => stale(secret.expose()),
                    EnvValue::Plain(_) => false,
                }) || site.databases.iter().any(|db| {
                    db.credentials.as_ref().is_some_and(|c| {
                        stale(c.password.expose()) || stale(c.admin_password.expose())
                    })
                });
                if needs {
                    self.reseal_site(ctx, site).await?;
                    resealed += 1;
                }
            }
            match page.next_cursor.and_then(|c| c.parse().ok()) {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        if resealed > 0 {
            self.tell_nodes();
        }
        Ok(resealed)
    }

    /// The site's secrets sealed again with the current key (opened first), written as they
    /// are: no other rule is applied again to a site whose other fields do not change.
    async fn reseal_site(&self, ctx: &AuditContext, site: &Site) -> ApiResult<()> {
        let mut open = site.clone();
        self.open_env(&mut open)?;
        let keyring = &self.config().secrets;
        let mut env = open.env;
        for var in &mut env {
            if let EnvValue::Secret(secret) = &var.value {
                let sealed = keyring.seal(secret.expose()).map_err(unavailable)?;
                var.value = EnvValue::Secret(Secret::new(sealed));
            }
        }
        let mut databases = open.databases;
        self.seal_database_credentials(&mut databases)?;
        self.store()
            .rewrite_site_secrets(
                ctx,
                "site.update",
                site.id,
                site.meta.version,
                env,
                databases,
            )
            .await?;
        Ok(())
    }
}

/// A secrets-key failure, logged; the caller is told to check the key file.
pub(super) fn unavailable(error: crate::secrets::SecretsError) -> ApiError {
    tracing::error!(%error, "secrets key");
    ApiError::Unavailable(
        "the panel cannot use its secrets key: check --secrets-key-file (see the log)",
    )
}
