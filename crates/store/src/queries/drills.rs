//! Restore drills, the copies' latest checks and the backup alerts: recorded as nodes and
//! vaults report them, each change with its audit event.

use alveole_model::backup::{CopyCheck, Drill, DrillEnd, DrillPhase, DrillProgress, DrillState};
use alveole_model::{AgentEvent, AgentEventKind, DrillId, NodeId, SiteId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::Db;
use super::{SqlStore, bump_generation, int};
use crate::areas::drills::{AlertKind, BackupAlert, DrillRequest, DrillStore};
use crate::rows::DrillRow;
use crate::{AuditContext, Change, StoreError, StoreResult};

const DRILL_COLUMNS: &str = "id, site_id, target_id, node_id, state, phase, bytes_done, \
     bytes_total, snapshot_id, snapshot_time, files_verified, restore_ms, answer_status, error, \
     requested_by, requested_at, finished_at";

/// The drills running on `node`.
pub(super) async fn running_drills<'e, E>(ex: E, node: NodeId) -> StoreResult<Vec<Drill>>
where
    E: Executor<'e, Database = Db>,
{
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {DRILL_COLUMNS} FROM drills WHERE state = 'running' AND node_id = "
    ));
    q.push_bind(node.0).push(" ORDER BY requested_at, id");
    super::fetch_all::<DrillRow, Drill>(ex, q).await
}

async fn drill_by_id(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: DrillId,
) -> StoreResult<Drill> {
    super::fetch_by_id::<DrillRow, Drill>(
        conn,
        "drill",
        &format!("SELECT {DRILL_COLUMNS} FROM drills"),
        id.0,
    )
    .await
}

/// Ends a row of `table` (`restores`, `drills`) that is still running as failed for `reason`:
/// whether it was running.
pub(super) async fn end_running(
    conn: &mut <Db as sqlx::Database>::Connection,
    table: &'static str,
    id: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut q = QueryBuilder::<Db>::new(format!("UPDATE {table} SET state = 'failed', error = "));
    q.push_bind(reason)
        .push(", finished_at = ")
        .push_bind(now)
        .push(" WHERE state = 'running' AND id = ")
        .push_bind(id);
    let updated = q.build().execute(conn).await?.rows_affected();
    Ok(updated == 1)
}

/// The vault node of a target, if it is a vault.
async fn vault_node(
    conn: &mut <Db as sqlx::Database>::Connection,
    target: alveole_model::BackupTargetId,
) -> StoreResult<Option<NodeId>> {
    let node: Option<Option<Uuid>> =
        sqlx::query_scalar("SELECT node_id FROM backup_targets WHERE id = $1")
            .bind(target.0)
            .fetch_optional(conn)
            .await?;
    Ok(node.flatten().map(NodeId))
}

/// Raises (with `Some(reason)`) or clears an alert: its audit change, when it changed.
pub(super) async fn set_alert(
    conn: &mut <Db as sqlx::Database>::Connection,
    site: SiteId,
    kind: AlertKind,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<Option<Change>> {
    let raised: Option<String> =
        sqlx::query_scalar("SELECT reason FROM backup_alerts WHERE site_id = $1 AND kind = $2")
            .bind(site.0)
            .bind(kind.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let action = match (reason, raised.as_deref()) {
        (Some(new), Some(old)) if new == old => return Ok(None),
        (None, None) => return Ok(None),
        (Some(reason), _) => {
            sqlx::query(
                "INSERT INTO backup_alerts (site_id, kind, reason, since) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (site_id, kind) DO UPDATE SET reason = excluded.reason",
            )
            .bind(site.0)
            .bind(kind.as_str())
            .bind(reason)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            "backup.alert"
        }
        (None, Some(_)) => {
            sqlx::query("DELETE FROM backup_alerts WHERE site_id = $1 AND kind = $2")
                .bind(site.0)
                .bind(kind.as_str())
                .execute(&mut *conn)
                .await?;
            "backup.alert_cleared"
        }
    };
    Ok(Some(Change {
        action,
        target_kind: "site",
        target_id: site.to_string(),
        before: raised.map(|r| serde_json::json!({"kind": kind, "reason": r})),
        after: reason.map(|r| serde_json::json!({"kind": kind, "reason": r})),
    }))
}

/// Moves a drill as its node reports it; once it ended, its audit change and the site's
/// drill alert raised or cleared.
pub(super) async fn advance_drill(
    conn: &mut <Db as sqlx::Database>::Connection,
    node: NodeId,
    progress: &DrillProgress,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Change>> {
    let mut q = QueryBuilder::<Db>::new("UPDATE drills SET ");
    let mut set = q.separated(", ");
    set.push("phase = ")
        .push_bind_unseparated(progress.phase.as_str());
    set.push("bytes_done = ")
        .push_bind_unseparated(int(progress.bytes_done));
    set.push("bytes_total = ")
        .push_bind_unseparated(int(progress.bytes_total));
    let state = match &progress.finished {
        None => DrillState::Running,
        Some(DrillEnd::Passed {
            snapshot_id,
            snapshot_time,
            files_verified,
            restore_ms,
            answer_status,
        }) => {
            set.push("snapshot_id = ")
                .push_bind_unseparated(snapshot_id.clone());
            set.push("snapshot_time = ")
                .push_bind_unseparated(*snapshot_time);
            set.push("files_verified = ")
                .push_bind_unseparated(int(*files_verified));
            set.push("restore_ms = ")
                .push_bind_unseparated(int(*restore_ms));
            set.push("answer_status = ")
                .push_bind_unseparated(i64::from(*answer_status));
            DrillState::Passed
        }
        Some(DrillEnd::Failed {
            error,
            snapshot_id,
            snapshot_time,
        }) => {
            set.push("snapshot_id = ")
                .push_bind_unseparated(snapshot_id.clone());
            set.push("snapshot_time = ")
                .push_bind_unseparated(*snapshot_time);
            set.push("error = ").push_bind_unseparated(error.clone());
            DrillState::Failed
        }
    };
    set.push("state = ").push_bind_unseparated(state.as_str());
    if state != DrillState::Running {
        set.push("finished_at = ").push_bind_unseparated(now);
    }
    q.push(" WHERE id = ")
        .push_bind(progress.id.0)
        .push(" AND node_id = ")
        .push_bind(node.0)
        .push(" AND state = 'running'");
    let updated = q.build().execute(&mut *conn).await?.rows_affected();
    if updated == 0 || state == DrillState::Running {
        return Ok(Vec::new());
    }
    let drill = drill_by_id(&mut *conn, progress.id).await?;
    // Its node no longer runs it, and the vault no longer lets it read.
    for node in [Some(node), vault_node(&mut *conn, drill.target_id).await?]
        .into_iter()
        .flatten()
    {
        sqlx::query("UPDATE nodes SET desired_generation = desired_generation + 1 WHERE id = $1")
            .bind(node.0)
            .execute(&mut *conn)
            .await?;
    }
    ended(conn, &drill, now).await
}

/// The audit changes of a drill that ended: its own, and its site's drill alert.
async fn ended(
    conn: &mut <Db as sqlx::Database>::Connection,
    drill: &Drill,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Change>> {
    let action = match drill.state {
        DrillState::Passed => "drill.pass",
        _ => "drill.fail",
    };
    let mut changes = vec![Change::of(action, "site", drill.site_id, None, Some(drill))];
    let reason = (drill.state == DrillState::Failed).then(|| {
        format!(
            "the drill of {} failed: {}",
            drill.requested_at.format("%Y-%m-%d %H:%M UTC"),
            drill.error.as_deref().unwrap_or("no reason given")
        )
    });
    changes.extend(
        set_alert(
            conn,
            drill.site_id,
            AlertKind::Drill,
            reason.as_deref(),
            now,
        )
        .await?,
    );
    Ok(changes)
}

/// Keeps what a vault's check found of a site's copy (one for each target at the vault),
/// and raises or clears the site's damage alert.
pub(super) async fn record_check(
    conn: &mut <Db as sqlx::Database>::Connection,
    vault: NodeId,
    event: &AgentEvent,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Change>> {
    let intact = match event.kind {
        AgentEventKind::VaultChecked => true,
        AgentEventKind::VaultDamaged => false,
        _ => return Ok(Vec::new()),
    };
    let Some(site) = event.site_id else {
        return Ok(Vec::new());
    };
    let broken = event
        .damage
        .as_ref()
        .map(|d| d.snapshots.clone())
        .unwrap_or_default();
    let targets: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM backup_targets WHERE node_id = $1")
        .bind(vault.0)
        .fetch_all(&mut *conn)
        .await?;
    for target in &targets {
        sqlx::query(
            "INSERT INTO copy_checks (site_id, target_id, checked_at, intact, broken_snapshots, \
             detail) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (site_id, target_id) DO UPDATE \
             SET checked_at = excluded.checked_at, intact = excluded.intact, \
             broken_snapshots = excluded.broken_snapshots, detail = excluded.detail",
        )
        .bind(site.0)
        .bind(target)
        .bind(event.at)
        .bind(intact)
        .bind(Json(&broken))
        .bind(&event.detail)
        .execute(&mut *conn)
        .await?;
    }
    // The site may be gone (its backups outlive it): no alert then.
    let exists: Option<Uuid> = sqlx::query_scalar("SELECT id FROM sites WHERE id = $1")
        .bind(site.0)
        .fetch_optional(&mut *conn)
        .await?;
    if targets.is_empty() || exists.is_none() {
        return Ok(Vec::new());
    }
    let damaged: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM copy_checks WHERE site_id = $1 AND NOT intact ORDER BY checked_at",
    )
    .bind(site.0)
    .fetch_all(&mut *conn)
    .await?;
    let reason =
        (!damaged.is_empty()).then(|| format!("a copy is damaged: {}", damaged.join("; ")));
    Ok(
        set_alert(conn, site, AlertKind::Damage, reason.as_deref(), now)
            .await?
            .into_iter()
            .collect(),
    )
}

#[async_trait]
impl DrillStore for SqlStore {
    async fn create_drill(&self, ctx: &AuditContext, request: DrillRequest) -> StoreResult<Drill> {
        let mut tx = self.begin_write().await?;
        let running: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM drills WHERE site_id = $1 AND state = 'running'")
                .bind(request.site_id.0)
                .fetch_optional(tx.conn())
                .await?;
        if running.is_some() {
            return Err(StoreError::Conflict {
                message: "a drill of this site is under way: wait for it to end".into(),
                errors: vec![],
            });
        }
        let refused = request.node_id.is_none();
        let drill = Drill {
            id: DrillId::generate(),
            site_id: request.site_id,
            target_id: request.target_id,
            node_id: request.node_id,
            state: if refused {
                DrillState::Failed
            } else {
                DrillState::Running
            },
            phase: if refused {
                DrillPhase::Waiting
            } else {
                DrillPhase::Restoring
            },
            bytes_done: 0,
            bytes_total: 0,
            snapshot_id: None,
            snapshot_time: None,
            files_verified: 0,
            restore_ms: None,
            answer_status: None,
            error: request.refused.clone(),
            requested_by: ctx.actor.clone(),
            requested_at: tx.now,
            finished_at: refused.then_some(tx.now),
        };
        let mut q =
            QueryBuilder::<Db>::new(format!("INSERT INTO drills ({DRILL_COLUMNS}) VALUES ("));
        q.separated(", ")
            .push_bind(drill.id.0)
            .push_bind(drill.site_id.0)
            .push_bind(drill.target_id.0)
            .push_bind(drill.node_id.map(|n| n.0))
            .push_bind(drill.state.as_str())
            .push_bind(drill.phase.as_str())
            .push_bind(0_i64)
            .push_bind(0_i64)
            .push_bind(None::<String>)
            .push_bind(None::<DateTime<Utc>>)
            .push_bind(0_i64)
            .push_bind(None::<i64>)
            .push_bind(None::<i64>)
            .push_bind(drill.error.clone())
            .push_bind(drill.requested_by.clone())
            .push_bind(drill.requested_at)
            .push_bind(drill.finished_at);
        q.push(")");
        q.build().execute(tx.conn()).await?;
        let mut changes = vec![Change::of(
            "drill.start",
            "site",
            drill.site_id,
            None,
            Some(&drill),
        )];
        if refused {
            let now = tx.now;
            changes.extend(ended(tx.conn(), &drill, now).await?);
        } else {
            bump_generation(&mut tx, drill.node_id).await?;
            super::backup_targets::bump_vaults(&mut tx, &[drill.target_id]).await?;
        }
        tx.commit_all(ctx, changes).await?;
        Ok(drill)
    }

    async fn fail_running_drill(
        &self,
        ctx: &AuditContext,
        id: DrillId,
        reason: &str,
    ) -> StoreResult<Option<Drill>> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        if !end_running(tx.conn(), "drills", id.0, reason, now).await? {
            return Ok(None);
        }
        let drill = drill_by_id(tx.conn(), id).await?;
        bump_generation(&mut tx, drill.node_id).await?;
        super::backup_targets::bump_vaults(&mut tx, &[drill.target_id]).await?;
        let changes = ended(tx.conn(), &drill, now).await?;
        tx.commit_all(ctx, changes).await?;
        Ok(Some(drill))
    }

    async fn drill(&self, id: DrillId) -> StoreResult<Drill> {
        let mut conn = self.pool.acquire().await?;
        drill_by_id(&mut conn, id).await
    }

    async fn drills_of(&self, site: SiteId, limit: u32) -> StoreResult<Vec<Drill>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {DRILL_COLUMNS} FROM drills WHERE site_id = "
        ));
        q.push_bind(site.0)
            .push(" ORDER BY requested_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        super::fetch_all::<DrillRow, Drill>(&self.pool, q).await
    }

    async fn drills_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Drill>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {DRILL_COLUMNS} FROM drills d WHERE (state = 'passed' AND requested_at >= "
        ));
        q.push_bind(since).push(
            ") OR requested_at = (SELECT MAX(l.requested_at) FROM drills l \
             WHERE l.site_id = d.site_id AND l.target_id = d.target_id) \
             ORDER BY site_id, requested_at",
        );
        super::fetch_all::<DrillRow, Drill>(&self.pool, q).await
    }

    async fn copy_checks(&self, site: Option<SiteId>) -> StoreResult<Vec<CopyCheck>> {
        type Row = (
            Uuid,
            Uuid,
            DateTime<Utc>,
            bool,
            Json<Vec<String>>,
            String,
            Option<DateTime<Utc>>,
        );
        let mut q = QueryBuilder::<Db>::new(
            "SELECT c.site_id, c.target_id, c.checked_at, c.intact, c.broken_snapshots, c.detail, \
             (SELECT r.started_at FROM backup_runs r WHERE r.site_id = c.site_id \
              AND r.target_id = c.target_id AND r.snapshot_id IS NOT NULL \
              AND r.started_at <= c.checked_at ORDER BY r.started_at DESC LIMIT 1) \
             FROM copy_checks c",
        );
        if let Some(site) = site {
            q.push(" WHERE c.site_id = ").push_bind(site.0);
        }
        q.push(" ORDER BY c.site_id, c.target_id");
        let rows: Vec<Row> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(
                |(site, target, checked_at, intact, broken, detail, newest_before)| CopyCheck {
                    site_id: SiteId(site),
                    target_id: alveole_model::BackupTargetId(target),
                    checked_at,
                    intact,
                    broken_snapshots: broken.0,
                    detail,
                    newest_before,
                },
            )
            .collect())
    }

    async fn backup_alerts(&self, site: Option<SiteId>) -> StoreResult<Vec<BackupAlert>> {
        let mut q =
            QueryBuilder::<Db>::new("SELECT site_id, kind, reason, since FROM backup_alerts");
        if let Some(site) = site {
            q.push(" WHERE site_id = ").push_bind(site.0);
        }
        q.push(" ORDER BY site_id, kind");
        let rows: Vec<(Uuid, String, String, DateTime<Utc>)> =
            q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(site, kind, reason, since)| {
                Ok(BackupAlert {
                    site_id: SiteId(site),
                    kind: AlertKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                        kind: "backup_alert",
                        id: site.to_string(),
                        reason: format!("unknown kind {kind}"),
                    })?,
                    reason,
                    since,
                })
            })
            .collect()
    }

    async fn raise_alert(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        kind: AlertKind,
        reason: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        match set_alert(tx.conn(), site, kind, Some(reason), now).await? {
            Some(change) => {
                tx.commit(ctx, change).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn clear_alert(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        kind: AlertKind,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        match set_alert(tx.conn(), site, kind, None, now).await? {
            Some(change) => {
                tx.commit(ctx, change).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
