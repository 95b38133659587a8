//! Backups: the sites' repository keys (sealed by the panel), what nodes said of each backup,
//! restores, and where each target keeps its copies (for the placement rule).

use alveole_model::backup::{BackupRun, Restore, TargetPlace};
use alveole_model::{BackupTargetId, RestoreId, SiteId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{AuditContext, StoreResult};

/// A restore to record: where from, into which site, by which node.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub site_id: SiteId,
    pub source_site_id: SiteId,
    pub target_id: BackupTargetId,
    pub snapshot: Option<String>,
    pub paths: Vec<String>,
}

#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Asks the site's node for a backup now (audited): the time asked.
    async fn request_backup(&self, ctx: &AuditContext, site: SiteId) -> StoreResult<DateTime<Utc>>;
    /// When a backup of the site was last asked for.
    async fn backup_requested_at(&self, site: SiteId) -> StoreResult<Option<DateTime<Utc>>>;
    /// The site's latest backups, newest first.
    async fn backup_runs(&self, site: SiteId, limit: u32) -> StoreResult<Vec<BackupRun>>;
    /// Each site's newest successful backup at each of its targets (one site's only, when
    /// given).
    async fn latest_snapshots(&self, site: Option<SiteId>) -> StoreResult<Vec<BackupRun>>;
    /// Where targets keep their copies (a vault's provider is its node's), in the order
    /// asked; an unknown target is left out.
    async fn target_places(&self, targets: &[BackupTargetId]) -> StoreResult<Vec<TargetPlace>>;
    /// Records a restore (audited) and tells the receiving site's node.
    async fn create_restore(
        &self,
        ctx: &AuditContext,
        request: RestoreRequest,
    ) -> StoreResult<Restore>;
    async fn restore(&self, id: RestoreId) -> StoreResult<Restore>;
    /// Ends a restore that is still running as failed, for `reason` (its node went silent):
    /// audited `restore.fail`. `None` when it had ended already.
    async fn fail_running_restore(
        &self,
        ctx: &AuditContext,
        id: RestoreId,
        reason: &str,
    ) -> StoreResult<Option<Restore>>;
    /// The restores into a site, newest first.
    async fn restores_into(&self, site: SiteId, limit: u32) -> StoreResult<Vec<Restore>>;
    /// Where every site's backups are (for the planners: a site never goes there).
    async fn sites_backup_places(&self) -> StoreResult<Vec<(SiteId, TargetPlace)>>;
    /// When each site's oldest run still kept began (how long it has been backed up).
    async fn oldest_backup_runs(
        &self,
    ) -> StoreResult<std::collections::BTreeMap<SiteId, DateTime<Utc>>>;
    /// Forgets runs older than `before` (each target's newest success is kept).
    async fn remove_old_backup_runs(&self, before: DateTime<Utc>) -> StoreResult<u64>;
}
