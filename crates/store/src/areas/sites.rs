//! What sites need beyond their records: deleting one with its data (the node learns which
//! volumes to remove from its desired state).

use alveole_model::SiteId;
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
}
