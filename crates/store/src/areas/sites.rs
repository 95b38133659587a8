//! What sites need beyond their records: deleting one with its data (the node learns which
//! volumes to remove from its desired state).

use alveole_model::{EnvVar, SiteId};
use async_trait::async_trait;

use crate::{AuditContext, StoreResult};

#[async_trait]
pub trait SiteStore: Send + Sync {
    /// Deletes the site and orders its node to remove its volume (one audited change);
    /// `delete` keeps the volume, so that a deletion can be undone.
    async fn purge_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
    ) -> StoreResult<()>;

    /// Replaces the stored form of the site's variables and databases (their passwords), and
    /// nothing else, if the site still has `version` (one audited `action`, such as
    /// `site.update`): the panel sealing or resealing secrets, or a new password. No other rule
    /// is checked again, since nothing else changes. The site's node hears of it.
    async fn rewrite_site_secrets(
        &self,
        ctx: &AuditContext,
        action: &'static str,
        id: SiteId,
        version: i64,
        env: Vec<EnvVar>,
        databases: Vec<alveole_model::Database>,
    ) -> StoreResult<()>;
}
