//! The keys the panel makes for each site (`SiteKeyKind`: its backups' repository password,
//! its admission passes' signing key): 32 random bytes, sealed with the secrets key at rest,
//! opened only in the document of the site's node, resealed by a rotation.

use std::collections::BTreeMap;

use alveole_model::SiteId;
use alveole_store::SiteKeyKind;

use super::Service;
use crate::error::{ApiError, ApiResult};

const KINDS: [SiteKeyKind; 2] = [SiteKeyKind::Backup, SiteKeyKind::Admission];

/// 32 random bytes, hex.
fn new_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unusable(error: crate::secrets::SecretsError) -> ApiError {
    tracing::error!(%error, "secrets key");
    ApiError::Unavailable("the panel cannot use its secrets key: see the log")
}

fn unopened(site: &SiteId, error: crate::secrets::SecretsError) -> ApiError {
    tracing::error!(%site, %error, "a site's key does not open");
    ApiError::Unavailable("the panel cannot open a site's key: see the log")
}

impl Service {
    /// Makes the site's key of this kind unless it has one.
    pub(crate) async fn ensure_site_key(&self, kind: SiteKeyKind, site: SiteId) -> ApiResult<()> {
        let sealed = self.config().secrets.seal(&new_key()).map_err(unusable)?;
        self.store().ensure_site_key(kind, site, &sealed).await?;
        self.tell_nodes();
        Ok(())
    }

    /// Keys for sites that need one and have none (sites from before admission keys, a
    /// write cut short between a policy and its key): how many were made.
    pub async fn make_missing_site_keys(&self) -> ApiResult<usize> {
        let mut made = 0;
        for kind in KINDS {
            for site in self.store().sites_without_key(kind).await? {
                self.ensure_site_key(kind, site).await?;
                made += 1;
            }
        }
        Ok(made)
    }

    /// Opens sealed keys for a node's document, for its agent alone.
    pub(crate) fn open_site_keys(&self, keys: &mut BTreeMap<SiteId, String>) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        for (site, key) in keys.iter_mut() {
            *key = keyring.open(key).map_err(|error| unopened(site, error))?;
        }
        Ok(())
    }

    /// Every site key sealed again with the current key (`current` is its prefix).
    pub(crate) async fn reseal_site_keys(&self, current: &str) -> ApiResult<()> {
        let keyring = &self.config().secrets;
        for kind in KINDS {
            let mut resealed = Vec::new();
            for (site, sealed) in self.store().site_keys(kind).await? {
                if sealed.starts_with(current) {
                    continue;
                }
                let plain = keyring
                    .open(&sealed)
                    .map_err(|error| unopened(&site, error))?;
                resealed.push((site, keyring.seal(&plain).map_err(unusable)?));
            }
            self.store().reseal_site_keys(kind, &resealed).await?;
        }
        Ok(())
    }
}
