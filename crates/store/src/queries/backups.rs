//! Backups: the sites' sealed keys, the runs nodes report, the restores, and the backups
//! part of a node's document.

use alveole_model::backup::{BackupRun, Restore, RestoreState, TargetPlace};
use alveole_model::{BackupTargetId, FieldError, NodeId, RestoreId, SiteId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::Db;
use super::records::fetch;
use super::{SqlStore, bump_generation, int};
use crate::areas::backups::{BackupStore, RestoreRequest};
use crate::rows::{BackupRunRow, RestoreRow};
use crate::{AuditContext, Change, StoreError, StoreResult};

const RUN_COLUMNS: &str = "site_id, target_id, node_id, started_at, duration_ms, snapshot_id, \
     files, bytes_added, bytes_total, error";
const RESTORE_COLUMNS: &str = "id, site_id, source_site_id, target_id, node_id, snapshot, paths, \
     state, bytes_done, bytes_total, snapshot_id, error, requested_by, requested_at, finished_at";

/// Records what a node said of a backup.
pub(super) async fn insert_run(
    conn: &mut <Db as sqlx::Database>::Connection,
    run: &BackupRun,
) -> StoreResult<()> {
    let mut q =
        QueryBuilder::<Db>::new(format!("INSERT INTO backup_runs ({RUN_COLUMNS}) VALUES ("));
    q.separated(", ")
        .push_bind(run.site_id.0)
        .push_bind(run.target_id.0)
        .push_bind(run.node_id.0)
        .push_bind(run.started_at)
        .push_bind(int(run.duration_ms))
        .push_bind(run.snapshot_id.clone())
        .push_bind(int(run.files))
        .push_bind(int(run.bytes_added))
        .push_bind(int(run.bytes_total))
        .push_bind(run.error.clone());
    q.push(")");
    q.build().execute(conn).await?;
    Ok(())
}

/// The restores running on `node`, with their sources' sealed keys.
pub(super) async fn running_restores<'e, E>(ex: E, node: NodeId) -> StoreResult<Vec<Restore>>
where
    E: Executor<'e, Database = Db>,
{
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {RESTORE_COLUMNS} FROM restores WHERE state = 'running' AND node_id = "
    ));
    q.push_bind(node.0).push(" ORDER BY requested_at, id");
    super::fetch_all::<RestoreRow, Restore>(ex, q).await
}

async fn restore_by_id(
    conn: &mut <Db as sqlx::Database>::Connection,
    id: RestoreId,
) -> StoreResult<Restore> {
    super::fetch_by_id::<RestoreRow, Restore>(
        conn,
        "restore",
        &format!("SELECT {RESTORE_COLUMNS} FROM restores"),
        id.0,
    )
    .await
}

/// Moves a restore as its node reports it: its progress, and once it ended, its outcome
/// (an audit change).
pub(super) async fn advance_restore(
    conn: &mut <Db as sqlx::Database>::Connection,
    node: NodeId,
    progress: &alveole_model::backup::RestoreProgress,
    now: DateTime<Utc>,
) -> StoreResult<Option<Change>> {
    use alveole_model::backup::RestoreEnd;
    let (state, snapshot, error) = match &progress.finished {
        None => (RestoreState::Running, None, None),
        Some(RestoreEnd::Restored { snapshot_id }) => {
            (RestoreState::Restored, Some(snapshot_id.clone()), None)
        }
        Some(RestoreEnd::Failed { error }) => (RestoreState::Failed, None, Some(error.clone())),
    };
    let finished = (state != RestoreState::Running).then_some(now);
    let updated = sqlx::query(
        "UPDATE restores SET bytes_done = $1, bytes_total = $2, state = $3, \
         snapshot_id = COALESCE($4, snapshot_id), error = $5, finished_at = $6 \
         WHERE id = $7 AND node_id = $8 AND state = 'running'",
    )
    .bind(int(progress.bytes_done))
    .bind(int(progress.bytes_total))
    .bind(state.as_str())
    .bind(snapshot)
    .bind(error)
    .bind(finished)
    .bind(progress.id.0)
    .bind(node.0)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 || state == RestoreState::Running {
        return Ok(None);
    }
    let restore = restore_by_id(&mut *conn, progress.id).await?;
    let action = match state {
        RestoreState::Restored => "restore.finish",
        _ => "restore.fail",
    };
    // Its node no longer restores it.
    sqlx::query("UPDATE nodes SET desired_generation = desired_generation + 1 WHERE id = $1")
        .bind(node.0)
        .execute(&mut *conn)
        .await?;
    Ok(Some(Change::of(
        action,
        "site",
        restore.site_id,
        None,
        Some(&restore),
    )))
}

#[async_trait]
impl BackupStore for SqlStore {
    async fn request_backup(&self, ctx: &AuditContext, site: SiteId) -> StoreResult<DateTime<Utc>> {
        let mut tx = self.begin_write().await?;
        let found = fetch::<alveole_model::Site>(&mut tx, site).await?;
        if !found.backup.is_on() {
            return Err(StoreError::Conflict {
                message: "the site has no backup target".into(),
                errors: vec![FieldError::new(
                    "backup.targets",
                    "backup.off",
                    "choose where the site's backups go first",
                )],
            });
        }
        let now = tx.now;
        sqlx::query("UPDATE sites SET backup_requested_at = $1 WHERE id = $2")
            .bind(now)
            .bind(site.0)
            .execute(tx.conn())
            .await?;
        bump_generation(&mut tx, found.node_id).await?;
        let change = Change {
            action: "backup.request",
            target_kind: "site",
            target_id: site.to_string(),
            before: None,
            after: Some(serde_json::json!({"requested_at": now})),
        };
        tx.commit(ctx, change).await?;
        Ok(now)
    }

    async fn backup_requested_at(&self, site: SiteId) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(
            sqlx::query_scalar("SELECT backup_requested_at FROM sites WHERE id = $1")
                .bind(site.0)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    async fn backup_runs(&self, site: SiteId, limit: u32) -> StoreResult<Vec<BackupRun>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {RUN_COLUMNS} FROM backup_runs WHERE site_id = "
        ));
        q.push_bind(site.0)
            .push(" ORDER BY started_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        super::fetch_all::<BackupRunRow, BackupRun>(&self.pool, q).await
    }

    async fn latest_snapshots(&self, site: Option<SiteId>) -> StoreResult<Vec<BackupRun>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {RUN_COLUMNS} FROM backup_runs r WHERE snapshot_id IS NOT NULL \
             AND started_at = (SELECT MAX(started_at) FROM backup_runs l \
                               WHERE l.site_id = r.site_id AND l.target_id = r.target_id \
                                 AND l.snapshot_id IS NOT NULL)"
        ));
        if let Some(site) = site {
            q.push(" AND site_id = ").push_bind(site.0);
        }
        q.push(" ORDER BY site_id, target_id");
        super::fetch_all::<BackupRunRow, BackupRun>(&self.pool, q).await
    }

    async fn target_places(&self, targets: &[BackupTargetId]) -> StoreResult<Vec<TargetPlace>> {
        let mut conn = self.pool.acquire().await?;
        super::backup_targets::target_places(&mut conn, targets).await
    }

    async fn create_restore(
        &self,
        ctx: &AuditContext,
        request: RestoreRequest,
    ) -> StoreResult<Restore> {
        let mut tx = self.begin_write().await?;
        let restore = insert_restore(&mut tx, &ctx.actor, request).await?;
        let change = Change::of(
            "restore.start",
            "site",
            restore.site_id,
            None,
            Some(&restore),
        );
        tx.commit(ctx, change).await?;
        Ok(restore)
    }

    async fn fail_running_restore(
        &self,
        ctx: &AuditContext,
        id: RestoreId,
        reason: &str,
    ) -> StoreResult<Option<Restore>> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        if !super::drills::end_running(tx.conn(), "restores", id.0, reason, now).await? {
            return Ok(None);
        }
        let restore = restore_by_id(tx.conn(), id).await?;
        bump_generation(&mut tx, Some(restore.node_id)).await?;
        super::backup_targets::bump_vaults(&mut tx, &[restore.target_id]).await?;
        let change = Change::of(
            "restore.fail",
            "site",
            restore.site_id,
            None,
            Some(&restore),
        );
        tx.commit(ctx, change).await?;
        Ok(Some(restore))
    }

    async fn restore(&self, id: RestoreId) -> StoreResult<Restore> {
        super::fetch_by_id::<RestoreRow, Restore>(
            &self.pool,
            "restore",
            &format!("SELECT {RESTORE_COLUMNS} FROM restores"),
            id.0,
        )
        .await
    }

    async fn restores_into(&self, site: SiteId, limit: u32) -> StoreResult<Vec<Restore>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {RESTORE_COLUMNS} FROM restores WHERE site_id = "
        ));
        q.push_bind(site.0)
            .push(" ORDER BY requested_at DESC LIMIT ")
            .push_bind(i64::from(limit));
        super::fetch_all::<RestoreRow, Restore>(&self.pool, q).await
    }

    async fn sites_backup_places(&self) -> StoreResult<Vec<(SiteId, TargetPlace)>> {
        let rows: Vec<(Uuid, Uuid, String, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
            "SELECT st.site_id, t.id, t.name, t.node_id, COALESCE(t.provider_id, n.provider_id) \
             FROM site_backup_targets st JOIN backup_targets t ON t.id = st.target_id \
             LEFT JOIN nodes n ON n.id = t.node_id ORDER BY st.site_id, st.position",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(site, target, name, node, provider)| {
                Some((
                    SiteId(site),
                    TargetPlace {
                        id: BackupTargetId(target),
                        name,
                        provider_id: alveole_model::ProviderId(provider?),
                        node_id: node.map(NodeId),
                    },
                ))
            })
            .collect())
    }

    async fn oldest_backup_runs(
        &self,
    ) -> StoreResult<std::collections::BTreeMap<SiteId, DateTime<Utc>>> {
        let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT r.site_id, r.started_at FROM backup_runs r WHERE r.started_at = \
             (SELECT l.started_at FROM backup_runs l WHERE l.site_id = r.site_id \
              ORDER BY l.started_at LIMIT 1)",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(site, at)| (SiteId(site), at))
            .collect())
    }

    async fn remove_old_backup_runs(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query(
            "DELETE FROM backup_runs WHERE started_at < $1 AND NOT (snapshot_id IS NOT NULL \
             AND started_at = (SELECT MAX(started_at) FROM backup_runs l \
                               WHERE l.site_id = backup_runs.site_id \
                                 AND l.target_id = backup_runs.target_id \
                                 AND l.snapshot_id IS NOT NULL))",
        )
        .bind(before)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit_bookkeeping().await?;
        Ok(removed)
    }
}

/// The backups part of a node's document: its sites' targets and keys, backups asked for,
/// the restores it carries out, and (for a vault) the repositories it keeps and who writes
/// them.
pub(super) async fn node_backups(
    tx: &mut sqlx::Transaction<'static, Db>,
    node: NodeId,
    sites: &[alveole_model::Site],
) -> StoreResult<crate::NodeBackups> {
    let mut backups = crate::NodeBackups {
        restores: running_restores(&mut **tx, node).await?,
        ..Default::default()
    };
    let mut wanted: Vec<(SiteId, BackupTargetId)> = sites
        .iter()
        .flat_map(|s| s.backup.targets.iter().map(|t| (s.id, *t)))
        .collect();
    wanted.extend(
        backups
            .restores
            .iter()
            .map(|r| (r.source_site_id, r.target_id)),
    );
    for drill in super::drills::running_drills(&mut **tx, node).await? {
        use super::records::Audited;
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM sites WHERE id = ",
            <alveole_model::Site as Audited>::COLUMNS
        ));
        q.push_bind(drill.site_id.0);
        let site: Vec<alveole_model::Site> =
            super::fetch_all::<crate::rows::SiteRow, _>(&mut **tx, q).await?;
        if let Some(site) = site.into_iter().next() {
            wanted.push((drill.site_id, drill.target_id));
            backups.drills.push((drill, site));
        }
    }
    for (site, target) in wanted {
        add_key(tx, &mut backups.keys, site).await?;
        if let std::collections::btree_map::Entry::Vacant(entry) = backups.targets.entry(target)
            && let Some(endpoint) = endpoint_of(tx, target).await?
        {
            entry.insert(endpoint);
        }
    }
    for site in sites.iter().filter(|s| s.backup.is_on()) {
        let asked: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT backup_requested_at FROM sites WHERE id = $1")
                .bind(site.id.0)
                .fetch_optional(&mut **tx)
                .await?
                .flatten();
        if let Some(asked) = asked {
            backups.requested.insert(site.id, asked);
        }
    }
    backups.vault = vault_of(tx, node).await?;
    // A vault prunes the repositories it keeps for sites still backing up there: it needs
    // their keys.
    let kept: Vec<SiteId> = backups
        .vault
        .iter()
        .flat_map(|v| &v.repositories)
        .filter(|r| r.retention.is_some())
        .filter_map(|r| r.name.parse().ok())
        .collect();
    for site in kept {
        add_key(tx, &mut backups.keys, site).await?;
    }
    Ok(backups)
}

/// Adds the site's sealed key to `keys`, unless it is there (or the site has none yet).
async fn add_key(
    tx: &mut sqlx::Transaction<'static, Db>,
    keys: &mut std::collections::BTreeMap<SiteId, String>,
    site: SiteId,
) -> StoreResult<()> {
    if let std::collections::btree_map::Entry::Vacant(entry) = keys.entry(site) {
        let sealed: Option<String> =
            sqlx::query_scalar("SELECT sealed FROM backup_keys WHERE site_id = $1")
                .bind(site.0)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(sealed) = sealed {
            entry.insert(sealed);
        }
    }
    Ok(())
}

/// A target as nodes reach it: a vault at the peer address its agent last reported.
async fn endpoint_of(
    tx: &mut sqlx::Transaction<'static, Db>,
    target: BackupTargetId,
) -> StoreResult<Option<alveole_model::backup::TargetEndpoint>> {
    use alveole_model::backup::{Endpoint, TargetEndpoint};
    let row: Option<(String, Option<Uuid>, Option<String>)> =
        sqlx::query_as("SELECT name, node_id, url FROM backup_targets WHERE id = $1")
            .bind(target.0)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((name, node, url)) = row else {
        return Ok(None);
    };
    let endpoint = match (node, url) {
        (Some(node), _) => {
            let report: Option<Json<alveole_model::NodeReport>> =
                sqlx::query_scalar("SELECT report FROM node_status WHERE node_id = $1")
                    .bind(node)
                    .fetch_optional(&mut **tx)
                    .await?;
            Endpoint::Vault {
                node_id: NodeId(node),
                peer: report.and_then(|r| r.0.endpoints).and_then(|e| e.peer),
            }
        }
        (None, Some(url)) => Endpoint::Rest { url },
        (None, None) => return Ok(None),
    };
    Ok(Some(TargetEndpoint {
        target_id: target,
        name,
        endpoint,
    }))
}

/// What a vault node keeps: the repository of every site that backs up to one of its
/// targets, written by the site's node (and by a node restoring from it).
async fn vault_of(
    tx: &mut sqlx::Transaction<'static, Db>,
    node: NodeId,
) -> StoreResult<Option<alveole_model::backup::VaultSpec>> {
    use alveole_model::backup::{VaultRepository, VaultSpec};
    use std::collections::{BTreeMap, BTreeSet};
    let is_vault: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM backup_targets WHERE node_id = $1 LIMIT 1")
            .bind(node.0)
            .fetch_optional(&mut **tx)
            .await?;
    if is_vault.is_none() {
        return Ok(None);
    }
    let mut writers: BTreeMap<Uuid, BTreeSet<NodeId>> = BTreeMap::new();
    let mut retention: BTreeMap<Uuid, alveole_model::backup::Retention> = BTreeMap::new();
    let sites: Vec<(Uuid, Option<Uuid>, Json<alveole_model::BackupPolicy>)> = sqlx::query_as(
        "SELECT s.id, s.node_id, s.backup_policy FROM site_backup_targets st \
         JOIN backup_targets t ON t.id = st.target_id JOIN sites s ON s.id = st.site_id \
         WHERE t.node_id = $1",
    )
    .bind(node.0)
    .fetch_all(&mut **tx)
    .await?;
    for (site, on, policy) in sites {
        writers.entry(site).or_default().extend(on.map(NodeId));
        retention.insert(site, policy.0.retention);
    }
    let restoring: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT r.source_site_id, r.node_id FROM restores r \
         JOIN backup_targets t ON t.id = r.target_id \
         WHERE t.node_id = $1 AND r.state = 'running'",
    )
    .bind(node.0)
    .fetch_all(&mut **tx)
    .await?;
    // A node drilling a copy reads it meanwhile.
    let drilling: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT d.site_id, d.node_id FROM drills d JOIN backup_targets t ON t.id = d.target_id \
         WHERE t.node_id = $1 AND d.state = 'running' AND d.node_id IS NOT NULL",
    )
    .bind(node.0)
    .fetch_all(&mut **tx)
    .await?;
    for (site, on) in restoring.into_iter().chain(drilling) {
        writers.entry(site).or_default().insert(NodeId(on));
    }
    Ok(Some(VaultSpec {
        repositories: writers
            .into_iter()
            .map(|(site, nodes)| VaultRepository {
                name: site.to_string(),
                writers: nodes.into_iter().collect(),
                // The service opens the key for the vault's agent.
                password: None,
                retention: retention.get(&site).copied(),
            })
            .collect(),
    }))
}

/// Records a restore into a site on its node, in `tx`, and tells that node and the vault
/// (not yet audited: the caller commits with its `restore.start`).
pub(super) async fn insert_restore(
    tx: &mut super::WriteTx,
    actor: &str,
    request: RestoreRequest,
) -> StoreResult<Restore> {
    let site = fetch::<alveole_model::Site>(tx, request.site_id).await?;
    let node = site.node_id.ok_or_else(|| StoreError::Conflict {
        message: "the site has no node to restore on".into(),
        errors: vec![],
    })?;
    let running: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM restores WHERE site_id = $1 AND state = 'running'")
            .bind(request.site_id.0)
            .fetch_optional(tx.conn())
            .await?;
    if running.is_some() {
        return Err(StoreError::Conflict {
            message: "a restore into this site is under way: wait for it to end".into(),
            errors: vec![],
        });
    }
    let restore = Restore {
        id: RestoreId::generate(),
        site_id: request.site_id,
        source_site_id: request.source_site_id,
        target_id: request.target_id,
        node_id: node,
        snapshot: request.snapshot,
        paths: request.paths,
        state: RestoreState::Running,
        bytes_done: 0,
        bytes_total: 0,
        snapshot_id: None,
        error: None,
        requested_by: actor.to_owned(),
        requested_at: tx.now,
        finished_at: None,
    };
    let mut q =
        QueryBuilder::<Db>::new(format!("INSERT INTO restores ({RESTORE_COLUMNS}) VALUES ("));
    q.separated(", ")
        .push_bind(restore.id.0)
        .push_bind(restore.site_id.0)
        .push_bind(restore.source_site_id.0)
        .push_bind(restore.target_id.0)
        .push_bind(restore.node_id.0)
        .push_bind(restore.snapshot.clone())
        .push_bind(Json(restore.paths.clone()))
        .push_bind(restore.state.as_str())
        .push_bind(0_i64)
        .push_bind(0_i64)
        .push_bind(None::<String>)
        .push_bind(None::<String>)
        .push_bind(restore.requested_by.clone())
        .push_bind(restore.requested_at)
        .push_bind(None::<DateTime<Utc>>);
    q.push(")");
    q.build().execute(tx.conn()).await?;
    bump_generation(tx, Some(node)).await?;
    super::backup_targets::bump_vaults(tx, &[restore.target_id]).await?;
    Ok(restore)
}
