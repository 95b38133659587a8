//! Restore drills, what the vaults' checks last found of each copy, and the backup alerts
//! raised on sites (a window too long, a failed drill, a damaged copy).

use alveole_model::backup::{CopyCheck, Drill};
use alveole_model::{BackupTargetId, DrillId, NodeId, SiteId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::{AuditContext, StoreResult};

/// A drill to record: of which copy, on which node (none: no node could take it, and the
/// drill fails at once with `refused`).
#[derive(Clone, Debug)]
pub struct DrillRequest {
    pub site_id: SiteId,
    pub target_id: BackupTargetId,
    pub node_id: Option<NodeId>,
    pub refused: Option<String>,
}

/// Why a site is alerted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Its data-loss window exceeds its policy's.
    Window,
    /// Its latest drill failed.
    Drill,
    /// A vault's check found one of its copies damaged.
    Damage,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Window => "window",
            AlertKind::Drill => "drill",
            AlertKind::Damage => "damage",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Window, Self::Drill, Self::Damage]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// An alert raised on a site, with its reason, since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct BackupAlert {
    pub site_id: SiteId,
    pub kind: AlertKind,
    pub reason: String,
    pub since: DateTime<Utc>,
}

#[async_trait]
pub trait DrillStore: Send + Sync {
    /// Records a drill (audited `drill.start`) and tells its node and the vault; without a
    /// node, a failed drill (`drill.fail`, the site's drill alert raised).
    async fn create_drill(&self, ctx: &AuditContext, request: DrillRequest) -> StoreResult<Drill>;
    async fn drill(&self, id: DrillId) -> StoreResult<Drill>;
    /// A site's latest drills, newest first.
    async fn drills_of(&self, site: SiteId, limit: u32) -> StoreResult<Vec<Drill>>;
    /// Every site's latest drill at each of its targets, and the drills that passed since
    /// `since` (what the figures and the schedule need).
    async fn drills_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Drill>>;
    /// Ends a drill that is still running as failed, for `reason` (its node went silent, it
    /// ran too long): audited `drill.fail`, the site's drill alert raised. `None` when it had
    /// ended already.
    async fn fail_running_drill(
        &self,
        ctx: &AuditContext,
        id: DrillId,
        reason: &str,
    ) -> StoreResult<Option<Drill>>;
    /// The latest check of each copy (one site's only, when given), with the newest
    /// snapshot taken before it.
    async fn copy_checks(&self, site: Option<SiteId>) -> StoreResult<Vec<CopyCheck>>;
    /// The alerts raised (on one site only, when given).
    async fn backup_alerts(&self, site: Option<SiteId>) -> StoreResult<Vec<BackupAlert>>;
    /// Raises an alert (audited `backup.alert`) unless it is raised with that reason.
    async fn raise_alert(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        kind: AlertKind,
        reason: &str,
    ) -> StoreResult<bool>;
    /// Clears an alert (audited `backup.alert_cleared`) if it is raised.
    async fn clear_alert(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        kind: AlertKind,
    ) -> StoreResult<bool>;
}
