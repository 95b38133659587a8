//! Keys the panel makes for each site and gives only to the site's node: the backup
//! repository's password, and the key that signs the site's visitors' admission passes. Each
//! is sealed with the panel's secrets key (the service seals and opens them).

use alveole_model::SiteId;
use async_trait::async_trait;

use crate::StoreResult;

/// What a site's key is for; each kind has its own table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKeyKind {
    /// The password of the site's restic repositories; kept after the site is deleted, so
    /// that its backups can still be restored.
    Backup,
    /// Signs the site's visitors' passes (overload protection); goes with the site.
    Admission,
}

impl SiteKeyKind {
    pub(crate) fn table(self) -> &'static str {
        match self {
            SiteKeyKind::Backup => "backup_keys",
            SiteKeyKind::Admission => "admission_keys",
        }
    }

    /// The sites that need a key of this kind and have none.
    pub(crate) fn missing_query(self) -> &'static str {
        match self {
            SiteKeyKind::Backup => {
                "SELECT DISTINCT t.site_id FROM site_backup_targets t \
                 LEFT JOIN backup_keys k ON k.site_id = t.site_id WHERE k.site_id IS NULL \
                 ORDER BY t.site_id"
            }
            SiteKeyKind::Admission => {
                "SELECT s.id FROM sites s LEFT JOIN admission_keys k ON k.site_id = s.id \
                 WHERE k.site_id IS NULL ORDER BY s.id"
            }
        }
    }
}

#[async_trait]
pub trait SiteKeyStore: Send + Sync {
    /// Keeps `sealed` as the site's key of this kind unless it has one: the key it keeps.
    async fn ensure_site_key(
        &self,
        kind: SiteKeyKind,
        site: SiteId,
        sealed: &str,
    ) -> StoreResult<String>;
    /// Every sealed key of this kind (a rotation reseals them).
    async fn site_keys(&self, kind: SiteKeyKind) -> StoreResult<Vec<(SiteId, String)>>;
    /// Replaces sealed keys (a rotation of the secrets key), in one transaction.
    async fn reseal_site_keys(
        &self,
        kind: SiteKeyKind,
        keys: &[(SiteId, String)],
    ) -> StoreResult<()>;
    /// Sites that need a key of this kind and have none yet.
    async fn sites_without_key(&self, kind: SiteKeyKind) -> StoreResult<Vec<SiteId>>;
}
