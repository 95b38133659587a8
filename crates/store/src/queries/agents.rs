//! Node agents: enrolment and its keys, each node's desired state (read in one transaction
//! with its generation), and what nodes report.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use alveole_model::{
    AgentEndpoints, InputFilter, Node, NodeId, NodeInventory, NodeReport, Prefix, Site, SiteId,
    SiteMove, SitePhase,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Transaction};
use uuid::Uuid;

use super::super::Db;
use super::addresses::parse_address;
use super::records::{Audited, fetch};
use super::sites::fetch_volume_purges;
use super::{SqlStore, count, fetch_all};
use crate::rows::{SiteMoveRow, SiteRow, site_move_columns};
use crate::{AgentStore, AuditContext, Change, NodeDesired, NodeStatus, StoreError, StoreResult};

/// The audit changes for the events of an agent's report that the panel has not recorded
/// yet (an event resent after a lost answer is recorded once), and the node's counter moved.
async fn agent_event_changes(
    conn: &mut <Db as sqlx::Database>::Connection,
    node: NodeId,
    report: &NodeReport,
) -> StoreResult<Vec<Change>> {
    let seen: i64 = sqlx::query_scalar("SELECT agent_event_seq FROM nodes WHERE id = $1")
        .bind(node.0)
        .fetch_one(&mut *conn)
        .await?;
    let seen = u64::try_from(seen).unwrap_or(0);
    let mut last = seen;
    let mut changes = Vec::new();
    for event in &report.events {
        if event.seq <= last {
            continue; // recorded already, or repeated within the report
        }
        last = event.seq;
        if let (Some(site), Some(outcome)) = (event.site_id, &event.backup) {
            super::backups::insert_run(&mut *conn, &run_of(site, node, outcome)).await?;
        }
        let checked = super::drills::record_check(&mut *conn, node, event, event.at).await?;
        let (target_kind, target_id) = match event.site_id {
            Some(site) => ("site", site.to_string()),
            None => ("node", node.to_string()),
        };
        changes.push(Change {
            action: event.kind.action(),
            target_kind,
            target_id,
            before: None,
            after: serde_json::to_value(event).ok(),
        });
        changes.extend(checked);
    }
    if last > seen {
        sqlx::query("UPDATE nodes SET agent_event_seq = $1 WHERE id = $2")
            .bind(i64::try_from(last).unwrap_or(i64::MAX))
            .bind(node.0)
            .execute(&mut *conn)
            .await?;
    }
    Ok(changes)
}

fn run_of(
    site: SiteId,
    node: NodeId,
    outcome: &alveole_model::backup::BackupOutcome,
) -> alveole_model::backup::BackupRun {
    alveole_model::backup::BackupRun {
        site_id: site,
        target_id: outcome.target_id,
        node_id: node,
        started_at: outcome.started_at,
        duration_ms: outcome.duration_ms,
        snapshot_id: outcome.snapshot_id.clone(),
        files: outcome.files,
        bytes_added: outcome.bytes_added,
        bytes_total: outcome.bytes_total,
        error: outcome.error.clone(),
    }
}

type StatusRow = (Uuid, DateTime<Utc>, Json<NodeReport>);

fn status_of((node, reported_at, report): StatusRow) -> NodeStatus {
    NodeStatus {
        node_id: NodeId(node),
        reported_at,
        report: report.0,
    }
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn desired_state(&self, node: NodeId) -> StoreResult<NodeDesired> {
        // One read transaction, so that the generation and every part agree.
        let mut tx = self.begin_read().await?;
        let row: Option<(i64, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT desired_generation, fenced_at FROM nodes WHERE id = $1")
                .bind(node.0)
                .fetch_optional(&mut *tx)
                .await?;
        let (generation, fenced_at) = row.ok_or(StoreError::NotFound { kind: "node" })?;
        if fenced_at.is_some() {
            tx.commit().await?;
            return Ok(NodeDesired {
                generation: count(generation),
                fenced: true,
                ..Default::default()
            });
        }
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM sites WHERE node_id = ",
            <Site as Audited>::COLUMNS
        ));
        q.push_bind(node.0).push(" ORDER BY id");
        let sites: Vec<Site> = fetch_all::<SiteRow, Site>(&mut *tx, q).await?;
        let (dedicated, addresses) = allocated_addresses(&mut tx, node).await?;
        let input_filter = input_filter(&mut tx, node).await?;
        let moves = latest_moves(&mut tx, node).await?;
        let moving_sites = moving_sites(&mut tx, &moves).await?;
        let endpoints = endpoints_of(&mut tx, node, &moves, &moving_sites).await?;
        let purges = fetch_volume_purges(&mut *tx, node).await?;
        let backups = super::backups::node_backups(&mut tx, node, &sites).await?;
        let served: Vec<SiteId> = sites
            .iter()
            .map(|site| site.id)
            .chain(moving_sites.keys().copied())
            .collect();
        let certificates = super::certificates::certificates_of(&mut *tx, &served).await?;
        let challenges = super::certificates::challenges_of(&mut *tx, &served).await?;
        let admission_keys = super::site_keys::admission_keys_of(&mut *tx, &served).await?;
        tx.commit().await?;
        Ok(NodeDesired {
            generation: count(generation),
            sites,
            dedicated,
            addresses,
            input_filter,
            moves,
            moving_sites,
            endpoints,
            purges,
            backups,
            certificates,
            challenges,
            admission_keys,
            fenced: false,
        })
    }

    async fn create_join_token(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch::<Node>(&mut tx, node).await?;
        sqlx::query(
            "INSERT INTO node_join_tokens (token_hash, node_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(node.0)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "node.join_token",
            target_kind: "node",
            target_id: node.to_string(),
            before: None,
            after: Some(serde_json::json!({"expires_at": expires_at})),
        };
        tx.commit(ctx, change).await
    }

    async fn enroll_agent(
        &self,
        ctx: &AuditContext,
        join_hash: &str,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<NodeId> {
        let mut tx = self.begin_write().await?;
        let node: Option<Uuid> = sqlx::query_scalar(
            "SELECT node_id FROM node_join_tokens WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(join_hash)
        .bind(now)
        .fetch_optional(tx.conn())
        .await?;
        let node = NodeId(node.ok_or(StoreError::NotFound { kind: "join token" })?);
        sqlx::query("DELETE FROM node_join_tokens WHERE token_hash = $1")
            .bind(join_hash)
            .execute(tx.conn())
            .await?;
        sqlx::query("DELETE FROM node_agent_keys WHERE node_id = $1")
            .bind(node.0)
            .execute(tx.conn())
            .await?;
        // A new agent numbers its events from 1 again.
        sqlx::query("UPDATE nodes SET agent_event_seq = 0 WHERE id = $1")
            .bind(node.0)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO node_agent_keys (node_id, key_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(node.0)
        .bind(key_hash)
        .bind(now)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "node.enroll",
            target_kind: "node",
            target_id: node.to_string(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await?;
        Ok(node)
    }

    async fn revoke_agent(&self, ctx: &AuditContext, node: NodeId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch::<Node>(&mut tx, node).await?;
        sqlx::query("DELETE FROM node_agent_keys WHERE node_id = $1")
            .bind(node.0)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "node.revoke",
            target_kind: "node",
            target_id: node.to_string(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn node_for_agent_key(&self, key_hash: &str) -> StoreResult<Option<NodeId>> {
        let node: Option<Uuid> =
            sqlx::query_scalar("SELECT node_id FROM node_agent_keys WHERE key_hash = $1")
                .bind(key_hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(node.map(NodeId))
    }

    async fn record_node_report(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        report: &NodeReport,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(SiteId, SitePhase)>> {
        let mut tx = self.begin_write().await?;
        // The inventory is kept apart: reports come every few seconds, inventories hourly.
        let status = NodeReport {
            inventory: None,
            ..report.clone()
        };
        sqlx::query(
            "INSERT INTO node_status (node_id, reported_at, report) VALUES ($1, $2, $3) \
             ON CONFLICT (node_id) DO UPDATE SET reported_at = excluded.reported_at, report = excluded.report",
        )
        .bind(node.0)
        .bind(now)
        .bind(Json(&status))
        .execute(tx.conn())
        .await?;
        if let Some(inventory) = &report.inventory {
            sqlx::query(
                "INSERT INTO node_inventory (node_id, reported_at, inventory) VALUES ($1, $2, $3) \
                 ON CONFLICT (node_id) DO UPDATE SET reported_at = excluded.reported_at, \
                 inventory = excluded.inventory",
            )
            .bind(node.0)
            .bind(now)
            .bind(Json(inventory))
            .execute(tx.conn())
            .await?;
        }
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM sites WHERE node_id = ",
            <Site as Audited>::COLUMNS
        ));
        q.push_bind(node.0);
        let sites: Vec<Site> = fetch_all::<SiteRow, Site>(tx.conn(), q).await?;
        let mut changes = agent_event_changes(tx.conn(), node, report).await?;
        let mut moved = Vec::new();
        for observed in &report.sites {
            let Some(site) = sites.iter().find(|s| s.id == observed.site_id) else {
                continue;
            };
            let phase = site.phase.observed(observed.state);
            if phase == site.phase {
                continue;
            }
            let mut after = site.clone();
            after.phase = phase;
            // What a node observes is not an edit: the version, which guards members' edits
            // against each other, stays, so a form opened before the site started still saves.
            after.meta.updated_at = tx.now;
            sqlx::query("UPDATE sites SET phase = $1, updated_at = $2 WHERE id = $3")
                .bind(phase.as_str())
                .bind(after.meta.updated_at)
                .bind(site.id.0)
                .execute(tx.conn())
                .await?;
            let mut change = Change::of("site.phase", "site", site.id, Some(site), Some(&after));
            if let (Some(reason), Some(after)) = (&observed.reason, change.after.as_mut()) {
                after["reason"] = serde_json::json!(reason);
            }
            changes.push(change);
            moved.push((site.id, phase));
        }
        for progress in &report.restores {
            let now = tx.now;
            if let Some(change) =
                super::backups::advance_restore(tx.conn(), node, progress, now).await?
            {
                changes.push(change);
            }
        }
        for progress in &report.drills {
            let now = tx.now;
            changes.extend(super::drills::advance_drill(tx.conn(), node, progress, now).await?);
        }
        tx.commit_all(ctx, changes).await?;
        Ok(moved)
    }

    async fn node_inventories(&self) -> StoreResult<Vec<(NodeId, DateTime<Utc>, NodeInventory)>> {
        let rows: Vec<(Uuid, DateTime<Utc>, Json<NodeInventory>)> =
            sqlx::query_as("SELECT node_id, reported_at, inventory FROM node_inventory")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(node, at, inventory)| (NodeId(node), at, inventory.0))
            .collect())
    }

    async fn node_statuses(&self) -> StoreResult<Vec<NodeStatus>> {
        let rows: Vec<StatusRow> =
            sqlx::query_as("SELECT node_id, reported_at, report FROM node_status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(status_of).collect())
    }

    async fn node_status(&self, node: NodeId) -> StoreResult<Option<NodeStatus>> {
        let row: Option<StatusRow> = sqlx::query_as(
            "SELECT node_id, reported_at, report FROM node_status WHERE node_id = $1",
        )
        .bind(node.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(status_of))
    }

    async fn remove_expired_join_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM node_join_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit_bookkeeping().await?;
        Ok(removed)
    }
}

/// The node's addresses, none that is moving (a moving address is in no node's state until
/// its move completes), and those of them dedicated to a site.
async fn allocated_addresses(
    tx: &mut Transaction<'static, Db>,
    node: NodeId,
) -> StoreResult<(BTreeMap<SiteId, Vec<IpAddr>>, Vec<IpAddr>)> {
    let allocated: Vec<(String, Option<Uuid>)> = sqlx::query_as(
        "SELECT address, site_id FROM ip_allocations a WHERE node_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM address_moves m WHERE m.address = a.address) \
         ORDER BY address",
    )
    .bind(node.0)
    .fetch_all(&mut **tx)
    .await?;
    let mut dedicated: BTreeMap<SiteId, Vec<IpAddr>> = BTreeMap::new();
    let mut addresses = Vec::with_capacity(allocated.len());
    for (address, site) in allocated {
        let parsed = parse_address(&address)?;
        if let Some(site) = site {
            dedicated.entry(SiteId(site)).or_default().push(parsed);
        }
        addresses.push(parsed);
    }
    Ok((dedicated, addresses))
}

/// The node's input filter when it opted in: its admins' networks and the co-op's other
/// nodes (a value that does not read is left out: it cannot have been stored through
/// validation).
async fn input_filter(
    tx: &mut Transaction<'static, Db>,
    node: NodeId,
) -> StoreResult<Option<InputFilter>> {
    let (enabled, allowed): (bool, Json<Vec<String>>) =
        sqlx::query_as("SELECT input_filter, input_allowed FROM nodes WHERE id = $1")
            .bind(node.0)
            .fetch_one(&mut **tx)
            .await?;
    if !enabled {
        return Ok(None);
    }
    let peers: Vec<Json<Vec<String>>> =
        sqlx::query_scalar("SELECT public_addresses FROM nodes WHERE id <> $1 ORDER BY id")
            .bind(node.0)
            .fetch_all(&mut **tx)
            .await?;
    let allowed: BTreeSet<Prefix> = allowed
        .0
        .iter()
        .chain(peers.iter().flat_map(|p| p.0.iter()))
        .filter_map(|text| Prefix::parse_or_host(text).ok())
        .collect();
    Ok(Some(InputFilter {
        allowed: allowed.into_iter().collect(),
    }))
}

/// Each site's latest move from or to the node, oldest first. A site that moved on again
/// keeps, here, the move that took it away (its forwarding goes on until its period ends).
async fn latest_moves(
    tx: &mut Transaction<'static, Db>,
    node: NodeId,
) -> StoreResult<Vec<SiteMove>> {
    let rows: Vec<SiteMoveRow> = sqlx::query_as(concat!(
        "SELECT ",
        site_move_columns!(),
        " FROM site_moves WHERE (from_node = $1 OR to_node = $1) \
          AND started_at = (SELECT MAX(started_at) FROM site_moves latest \
                            WHERE latest.site_id = site_moves.site_id \
                              AND (latest.from_node = $1 OR latest.to_node = $1)) \
          ORDER BY started_at, id"
    ))
    .bind(node.0)
    .fetch_all(&mut **tx)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// The sites of the moves under way, as they are now.
async fn moving_sites(
    tx: &mut Transaction<'static, Db>,
    moves: &[SiteMove],
) -> StoreResult<BTreeMap<SiteId, Site>> {
    let active: Vec<SiteId> = moves
        .iter()
        .filter(|m| m.phase.is_active())
        .map(|m| m.site_id)
        .collect();
    if active.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {} FROM sites WHERE id IN (",
        <Site as Audited>::COLUMNS
    ));
    let mut ids = q.separated(", ");
    for id in &active {
        ids.push_bind(id.0);
    }
    q.push(")");
    let sites: Vec<Site> = fetch_all::<SiteRow, Site>(&mut **tx, q).await?;
    Ok(sites.into_iter().map(|s| (s.id, s)).collect())
}

/// Where the targets of the node's moves under way, and the nodes their sites are on now,
/// said other agents reach them (their last reports).
async fn endpoints_of(
    tx: &mut Transaction<'static, Db>,
    node: NodeId,
    moves: &[SiteMove],
    moving_sites: &BTreeMap<SiteId, Site>,
) -> StoreResult<BTreeMap<NodeId, AgentEndpoints>> {
    let targets: BTreeSet<NodeId> = moves
        .iter()
        .filter(|m| m.phase.is_active() && m.from_node == node)
        .map(|m| m.to_node)
        .chain(moving_sites.values().filter_map(|s| s.node_id))
        .filter(|n| *n != node)
        .collect();
    let mut endpoints = BTreeMap::new();
    for target in targets {
        let report: Option<Json<NodeReport>> =
            sqlx::query_scalar("SELECT report FROM node_status WHERE node_id = $1")
                .bind(target.0)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(found) = report.and_then(|r| r.0.endpoints) {
            endpoints.insert(target, found);
        }
    }
    Ok(endpoints)
}
