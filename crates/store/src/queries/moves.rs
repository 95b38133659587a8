//! Site moves: recorded, switched, failed, cancelled and finished, each telling both nodes.

use alveole_model::{
    FieldError, MovePhase, MoveProgress, Node, NodeId, Site, SiteId, SiteMove, SiteMoveId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::{Db, lock_site_writes};
use super::nodes::fetch_node_usage;
use super::records::fetch;
use super::{SqlStore, WriteTx, bump_generation, int};
use crate::rows::{SiteMoveRow, site_move_columns};
use crate::{AuditContext, Change, MoveStore, MoveTiming, StoreError, StoreResult};

/// Checks and records a site's move (phase `copying`) and tells both nodes; the caller
/// commits with its audit event.
pub(super) async fn insert_site_move(
    tx: &mut WriteTx,
    site: SiteId,
    to: NodeId,
    timing: MoveTiming,
) -> StoreResult<SiteMove> {
    lock_site_writes(tx.conn()).await?;
    let moved = fetch::<Site>(tx, site).await?;
    let refused = |code: &'static str, message: String| StoreError::Conflict {
        errors: vec![FieldError::new("to_node", code, message.clone())],
        message,
    };
    let from = moved.node_id.ok_or_else(|| {
        refused(
            "move.unplaced",
            "the site runs on no node yet: nothing to move".into(),
        )
    })?;
    fetch::<Node>(tx, to).await?;
    // A site must not arrive without its data: the databases' replication to the target is
    // not built yet (docs/design/databases.md).
    if !moved.databases.is_empty() {
        return Err(refused(
            "move.has_databases",
            "a site with databases cannot move yet: moving their data to another node is not \
             built"
                .into(),
        ));
    }
    if from == to {
        return Err(refused(
            "move.same_node",
            "the site already runs on this node".into(),
        ));
    }
    // Its backups stay away from its provider wherever it goes.
    let places = super::backup_targets::target_places(tx.conn(), &moved.backup.targets).await?;
    let to_provider: Uuid = sqlx::query_scalar("SELECT provider_id FROM nodes WHERE id = $1")
        .bind(to.0)
        .fetch_one(tx.conn())
        .await?;
    for place in &places {
        if let Some((code, why)) =
            alveole_model::backup::refuses_node(to, alveole_model::ProviderId(to_provider), place)
        {
            return Err(refused(code, format!("the site cannot move there: {why}")));
        }
    }
    // A site may move again while its last move forwards: once it switches, the earlier
    // source forwards to the new node (see the moves part of the desired state).
    let active: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM site_moves WHERE site_id = $1 AND phase = 'copying'")
            .bind(site.0)
            .fetch_optional(tx.conn())
            .await?;
    if let Some(active) = active {
        return Err(refused(
            "move.in_progress",
            format!("the site is already moving (move {active}): let it finish or cancel it"),
        ));
    }
    // A dedicated address stays on the old node while it forwards, and follows the site
    // when the forwarding ends (the panel moves it then).
    // The target's room: its sites, and the sites already on their way there (a move
    // reserves its room on the target until it ends).
    let load = fetch_node_usage(tx.conn())
        .await?
        .into_iter()
        .map(|u| u.load)
        .find(|l| l.node_id == to)
        .ok_or(StoreError::NotFound { kind: "node" })?;
    load.check_fits(moved.reservation())?;
    let movement = SiteMove {
        id: SiteMoveId::generate(),
        site_id: site,
        from_node: from,
        to_node: to,
        phase: MovePhase::Copying,
        started_at: tx.now,
        switched_at: None,
        finished_at: None,
        forward_until: None,
        forward_seconds: timing.forward_seconds,
        freeze_deadline_ms: timing.freeze_deadline_ms,
        progress: MoveProgress::default(),
        error: None,
    };
    sqlx::query(concat!(
        "INSERT INTO site_moves (",
        site_move_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(movement.id.0)
    .bind(site.0)
    .bind(from.0)
    .bind(to.0)
    .bind(movement.phase.as_str())
    .bind(movement.started_at)
    .bind(movement.switched_at)
    .bind(movement.finished_at)
    .bind(movement.forward_until)
    .bind(int(movement.forward_seconds))
    .bind(int(movement.freeze_deadline_ms))
    .bind(Json(&movement.progress))
    .bind(movement.error.as_deref())
    .execute(tx.conn())
    .await?;
    bump_generation(tx, Some(from)).await?;
    bump_generation(tx, Some(to)).await?;
    Ok(movement)
}

/// Tells the nodes still forwarding the site from an earlier move that it is elsewhere now:
/// they forward straight to its node (see the moves part of the desired state).
async fn bump_earlier_forwarders(tx: &mut WriteTx, site: SiteId) -> StoreResult<()> {
    let forwarders: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT from_node FROM site_moves WHERE site_id = $1 AND phase = 'forwarding'",
    )
    .bind(site.0)
    .fetch_all(tx.conn())
    .await?;
    for node in forwarders {
        bump_generation(tx, Some(NodeId(node))).await?;
    }
    Ok(())
}

async fn fetch_site_move<'e>(
    ex: impl Executor<'e, Database = Db>,
    id: SiteMoveId,
) -> StoreResult<SiteMove> {
    let row: Option<SiteMoveRow> = sqlx::query_as(concat!(
        "SELECT ",
        site_move_columns!(),
        " FROM site_moves WHERE id = $1"
    ))
    .bind(id.0)
    .fetch_optional(ex)
    .await?;
    row.ok_or(StoreError::NotFound { kind: "site move" })?
        .try_into()
}

/// Ends a move in `phase` (done, failed, cancelled), and tells both nodes.
async fn set_move_phase(
    tx: &mut WriteTx,
    before: &SiteMove,
    phase: MovePhase,
    error: Option<&str>,
    progress: &MoveProgress,
) -> StoreResult<SiteMove> {
    let finished_at = tx.now;
    sqlx::query(
        "UPDATE site_moves SET phase = $1, finished_at = $2, error = $3, progress = $4 \
         WHERE id = $5",
    )
    .bind(phase.as_str())
    .bind(finished_at)
    .bind(error)
    .bind(Json(progress))
    .bind(before.id.0)
    .execute(tx.conn())
    .await?;
    bump_generation(tx, Some(before.from_node)).await?;
    bump_generation(tx, Some(before.to_node)).await?;
    Ok(SiteMove {
        phase,
        finished_at: Some(finished_at),
        error: error.map(str::to_owned),
        progress: progress.clone(),
        ..before.clone()
    })
}

#[async_trait]
impl MoveStore for SqlStore {
    async fn start_site_move(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        to: NodeId,
        timing: MoveTiming,
    ) -> StoreResult<SiteMove> {
        let mut tx = self.begin_write().await?;
        let movement = insert_site_move(&mut tx, site, to, timing).await?;
        let change = Change::of("site.move.start", "site", site, None, Some(&movement));
        tx.commit(ctx, change).await?;
        Ok(movement)
    }

    async fn get_site_move(&self, id: SiteMoveId) -> StoreResult<SiteMove> {
        fetch_site_move(&self.pool, id).await
    }

    async fn site_moves(&self, site: Option<SiteId>) -> StoreResult<Vec<SiteMove>> {
        let mut q = QueryBuilder::<Db>::new(concat!(
            "SELECT ",
            site_move_columns!(),
            " FROM site_moves WHERE 1 = 1"
        ));
        if let Some(site) = site {
            q.push(" AND site_id = ").push_bind(site.0);
        }
        q.push(" ORDER BY started_at DESC, id DESC");
        let rows: Vec<SiteMoveRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn forwardings_over(&self, now: DateTime<Utc>) -> StoreResult<Vec<SiteMove>> {
        let rows: Vec<SiteMoveRow> = sqlx::query_as(concat!(
            "SELECT ",
            site_move_columns!(),
            " FROM site_moves WHERE phase = 'forwarding' AND forward_until <= $1 ORDER BY started_at"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn note_site_move_progress(
        &self,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE site_moves SET progress = $1 WHERE id = $2")
            .bind(Json(progress))
            .bind(id.0)
            .execute(tx.conn())
            .await?;
        // Telemetry of work in progress, not a change: nothing to audit.
        tx.commit_bookkeeping().await
    }

    async fn switch_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> StoreResult<SiteMove> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch_site_move(tx.conn(), id).await?;
        match before.phase {
            MovePhase::Copying => {}
            // The source asks again when it did not hear the answer: the same answer.
            MovePhase::Forwarding => {
                tx.commit_all(ctx, Vec::new()).await?;
                return Ok(before);
            }
            other => {
                return Err(StoreError::Conflict {
                    message: format!("the move is {}: it cannot switch", other.as_str()),
                    errors: vec![],
                });
            }
        }
        let switched_at = tx.now;
        let forward_until = switched_at
            + chrono::Duration::seconds(i64::try_from(before.forward_seconds).unwrap_or(i64::MAX));
        sqlx::query(
            "UPDATE site_moves SET phase = 'forwarding', switched_at = $1, forward_until = $2, \
             progress = $3 WHERE id = $4",
        )
        .bind(switched_at)
        .bind(forward_until)
        .bind(Json(progress))
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        // A backup right after the move, from its new node (whose vaults now grant it).
        sqlx::query("UPDATE sites SET node_id = $1, backup_requested_at = $2 WHERE id = $3")
            .bind(before.to_node.0)
            .bind(switched_at)
            .bind(before.site_id.0)
            .execute(tx.conn())
            .await?;
        let moved = fetch::<Site>(&mut tx, before.site_id).await?;
        super::backup_targets::bump_vaults(&mut tx, &moved.backup.targets).await?;
        bump_generation(&mut tx, Some(before.from_node)).await?;
        bump_generation(&mut tx, Some(before.to_node)).await?;
        bump_earlier_forwarders(&mut tx, before.site_id).await?;
        let after = SiteMove {
            phase: MovePhase::Forwarding,
            switched_at: Some(switched_at),
            forward_until: Some(forward_until),
            progress: progress.clone(),
            ..before.clone()
        };
        let change = Change {
            action: "site.move.switch",
            target_kind: "site",
            target_id: before.site_id.to_string(),
            before: Some(serde_json::json!({"node_id": before.from_node})),
            after: Some(serde_json::json!({
                "node_id": before.to_node,
                "move_id": id,
                "forward_until": forward_until,
                "passes": progress.passes,
                "bytes_sent": progress.bytes_sent,
                "freeze_steps": progress.freeze_steps,
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(after)
    }

    async fn fail_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
        reason: &str,
        progress: &MoveProgress,
    ) -> StoreResult<SiteMove> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch_site_move(tx.conn(), id).await?;
        let undone = match before.phase {
            MovePhase::Copying => false,
            // The source never heard the switch and serves again: the site is still its.
            MovePhase::Forwarding => true,
            other => {
                tx.commit_all(ctx, Vec::new()).await?;
                return match other {
                    MovePhase::Failed => Ok(before),
                    _ => Err(StoreError::Conflict {
                        message: format!("the move is {}: it cannot fail", other.as_str()),
                        errors: vec![],
                    }),
                };
            }
        };
        let after =
            set_move_phase(&mut tx, &before, MovePhase::Failed, Some(reason), progress).await?;
        if undone {
            sqlx::query("UPDATE sites SET node_id = $1 WHERE id = $2")
                .bind(before.from_node.0)
                .bind(before.site_id.0)
                .execute(tx.conn())
                .await?;
            let moved = fetch::<Site>(&mut tx, before.site_id).await?;
            super::backup_targets::bump_vaults(&mut tx, &moved.backup.targets).await?;
            bump_earlier_forwarders(&mut tx, before.site_id).await?;
        }
        let change = Change {
            action: "site.move.fail",
            target_kind: "site",
            target_id: before.site_id.to_string(),
            before: Some(serde_json::json!({"phase": before.phase.as_str()})),
            after: Some(serde_json::json!({
                "move_id": id,
                "node_id": before.from_node,
                "reason": reason,
                "switch_undone": undone,
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(after)
    }

    async fn cancel_site_move(&self, ctx: &AuditContext, id: SiteMoveId) -> StoreResult<SiteMove> {
        let mut tx = self.begin_write().await?;
        let before = fetch_site_move(tx.conn(), id).await?;
        if before.phase != MovePhase::Copying {
            return Err(StoreError::Conflict {
                message: format!(
                    "the move is {}: only a move still copying can be cancelled",
                    before.phase.as_str()
                ),
                errors: vec![],
            });
        }
        let after = set_move_phase(
            &mut tx,
            &before,
            MovePhase::Cancelled,
            Some("cancelled by an admin"),
            &before.progress,
        )
        .await?;
        let change = Change::of(
            "site.move.cancel",
            "site",
            before.site_id,
            Some(&before),
            Some(&after),
        );
        tx.commit(ctx, change).await?;
        Ok(after)
    }

    async fn finish_site_move(&self, ctx: &AuditContext, id: SiteMoveId) -> StoreResult<SiteMove> {
        let mut tx = self.begin_write().await?;
        let before = fetch_site_move(tx.conn(), id).await?;
        if before.phase != MovePhase::Forwarding {
            return Err(StoreError::Conflict {
                message: format!(
                    "the move is {}: only a move forwarding can be finished",
                    before.phase.as_str()
                ),
                errors: vec![],
            });
        }
        let after =
            set_move_phase(&mut tx, &before, MovePhase::Done, None, &before.progress).await?;
        let took_ms = after
            .finished_at
            .map(|at| (at - before.started_at).num_milliseconds());
        let change = Change {
            action: "site.move.finish",
            target_kind: "site",
            target_id: before.site_id.to_string(),
            before: Some(serde_json::json!({"phase": before.phase.as_str()})),
            after: Some(serde_json::json!({
                "move_id": id,
                "node_id": before.to_node,
                "freeze_ms": before.progress.freeze_ms,
                "passes": before.progress.passes,
                "bytes_sent": before.progress.bytes_sent,
                "switched_at": before.switched_at,
                "took_ms": took_ms,
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(after)
    }
}
