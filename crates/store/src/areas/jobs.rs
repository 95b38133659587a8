//! Durable jobs (evacuations): recorded with their sites in plan order, leased by one panel
//! process at a time, moved forward a step at a time.

use alveole_model::JobId;
use alveole_model::evacuation::{Evacuation, EvacuationSpec, ItemState, JobState, Remaining};
use alveole_model::{NodeId, SiteId, SiteMove};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{AuditContext, MoveTiming, StoreResult};

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Records an evacuation (running) with its sites in the order they move (audited).
    async fn create_evacuation(
        &self,
        ctx: &AuditContext,
        spec: &EvacuationSpec,
        items: &[(SiteId, NodeId)],
    ) -> StoreResult<Evacuation>;
    async fn get_evacuation(&self, id: JobId) -> StoreResult<Evacuation>;
    /// Newest first.
    async fn evacuations(&self) -> StoreResult<Vec<Evacuation>>;
    /// Pauses, resumes or cancels an unfinished evacuation (audited); cancelling skips the
    /// sites not started yet.
    async fn set_evacuation_state(
        &self,
        ctx: &AuditContext,
        id: JobId,
        state: JobState,
    ) -> StoreResult<Evacuation>;
    /// Takes, or keeps, the lease of unfinished jobs for `owner` until `until`: those with no
    /// lease, an expired one, or `owner`'s own. On PostgreSQL, rows another process is
    /// claiming at the same moment are skipped (`FOR UPDATE SKIP LOCKED`).
    async fn claim_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<JobId>>;
    /// Starts the move of one pending site of an evacuation to `to` (its planned node, or
    /// another when that one can no longer receive), in the same transaction as the item
    /// becomes `moving` with the move's id; `None` when the item is no longer pending
    /// (another process started it): a site is never moved twice.
    async fn start_evacuation_item(
        &self,
        ctx: &AuditContext,
        job: JobId,
        site: SiteId,
        to: NodeId,
        timing: MoveTiming,
    ) -> StoreResult<Option<SiteMove>>;
    /// Recovers one pending site of a recovery on `to`: in one transaction the item becomes
    /// `moving` with the restore's id, the site is `to`'s, and a whole restore of its newest
    /// snapshot at `target` starts there (the site stays stopped until it ends); `None` when
    /// the item is no longer pending.
    async fn start_recovery_item(
        &self,
        ctx: &AuditContext,
        job: JobId,
        site: SiteId,
        to: NodeId,
        target: alveole_model::BackupTargetId,
    ) -> StoreResult<Option<alveole_model::backup::Restore>>;
    /// A recovered site is back: done, with what it lost.
    async fn settle_recovered_item(
        &self,
        job: JobId,
        site: SiteId,
        data_loss_seconds: Option<i64>,
    ) -> StoreResult<()>;
    /// When each node was fenced (fenced nodes only).
    async fn fenced_nodes(&self) -> StoreResult<Vec<(NodeId, DateTime<Utc>)>>;
    /// An item's move ended (done) or did not happen (failed, with why).
    async fn settle_evacuation_item(
        &self,
        job: JobId,
        site: SiteId,
        state: ItemState,
        error: Option<&str>,
    ) -> StoreResult<()>;
    /// A site's try failed and it will be tried again: pending again, not before `retry_at`,
    /// with why its last try failed.
    async fn retry_evacuation_item(
        &self,
        job: JobId,
        site: SiteId,
        error: &str,
        attempts: u32,
        retry_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Ends an evacuation once no site is pending or moving: done, or incomplete when
    /// `remaining` names sites still on the nodes being emptied (a cancelled one stays
    /// cancelled). Audited, with the state, what remains, the predicted and the actual
    /// duration.
    async fn finish_evacuation(
        &self,
        ctx: &AuditContext,
        id: JobId,
        remaining: &[Remaining],
    ) -> StoreResult<Evacuation>;
}
