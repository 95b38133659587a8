//! Durable jobs (evacuations): their items in plan order, leases, and each item's move
//! started in the same transaction as the item.

use alveole_model::JobId;
use alveole_model::evacuation::{
    Evacuation, EvacuationItem, EvacuationSpec, ItemState, JobState, Remaining,
};
use alveole_model::{NodeId, SiteId, SiteMove, SiteMoveId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::super::{CLAIMABLE_JOBS, Db};
use super::moves::insert_site_move;
use super::records::fetch;
use super::{SqlStore, bump_generation};
use crate::{AuditContext, Change, JobStore, MoveTiming, RestoreRequest, StoreError, StoreResult};

async fn fetch_evacuation(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: JobId,
) -> StoreResult<Evacuation> {
    type JobRow = (
        String,
        Json<EvacuationSpec>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<String>,
        Option<Json<Vec<Remaining>>>,
    );
    let job: Option<JobRow> = sqlx::query_as(
        "SELECT state, spec, created_at, finished_at, lease_owner, remaining FROM jobs \
         WHERE id = $1 AND kind = 'evacuation'",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let (state, spec, created_at, finished_at, lease_owner, remaining) =
        job.ok_or(StoreError::NotFound { kind: "evacuation" })?;
    let corrupt = |reason: String| StoreError::Corrupt {
        kind: "evacuation",
        id: id.to_string(),
        reason,
    };
    type ItemRow = (
        Uuid,
        i64,
        Uuid,
        String,
        Option<Uuid>,
        Option<String>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        i64,
        Option<DateTime<Utc>>,
        Option<Uuid>,
        Option<i64>,
    );
    let rows: Vec<ItemRow> = sqlx::query_as(
        "SELECT site_id, position, to_node, state, move_id, error, started_at, finished_at, \
         attempts, retry_at, restore_id, data_loss_seconds FROM evacuation_items \
         WHERE job_id = $1 ORDER BY position",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    let items = rows
        .into_iter()
        .map(
            |(
                site,
                position,
                to,
                state,
                move_id,
                error,
                started_at,
                finished_at,
                attempts,
                retry_at,
                restore_id,
                data_loss_seconds,
            )| {
                Ok(EvacuationItem {
                    site_id: SiteId(site),
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                    to_node: NodeId(to),
                    state: ItemState::parse(&state)
                        .ok_or_else(|| corrupt(format!("unknown item state {state}")))?,
                    move_id: move_id.map(SiteMoveId),
                    error,
                    started_at,
                    finished_at,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    retry_at,
                    restore_id: restore_id.map(alveole_model::RestoreId),
                    data_loss_seconds,
                })
            },
        )
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Evacuation {
        id,
        state: JobState::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state}")))?,
        spec: spec.0,
        created_at,
        finished_at,
        lease_owner,
        items,
        remaining: remaining.map(|r| r.0).unwrap_or_default(),
        estimate: None,
    })
}

/// Makes a pending item `moving` towards `to`, in `tx`: false when it was no longer pending
/// (another process started it), so that a site is never moved or recovered twice.
async fn claim_item(
    tx: &mut super::WriteTx,
    job: JobId,
    site: SiteId,
    to: NodeId,
) -> StoreResult<bool> {
    let now = tx.now;
    let claimed = sqlx::query(
        "UPDATE evacuation_items SET state = 'moving', started_at = $1, to_node = $2, \
         retry_at = NULL WHERE job_id = $3 AND site_id = $4 AND state = 'pending'",
    )
    .bind(now)
    .bind(to.0)
    .bind(job.0)
    .bind(site.0)
    .execute(tx.conn())
    .await?;
    Ok(claimed.rows_affected() == 1)
}

#[async_trait]
impl JobStore for SqlStore {
    async fn create_evacuation(
        &self,
        ctx: &AuditContext,
        spec: &EvacuationSpec,
        items: &[(SiteId, NodeId)],
    ) -> StoreResult<Evacuation> {
        let mut tx = self.begin_write().await?;
        let id = JobId::generate();
        sqlx::query(
            "INSERT INTO jobs (id, kind, state, spec, created_at) \
             VALUES ($1, 'evacuation', 'running', $2, $3)",
        )
        .bind(id.0)
        .bind(Json(spec))
        .bind(tx.now)
        .execute(tx.conn())
        .await?;
        for (position, (site, to)) in items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO evacuation_items (job_id, site_id, position, to_node, state) \
                 VALUES ($1, $2, $3, $4, 'pending')",
            )
            .bind(id.0)
            .bind(site.0)
            .bind(position as i64)
            .bind(to.0)
            .execute(tx.conn())
            .await?;
        }
        let evacuation = fetch_evacuation(tx.conn(), id).await?;
        let mut changes = Vec::new();
        // A recovery fences its lost nodes in the same transaction: from now on they are
        // told so, and nothing else.
        for lost in spec.recovery.iter().flat_map(|r| &r.lost) {
            let fenced = sqlx::query(
                "UPDATE nodes SET fenced_at = $1, desired_generation = desired_generation + 1 \
                 WHERE id = $2 AND fenced_at IS NULL",
            )
            .bind(tx.now)
            .bind(lost.node_id.0)
            .execute(tx.conn())
            .await?;
            if fenced.rows_affected() == 1 {
                changes.push(Change::of(
                    "node.fence",
                    "node",
                    lost.node_id,
                    None,
                    Some(lost),
                ));
            }
        }
        let action = match spec.recovery {
            Some(_) => "recovery.start",
            None => "evacuation.start",
        };
        changes.insert(0, Change::of(action, "job", id, None, Some(&evacuation)));
        tx.commit_all(ctx, changes).await?;
        Ok(evacuation)
    }

    async fn get_evacuation(&self, id: JobId) -> StoreResult<Evacuation> {
        let mut conn = self.pool.acquire().await?;
        fetch_evacuation(&mut conn, id).await
    }

    async fn evacuations(&self) -> StoreResult<Vec<Evacuation>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE kind = 'evacuation' ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        let mut all = Vec::with_capacity(ids.len());
        for id in ids {
            all.push(fetch_evacuation(&mut conn, JobId(id)).await?);
        }
        Ok(all)
    }

    async fn set_evacuation_state(
        &self,
        ctx: &AuditContext,
        id: JobId,
        state: JobState,
    ) -> StoreResult<Evacuation> {
        let mut tx = self.begin_write().await?;
        let before = fetch_evacuation(tx.conn(), id).await?;
        let allowed = matches!(
            (before.state, state),
            (JobState::Running, JobState::Paused)
                | (JobState::Paused, JobState::Running)
                | (JobState::Running | JobState::Paused, JobState::Cancelled)
        );
        if !allowed {
            return Err(StoreError::Conflict {
                message: format!(
                    "the evacuation is {}: it cannot become {}",
                    before.state.as_str(),
                    state.as_str()
                ),
                errors: vec![],
            });
        }
        sqlx::query("UPDATE jobs SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        if state == JobState::Cancelled {
            sqlx::query(
                "UPDATE evacuation_items SET state = 'skipped' WHERE job_id = $1 AND state = 'pending'",
            )
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        }
        let after = fetch_evacuation(tx.conn(), id).await?;
        let action = match state {
            JobState::Paused => "evacuation.pause",
            JobState::Running => "evacuation.resume",
            _ => "evacuation.cancel",
        };
        let change = Change {
            action,
            target_kind: "job",
            target_id: id.to_string(),
            before: Some(serde_json::json!({"state": before.state.as_str()})),
            after: Some(serde_json::json!({"state": state.as_str(), "items": after.counts()})),
        };
        tx.commit(ctx, change).await?;
        Ok(after)
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<JobId>> {
        let mut tx = self.begin_write().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(CLAIMABLE_JOBS)
            .bind(owner)
            .bind(now)
            .fetch_all(tx.conn())
            .await?;
        for id in &ids {
            sqlx::query("UPDATE jobs SET lease_owner = $1, lease_until = $2 WHERE id = $3")
                .bind(owner)
                .bind(until)
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        // A lease is bookkeeping, not a change anyone made: nothing to audit.
        tx.commit_bookkeeping().await?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn start_evacuation_item(
        &self,
        ctx: &AuditContext,
        job: JobId,
        site: SiteId,
        to: NodeId,
        timing: MoveTiming,
    ) -> StoreResult<Option<SiteMove>> {
        let mut tx = self.begin_write().await?;
        if !claim_item(&mut tx, job, site, to).await? {
            return Ok(None);
        }
        let movement = insert_site_move(&mut tx, site, to, timing).await?;
        sqlx::query("UPDATE evacuation_items SET move_id = $1 WHERE job_id = $2 AND site_id = $3")
            .bind(movement.id.0)
            .bind(job.0)
            .bind(site.0)
            .execute(tx.conn())
            .await?;
        let change = Change::of("site.move.start", "site", site, None, Some(&movement));
        tx.commit(ctx, change).await?;
        Ok(Some(movement))
    }

    async fn start_recovery_item(
        &self,
        ctx: &AuditContext,
        job: JobId,
        site: SiteId,
        to: NodeId,
        target: alveole_model::BackupTargetId,
    ) -> StoreResult<Option<alveole_model::backup::Restore>> {
        use alveole_model::Site;
        let mut tx = self.begin_write().await?;
        if !claim_item(&mut tx, job, site, to).await? {
            return Ok(None);
        }
        let before = fetch::<Site>(&mut tx, site).await?;
        // The site is its new node's from now on; its backups go on from there.
        sqlx::query("UPDATE sites SET node_id = $1, backup_requested_at = NULL WHERE id = $2")
            .bind(to.0)
            .bind(site.0)
            .execute(tx.conn())
            .await?;
        let after = fetch::<Site>(&mut tx, site).await?;
        let restore = super::backups::insert_restore(
            &mut tx,
            &ctx.actor,
            RestoreRequest {
                site_id: site,
                source_site_id: site,
                target_id: target,
                snapshot: None,
                paths: vec![],
            },
        )
        .await?;
        sqlx::query(
            "UPDATE evacuation_items SET restore_id = $1 WHERE job_id = $2 AND site_id = $3",
        )
        .bind(restore.id.0)
        .bind(job.0)
        .bind(site.0)
        .execute(tx.conn())
        .await?;
        bump_generation(&mut tx, before.node_id).await?;
        super::backup_targets::bump_vaults(&mut tx, &after.backup.targets).await?;
        let changes = vec![
            Change::of("site.recover", "site", site, Some(&before), Some(&after)),
            Change::of("restore.start", "site", site, None, Some(&restore)),
        ];
        tx.commit_all(ctx, changes).await?;
        Ok(Some(restore))
    }

    async fn settle_recovered_item(
        &self,
        job: JobId,
        site: SiteId,
        data_loss_seconds: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE evacuation_items SET state = 'done', error = NULL, finished_at = $1, \
             data_loss_seconds = $2 WHERE job_id = $3 AND site_id = $4",
        )
        .bind(tx.now)
        .bind(data_loss_seconds)
        .bind(job.0)
        .bind(site.0)
        .execute(tx.conn())
        .await?;
        // The restore recorded its own events.
        tx.commit_bookkeeping().await
    }

    async fn fenced_nodes(&self) -> StoreResult<Vec<(NodeId, DateTime<Utc>)>> {
        let rows: Vec<(Uuid, DateTime<Utc>)> =
            sqlx::query_as("SELECT id, fenced_at FROM nodes WHERE fenced_at IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(id, at)| (NodeId(id), at)).collect())
    }

    async fn settle_evacuation_item(
        &self,
        job: JobId,
        site: SiteId,
        state: ItemState,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE evacuation_items SET state = $1, error = $2, finished_at = $3 \
             WHERE job_id = $4 AND site_id = $5",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(tx.now)
        .bind(job.0)
        .bind(site.0)
        .execute(tx.conn())
        .await?;
        // The site's move records its own events; this is the job's bookkeeping.
        tx.commit_bookkeeping().await
    }

    async fn retry_evacuation_item(
        &self,
        job: JobId,
        site: SiteId,
        error: &str,
        attempts: u32,
        retry_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE evacuation_items SET state = 'pending', error = $1, attempts = $2, \
             retry_at = $3, move_id = NULL WHERE job_id = $4 AND site_id = $5",
        )
        .bind(error)
        .bind(i64::from(attempts))
        .bind(retry_at)
        .bind(job.0)
        .bind(site.0)
        .execute(tx.conn())
        .await?;
        // Bookkeeping too: the failed move recorded its own events.
        tx.commit_bookkeeping().await
    }

    async fn finish_evacuation(
        &self,
        ctx: &AuditContext,
        id: JobId,
        remaining: &[Remaining],
    ) -> StoreResult<Evacuation> {
        let mut tx = self.begin_write().await?;
        let before = fetch_evacuation(tx.conn(), id).await?;
        let unfinished = before
            .items
            .iter()
            .any(|i| matches!(i.state, ItemState::Pending | ItemState::Moving));
        if unfinished || before.finished_at.is_some() {
            return Err(StoreError::Conflict {
                message: "the evacuation still has sites to move".into(),
                errors: vec![],
            });
        }
        let finished_at = tx.now;
        // A cancelled evacuation stays cancelled once its last moves have ended; otherwise it
        // is done only if nothing is left on the nodes being emptied.
        let state = match before.state {
            JobState::Cancelled => JobState::Cancelled,
            _ if !remaining.is_empty() => JobState::Incomplete,
            _ => JobState::Done,
        };
        sqlx::query(
            "UPDATE jobs SET state = $1, finished_at = $2, lease_owner = NULL, lease_until = NULL, \
             remaining = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(finished_at)
        .bind(Json(remaining))
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        let after = fetch_evacuation(tx.conn(), id).await?;
        let change = Change {
            action: if after.spec.recovery.is_some() {
                "recovery.finish"
            } else {
                "evacuation.finish"
            },
            target_kind: "job",
            target_id: id.to_string(),
            before: Some(serde_json::json!({"state": before.state.as_str()})),
            after: Some(serde_json::json!({
                "state": state.as_str(),
                "remaining": remaining,
                "items": after.counts(),
                "predicted_seconds": after.spec.predicted_seconds,
                "took_seconds": (finished_at - after.created_at).num_seconds(),
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(after)
    }
}
