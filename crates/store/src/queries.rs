//! The store's SQL, written once and compiled twice: `sqlite.rs` and `postgres.rs` each
//! include this file as a module, with `super::Db` naming their database. Placeholders are
//! `$N`, which both drivers bind by position.

use alveole_audit::{AuditKey, ChainHead, Checkpoint, EventFields};
use alveole_model::JobId;
use alveole_model::evacuation::{Evacuation, EvacuationItem, EvacuationSpec, ItemState, JobState};
use alveole_model::{
    AddressMove, FieldError, Hostname, IpAllocation, IpPool, Member, MemberId, Meta, MovePhase,
    MoveProgress, NewMember, NewNode, NewProvider, NewSite, Node, NodeId, NodeReport, Prefix,
    Provider, ProviderId, Site, SiteId, SiteMove, SiteMoveId, SitePhase, choose_node,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Executor, Pool, QueryBuilder, Transaction};
use uuid::Uuid;

use super::{
    BACKEND, BEGIN_READ, BEGIN_WRITE, CLAIMABLE_JOBS, Db, READ_CHAIN_HEAD_FOR_APPEND,
    lock_site_writes,
};
use crate::rows::{
    AuditRow, MemberRow, NodeRow, NodeUsageRow, ProviderRow, SessionRow, SiteMoveRow, SiteRow,
    StoredEnvVar, site_move_columns,
};
use crate::{
    ApiToken, AuditContext, AuditEvent, AuditRecord, Backend, Change, Counts, ExportFilter,
    MemberFilter, MoveTiming, NodeDesired, NodeFilter, NodeStatus, NodeUsage, Page, PageRequest,
    ProviderFilter, PublishedKey, Session, SiteFilter, Store, StoreError, StoreResult, TokenScope,
};
use std::collections::BTreeMap;

/// A store on one database.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: Pool<Db>,
}

/// A write transaction. Dropping it rolls back; the only way to commit records an audit event.
struct WriteTx(Transaction<'static, Db>);

impl WriteTx {
    fn conn(&mut self) -> &mut <Db as sqlx::Database>::Connection {
        &mut self.0
    }

    async fn commit(self, ctx: &AuditContext, change: Change) -> StoreResult<()> {
        self.commit_all(ctx, vec![change]).await
    }

    /// Commits with one audit event per change, each appended to the audit chain. No change
    /// at all is only for telemetry (an agent's heartbeat), which is not a change to the
    /// platform.
    async fn commit_all(mut self, ctx: &AuditContext, changes: Vec<Change>) -> StoreResult<()> {
        if !changes.is_empty() {
            let mut head = read_chain_head_for_append(self.conn()).await?;
            for change in changes {
                let fields = EventFields {
                    id: Uuid::now_v7(),
                    at: now(),
                    actor: ctx.actor.clone(),
                    action: change.action.to_owned(),
                    target_kind: change.target_kind.to_owned(),
                    target_id: change.target_id,
                    before: change.before,
                    after: change.after,
                    request_id: ctx.request_id.clone(),
                };
                head = append_event(self.conn(), &fields, &head).await?;
            }
            write_chain_head(self.conn(), &head).await?;
        }
        self.0.commit().await?;
        Ok(())
    }
}

async fn read_chain_head_for_append(
    conn: &mut <Db as sqlx::Database>::Connection,
) -> StoreResult<ChainHead> {
    let (length, hash): (i64, Option<String>) = sqlx::query_as(READ_CHAIN_HEAD_FOR_APPEND)
        .fetch_one(&mut *conn)
        .await?;
    Ok(ChainHead {
        length: u64::try_from(length).unwrap_or(0),
        hash,
    })
}

async fn write_chain_head(
    conn: &mut <Db as sqlx::Database>::Connection,
    head: &ChainHead,
) -> StoreResult<()> {
    sqlx::query("UPDATE audit_chain SET length = $1, head = $2 WHERE id = 1")
        .bind(i64::try_from(head.length).unwrap_or(i64::MAX))
        .bind(&head.hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl SqlStore {
    /// Events matching `filter`: chained ones after position `after` in chain order, or (with
    /// `None`) the ones outside the chain in the order they were written.
    async fn audit_rows(
        &self,
        filter: &ExportFilter,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut query = QueryBuilder::<Db>::new(
            "SELECT seq, id, at, actor, action, target_kind, target_id, before, after, request_id, \
             chain_index, canonical, hash FROM audit_events WHERE ",
        );
        match after {
            Some(after) => {
                query
                    .push("chain_index > ")
                    .push_bind(i64::try_from(after).unwrap_or(i64::MAX));
            }
            None => {
                query.push("chain_index IS NULL");
            }
        }
        if let Some(from) = filter.from {
            query.push(" AND at >= ").push_bind(from);
        }
        if let Some(to) = filter.to {
            query.push(" AND at < ").push_bind(to);
        }
        for (column, value) in [
            ("actor", &filter.actor),
            ("action", &filter.action),
            ("target_kind", &filter.target_kind),
            ("target_id", &filter.target_id),
        ] {
            if let Some(value) = value {
                query
                    .push(format_args!(" AND {column} = "))
                    .push_bind(value.clone());
            }
        }
        if !filter.target_ids.is_empty() {
            query.push(" AND target_id IN (");
            let mut ids = query.separated(", ");
            for id in &filter.target_ids {
                ids.push_bind(id.clone());
            }
            query.push(")");
        }
        query.push(match after {
            Some(_) => " ORDER BY chain_index LIMIT ",
            None => " ORDER BY seq LIMIT ",
        });
        query.push_bind(i64::from(limit));
        let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

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

/// Records one event after `head`; returns the new head.
async fn append_event(
    conn: &mut <Db as sqlx::Database>::Connection,
    fields: &EventFields,
    head: &ChainHead,
) -> StoreResult<ChainHead> {
    let sealed = alveole_audit::seal(fields, head);
    sqlx::query(
        "INSERT INTO audit_events \
         (id, at, actor, action, target_kind, target_id, before, after, request_id, \
          chain_index, canonical, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(fields.id)
    .bind(fields.at)
    .bind(&fields.actor)
    .bind(&fields.action)
    .bind(&fields.target_kind)
    .bind(&fields.target_id)
    .bind(fields.before.clone().map(Json))
    .bind(fields.after.clone().map(Json))
    .bind(&fields.request_id)
    .bind(i64::try_from(sealed.index).unwrap_or(i64::MAX))
    .bind(&sealed.canonical)
    .bind(&sealed.hash)
    .execute(&mut *conn)
    .await?;
    Ok(ChainHead {
        length: sealed.index,
        hash: Some(sealed.hash),
    })
}

/// Now, to the microsecond: what both databases keep, so a value reads back as written.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn fresh_meta() -> Meta {
    let at = now();
    Meta {
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

fn next_meta(previous: &Meta) -> Meta {
    Meta {
        version: previous.version + 1,
        created_at: previous.created_at,
        updated_at: now(),
    }
}

fn check_version(kind: &'static str, expected: Option<i64>, actual: i64) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != actual => Err(StoreError::VersionMismatch {
            kind,
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Values are validated far below i64::MAX; saturate rather than wrap if that ever changes.
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn page_of<T>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|last| id(last).to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}

fn in_use(kind: &str, code: &str, what: &str, names: &[String]) -> StoreError {
    let message = format!("the {kind} still has {what}: {}", names.join(", "));
    StoreError::Conflict {
        message: message.clone(),
        errors: vec![FieldError::new("id", code, message)],
    }
}

const PROVIDER_COLUMNS: &str =
    "id, name, contact, contract_end, country, notes, version, created_at, updated_at";
const NODE_COLUMNS: &str = "id, provider_id, name, public_addresses, cpu_millis, memory_bytes, \
     disk_bytes, overcommit_cpu, overcommit_memory, input_filter, input_allowed, version, \
     created_at, updated_at";
/// An API token as stored.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    member_id: Uuid,
    name: String,
    scope: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> StoreResult<Self> {
        let scope = match row.scope.as_str() {
            "read" => TokenScope::Read,
            "full" => TokenScope::Full,
            other => {
                return Err(StoreError::Corrupt {
                    kind: "api token",
                    id: row.id.to_string(),
                    reason: format!("unknown scope {other:?}"),
                });
            }
        };
        Ok(ApiToken {
            id: row.id,
            member_id: MemberId(row.member_id),
            name: row.name,
            scope,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

const MEMBER_COLUMNS: &str = "id, display_name, email, role, version, created_at, updated_at";
const SITE_COLUMNS: &str = "id, owner_id, primary_domain, aliases, image, command, env, http_port, \
     volume_quota, volume_mount_path, cpu_millis, memory_bytes, pids, read_only_root, run_as_user, \
     exposed_ports, limit_tier, node_id, phase, version, created_at, updated_at";

/// A row type this backend can decode (validation into a domain type comes after).
trait DbRow: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin {}
impl<R> DbRow for R where R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin {}

/// `SELECT columns FROM table WHERE id = $1`, validated into `T`, or `NotFound`.
async fn fetch_by_id<'e, R: DbRow, T: TryFrom<R, Error = StoreError>>(
    ex: impl Executor<'e, Database = Db>,
    kind: &'static str,
    select: &str,
    id: Uuid,
) -> StoreResult<T> {
    let mut q = QueryBuilder::<Db>::new(format!("{select} WHERE id = "));
    q.push_bind(id);
    let row: Option<R> = q.build_query_as().fetch_optional(ex).await?;
    row.ok_or(StoreError::NotFound { kind })?.try_into()
}

/// Finishes a `SELECT ... WHERE <filters>` with the page's cursor, order and limit (one extra
/// row tells whether another page follows), and validates the rows into `T`.
async fn fetch_page<R: DbRow, T: TryFrom<R, Error = StoreError>>(
    pool: &Pool<Db>,
    mut q: QueryBuilder<Db>,
    page: &PageRequest,
    id: impl Fn(&T) -> Uuid,
) -> StoreResult<Page<T>> {
    if let Some(after) = page.after {
        q.push(" AND id > ").push_bind(after);
    }
    q.push(" ORDER BY id LIMIT ")
        .push_bind(i64::from(page.limit) + 1);
    let rows: Vec<R> = q.build_query_as().fetch_all(pool).await?;
    let items = rows
        .into_iter()
        .map(T::try_from)
        .collect::<StoreResult<Vec<T>>>()?;
    Ok(page_of(items, page.limit, id))
}

async fn fetch_provider<'e>(
    ex: impl Executor<'e, Database = Db>,
    id: ProviderId,
) -> StoreResult<Provider> {
    let select = format!("SELECT {PROVIDER_COLUMNS} FROM providers");
    fetch_by_id::<ProviderRow, _>(ex, "provider", &select, id.0).await
}

async fn fetch_node<'e>(ex: impl Executor<'e, Database = Db>, id: NodeId) -> StoreResult<Node> {
    let select = format!("SELECT {NODE_COLUMNS} FROM nodes");
    fetch_by_id::<NodeRow, _>(ex, "node", &select, id.0).await
}

async fn fetch_member<'e>(
    ex: impl Executor<'e, Database = Db>,
    id: MemberId,
) -> StoreResult<Member> {
    let select = format!("SELECT {MEMBER_COLUMNS} FROM members");
    fetch_by_id::<MemberRow, _>(ex, "member", &select, id.0).await
}

async fn fetch_site<'e>(ex: impl Executor<'e, Database = Db>, id: SiteId) -> StoreResult<Site> {
    let select = format!("SELECT {SITE_COLUMNS} FROM sites");
    fetch_by_id::<SiteRow, _>(ex, "site", &select, id.0).await
}

async fn fetch_node_usage<'e>(ex: impl Executor<'e, Database = Db>) -> StoreResult<Vec<NodeUsage>> {
    let rows: Vec<NodeUsageRow> = sqlx::query_as(
        "SELECT n.id, n.name, n.cpu_millis, n.memory_bytes, n.disk_bytes, n.overcommit_cpu, \
                n.overcommit_memory, \
                CAST(COALESCE(SUM(s.cpu_millis), 0) AS BIGINT) AS reserved_cpu, \
                CAST(COALESCE(SUM(s.memory_bytes), 0) AS BIGINT) AS reserved_memory, \
                CAST(COALESCE(SUM(s.volume_quota), 0) AS BIGINT) AS reserved_disk, \
                CAST(COALESCE(SUM(CASE WHEN s.node_id = n.id THEN 1 ELSE 0 END), 0) AS BIGINT) \
                    AS sites \
         FROM nodes n LEFT JOIN sites s ON s.node_id = n.id \
              OR EXISTS (SELECT 1 FROM site_moves m WHERE m.site_id = s.id \
                         AND m.to_node = n.id AND m.phase = 'copying') \
         GROUP BY n.id, n.name, n.cpu_millis, n.memory_bytes, n.disk_bytes, n.overcommit_cpu, \
                  n.overcommit_memory \
         ORDER BY n.name",
    )
    .fetch_all(ex)
    .await?;
    rows.into_iter().map(TryInto::try_into).collect()
}

async fn names_of<'e>(
    ex: impl Executor<'e, Database = Db>,
    sql: &'static str,
    id: Uuid,
) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(sql).bind(id).fetch_all(ex).await?)
}

impl SqlStore {
    pub(super) fn new(pool: Pool<Db>) -> Self {
        Self { pool }
    }

    #[allow(clippy::disallowed_methods)] // the one place a transaction begins, with BEGIN_WRITE
    async fn begin_write(&self) -> StoreResult<WriteTx> {
        Ok(WriteTx(self.pool.begin_with(BEGIN_WRITE).await?))
    }

    /// Places `new` (when it names no node), checks the node's room and every host name, with
    /// site writes serialised so that two writers cannot both see a name or a node as free.
    async fn check_site(
        tx: &mut WriteTx,
        new: &mut NewSite,
        replacing: Option<&Site>,
    ) -> StoreResult<()> {
        lock_site_writes(tx.conn()).await?;
        fetch_member(tx.conn(), new.owner_id)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => StoreError::Conflict {
                    message: "the owner does not exist".into(),
                    errors: vec![FieldError::new(
                        "owner_id",
                        "owner.unknown",
                        "no member has this id",
                    )],
                },
                other => other,
            })?;

        let mut loads: Vec<_> = fetch_node_usage(tx.conn())
            .await?
            .into_iter()
            .map(|u| u.load)
            .collect();
        if let Some(old) = replacing.filter(|old| old.node_id.is_some()) {
            // The site's own reservation is being replaced, not added to.
            let old_reservation = old.reservation();
            for load in loads.iter_mut().filter(|l| Some(l.node_id) == old.node_id) {
                load.reserved.cpu_millis -=
                    old_reservation.cpu_millis.min(load.reserved.cpu_millis);
                load.reserved.memory_bytes -=
                    old_reservation.memory_bytes.min(load.reserved.memory_bytes);
                load.reserved.disk_bytes -=
                    old_reservation.disk_bytes.min(load.reserved.disk_bytes);
            }
        }
        let wanted = new.reservation();
        match new.node_id {
            Some(node_id) => {
                let load = loads.iter().find(|l| l.node_id == node_id).ok_or_else(|| {
                    StoreError::Conflict {
                        message: "the node does not exist".into(),
                        errors: vec![FieldError::new(
                            "node_id",
                            "node.unknown",
                            "no node has this id",
                        )],
                    }
                })?;
                load.check_fits(wanted)?;
            }
            None => {
                let chosen = choose_node(&loads, wanted).ok_or_else(|| StoreError::Conflict {
                    message: "no node has room for this site".into(),
                    errors: vec![FieldError::new(
                        "node_id",
                        "placement.no_room",
                        "no node has room for this site",
                    )],
                })?;
                new.node_id = Some(chosen);
            }
        }

        let own_site = replacing.map(|s| s.id.0);
        let fields = std::iter::once("primary_domain".to_owned())
            .chain((0..new.aliases.len()).map(|i| format!("aliases[{i}]")));
        for (hostname, field) in new.hostnames().zip(fields) {
            check_hostname_free(tx, hostname, new.owner_id, own_site)
                .await
                .map_err(|e| match e {
                    StoreError::Conflict { message, .. } => StoreError::Conflict {
                        errors: vec![FieldError::new(field, "hostname.taken", message.clone())],
                        message,
                    },
                    other => other,
                })?;
        }
        Ok(())
    }

    /// Deletes a site; with `purge`, also orders its node to remove the site's volume.
    async fn remove_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
        purge: bool,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let before = fetch_site(tx.conn(), id).await?;
        check_version("site", version, before.meta.version)?;
        delete_row(&mut tx, "DELETE FROM sites WHERE id = $1", id.0).await?;
        if let (true, Some(node)) = (purge, before.node_id) {
            sqlx::query(
                "INSERT INTO volume_purges (site_id, node_id, requested_at) VALUES ($1, $2, $3)",
            )
            .bind(id.0)
            .bind(node.0)
            .bind(now())
            .execute(tx.conn())
            .await?;
        }
        bump_generation(&mut tx, before.node_id).await?;
        let action = if purge { "site.purge" } else { "site.delete" };
        tx.commit(ctx, Change::of(action, "site", id, Some(&before), None))
            .await
    }

    async fn insert_hostnames(tx: &mut WriteTx, site: &Site) -> StoreResult<()> {
        for hostname in std::iter::once(&site.primary_domain).chain(&site.aliases) {
            sqlx::query(
                "INSERT INTO hostnames (name, site_id, parent, wildcard) VALUES ($1, $2, $3, $4)",
            )
            .bind(hostname.as_str())
            .bind(site.id.0)
            .bind(hostname.parent())
            .bind(hostname.is_wildcard())
            .execute(tx.conn())
            .await?;
        }
        Ok(())
    }
}

/// A name is taken when another site has it, or when a wildcard of another member covers it
/// (or, for a wildcard, when it would cover another member's name).
async fn check_hostname_free(
    tx: &mut WriteTx,
    hostname: &Hostname,
    owner: MemberId,
    own_site: Option<Uuid>,
) -> StoreResult<()> {
    let taken: Option<Uuid> = sqlx::query_scalar("SELECT site_id FROM hostnames WHERE name = $1")
        .bind(hostname.as_str())
        .fetch_optional(tx.conn())
        .await?;
    if taken.is_some_and(|site| Some(site) != own_site) {
        return Err(StoreError::Conflict {
            message: format!("{hostname} is already used by a site"),
            errors: vec![],
        });
    }
    let covering: Option<String> = sqlx::query_scalar(
        "SELECT h.name FROM hostnames h JOIN sites s ON s.id = h.site_id \
         WHERE h.parent = $1 AND h.wildcard <> $2 AND s.owner_id <> $3 LIMIT 1",
    )
    .bind(hostname.parent())
    .bind(hostname.is_wildcard())
    .bind(owner.0)
    .fetch_optional(tx.conn())
    .await?;
    match covering {
        Some(other) => Err(StoreError::Conflict {
            message: format!("{hostname} overlaps {other}, which belongs to another member"),
            errors: vec![],
        }),
        None => Ok(()),
    }
}

fn bind_provider(q: &mut QueryBuilder<Db>, p: &Provider) {
    let mut s = q.separated(", ");
    s.push_bind(p.id.0)
        .push_bind(p.name.to_string())
        .push_bind(p.contact.as_ref().map(ToString::to_string))
        .push_bind(p.contract_end)
        .push_bind(p.country.as_ref().map(ToString::to_string))
        .push_bind(p.notes.to_string())
        .push_bind(p.meta.version)
        .push_bind(p.meta.created_at)
        .push_bind(p.meta.updated_at);
}

fn bind_node(q: &mut QueryBuilder<Db>, n: &Node) {
    let addresses: Vec<String> = n.public_addresses.iter().map(ToString::to_string).collect();
    let mut s = q.separated(", ");
    s.push_bind(n.id.0)
        .push_bind(n.provider_id.0)
        .push_bind(n.name.to_string())
        .push_bind(Json(addresses))
        .push_bind(i64::from(n.capacity.cpu_millis))
        .push_bind(int(n.capacity.memory_bytes))
        .push_bind(int(n.capacity.disk_bytes))
        .push_bind(n.overcommit.cpu)
        .push_bind(n.overcommit.memory)
        .push_bind(n.input_filter)
        .push_bind(Json(
            n.input_allowed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        ))
        .push_bind(n.meta.version)
        .push_bind(n.meta.created_at)
        .push_bind(n.meta.updated_at);
}

fn bind_member(q: &mut QueryBuilder<Db>, m: &Member) {
    let mut s = q.separated(", ");
    s.push_bind(m.id.0)
        .push_bind(m.display_name.to_string())
        .push_bind(m.email.to_string())
        .push_bind(m.role.as_str())
        .push_bind(m.meta.version)
        .push_bind(m.meta.created_at)
        .push_bind(m.meta.updated_at);
}

fn bind_site(q: &mut QueryBuilder<Db>, site: &Site) {
    let aliases: Vec<String> = site.aliases.iter().map(ToString::to_string).collect();
    let env: Vec<StoredEnvVar> = site.env.iter().map(StoredEnvVar::from_var).collect();
    let mut s = q.separated(", ");
    s.push_bind(site.id.0)
        .push_bind(site.owner_id.0)
        .push_bind(site.primary_domain.to_string())
        .push_bind(Json(aliases))
        .push_bind(site.image.to_string())
        .push_bind(Json(site.command.clone()))
        .push_bind(Json(env))
        .push_bind(i64::from(site.http_port))
        .push_bind(int(site.volume.quota_bytes))
        .push_bind(site.volume.mount_path.clone())
        .push_bind(i64::from(site.limits.cpu_millis))
        .push_bind(int(site.limits.memory_bytes))
        .push_bind(i64::from(site.limits.pids))
        .push_bind(site.security.read_only_root)
        .push_bind(site.security.user.clone())
        .push_bind(Json(site.exposed_ports.clone()))
        .push_bind(site.limit_tier.as_str())
        .push_bind(site.node_id.map(|n| n.0))
        .push_bind(site.phase.as_str())
        .push_bind(site.meta.version)
        .push_bind(site.meta.created_at)
        .push_bind(site.meta.updated_at);
}

/// How [`write_row`] writes: a new row, or the row with this id if it still has this version.
enum Write {
    Insert,
    Replace { id: Uuid, version: i64 },
}

/// `INSERT INTO table (columns) VALUES (...)`, or an update of every column of the row with
/// that id and the expected version (a second guard under the version check).
async fn write_row(
    tx: &mut WriteTx,
    table: &str,
    columns: &str,
    write: Write,
    bind: impl FnOnce(&mut QueryBuilder<Db>),
) -> StoreResult<()> {
    let mut q = QueryBuilder::<Db>::new("");
    match write {
        Write::Insert => {
            q.push(format!("INSERT INTO {table} ({columns}) VALUES ("));
            bind(&mut q);
            q.push(")");
        }
        Write::Replace { id, version } => {
            // Delete-and-insert would cascade to dependent rows; update the columns instead.
            q.push(format!("UPDATE {table} SET ({columns}) = ("));
            bind(&mut q);
            q.push(") WHERE id = ")
                .push_bind(id)
                .push(" AND version = ")
                .push_bind(version);
        }
    }
    let result = q.build().execute(tx.conn()).await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Conflict {
            message: format!("{table}: the row changed meanwhile"),
            errors: vec![],
        });
    }
    Ok(())
}

/// Tells the node's agent that its desired state changed: bumped in the same transaction as
/// the change to its sites.
async fn bump_generation(tx: &mut WriteTx, node: Option<NodeId>) -> StoreResult<()> {
    if let Some(node) = node {
        sqlx::query("UPDATE nodes SET desired_generation = desired_generation + 1 WHERE id = $1")
            .bind(node.0)
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

/// Every node with an input filter hears of a change to the co-op's nodes: their addresses
/// are in its allow list.
async fn bump_filtering_nodes(tx: &mut WriteTx) -> StoreResult<()> {
    sqlx::query("UPDATE nodes SET desired_generation = desired_generation + 1 WHERE input_filter")
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Checks and records a site's move (phase `copying`) and tells both nodes; the caller
/// commits with its audit event.
async fn insert_site_move(
    tx: &mut WriteTx,
    site: SiteId,
    to: NodeId,
    timing: MoveTiming,
) -> StoreResult<SiteMove> {
    lock_site_writes(tx.conn()).await?;
    let moved = fetch_site(tx.conn(), site).await?;
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
    fetch_node(tx.conn(), to).await?;
    if from == to {
        return Err(refused(
            "move.same_node",
            "the site already runs on this node".into(),
        ));
    }
    let active: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM site_moves WHERE site_id = $1 AND phase IN ('copying', 'forwarding')",
    )
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
        started_at: now(),
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
    );
    let job: Option<JobRow> = sqlx::query_as(
        "SELECT state, spec, created_at, finished_at, lease_owner FROM jobs \
         WHERE id = $1 AND kind = 'evacuation'",
    )
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let (state, spec, created_at, finished_at, lease_owner) =
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
    );
    let rows: Vec<ItemRow> = sqlx::query_as(
        "SELECT site_id, position, to_node, state, move_id, error, started_at, finished_at \
         FROM evacuation_items WHERE job_id = $1 ORDER BY position",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    let items = rows
        .into_iter()
        .map(
            |(site, position, to, state, move_id, error, started_at, finished_at)| {
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
    })
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
    let finished_at = now();
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

/// An address as the database keeps it (canonical text).
fn parse_address(text: &str) -> StoreResult<std::net::IpAddr> {
    text.parse().map_err(|_| StoreError::Corrupt {
        kind: "ip allocation",
        id: text.to_owned(),
        reason: "not an address".into(),
    })
}

async fn delete_row(tx: &mut WriteTx, sql: &'static str, id: Uuid) -> StoreResult<()> {
    sqlx::query(sql).bind(id).execute(tx.conn()).await?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        BACKEND
    }

    // --- providers -------------------------------------------------------------------------

    async fn list_providers(
        &self,
        filter: &ProviderFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Provider>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {PROVIDER_COLUMNS} FROM providers WHERE 1 = 1"
        ));
        if let Some(country) = &filter.country {
            q.push(" AND country = ").push_bind(country.clone());
        }
        fetch_page::<ProviderRow, Provider>(&self.pool, q, page, |p| p.id.0).await
    }

    async fn get_provider(&self, id: ProviderId) -> StoreResult<Provider> {
        fetch_provider(&self.pool, id).await
    }

    async fn create_provider(&self, ctx: &AuditContext, new: NewProvider) -> StoreResult<Provider> {
        let mut tx = self.begin_write().await?;
        let provider = Provider {
            id: ProviderId::generate(),
            name: new.name,
            contact: new.contact,
            contract_end: new.contract_end,
            country: new.country,
            notes: new.notes,
            meta: fresh_meta(),
        };
        write_row(&mut tx, "providers", PROVIDER_COLUMNS, Write::Insert, |q| {
            bind_provider(q, &provider)
        })
        .await?;
        tx.commit(
            ctx,
            Change::of(
                "provider.create",
                "provider",
                provider.id,
                None,
                Some(&provider),
            ),
        )
        .await?;
        Ok(provider)
    }

    async fn update_provider(
        &self,
        ctx: &AuditContext,
        id: ProviderId,
        version: i64,
        new: NewProvider,
    ) -> StoreResult<Provider> {
        let mut tx = self.begin_write().await?;
        let before = fetch_provider(tx.conn(), id).await?;
        check_version("provider", Some(version), before.meta.version)?;
        let after = Provider {
            id,
            name: new.name,
            contact: new.contact,
            contract_end: new.contract_end,
            country: new.country,
            notes: new.notes,
            meta: next_meta(&before.meta),
        };
        write_row(
            &mut tx,
            "providers",
            PROVIDER_COLUMNS,
            Write::Replace { id: id.0, version },
            |q| bind_provider(q, &after),
        )
        .await?;
        tx.commit(
            ctx,
            Change::of(
                "provider.update",
                "provider",
                id,
                Some(&before),
                Some(&after),
            ),
        )
        .await?;
        Ok(after)
    }

    async fn delete_provider(
        &self,
        ctx: &AuditContext,
        id: ProviderId,
        version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let before = fetch_provider(tx.conn(), id).await?;
        check_version("provider", version, before.meta.version)?;
        let nodes = names_of(
            tx.conn(),
            "SELECT name FROM nodes WHERE provider_id = $1 ORDER BY name",
            id.0,
        )
        .await?;
        if !nodes.is_empty() {
            return Err(in_use("provider", "provider.has_nodes", "nodes", &nodes));
        }
        delete_row(&mut tx, "DELETE FROM providers WHERE id = $1", id.0).await?;
        tx.commit(
            ctx,
            Change::of("provider.delete", "provider", id, Some(&before), None),
        )
        .await
    }

    // --- nodes -----------------------------------------------------------------------------

    async fn list_nodes(&self, filter: &NodeFilter, page: &PageRequest) -> StoreResult<Page<Node>> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {NODE_COLUMNS} FROM nodes WHERE 1 = 1"));
        if let Some(provider) = filter.provider_id {
            q.push(" AND provider_id = ").push_bind(provider.0);
        }
        fetch_page::<NodeRow, Node>(&self.pool, q, page, |n| n.id.0).await
    }

    async fn get_node(&self, id: NodeId) -> StoreResult<Node> {
        fetch_node(&self.pool, id).await
    }

    async fn create_node(&self, ctx: &AuditContext, new: NewNode) -> StoreResult<Node> {
        let mut tx = self.begin_write().await?;
        fetch_provider(tx.conn(), new.provider_id)
            .await
            .map_err(unknown_provider)?;
        let node = Node {
            id: NodeId::generate(),
            provider_id: new.provider_id,
            name: new.name,
            public_addresses: new.public_addresses,
            capacity: new.capacity,
            overcommit: new.overcommit,
            input_filter: new.input_filter,
            input_allowed: new.input_allowed,
            meta: fresh_meta(),
        };
        write_row(&mut tx, "nodes", NODE_COLUMNS, Write::Insert, |q| {
            bind_node(q, &node)
        })
        .await?;
        bump_filtering_nodes(&mut tx).await?;
        tx.commit(
            ctx,
            Change::of("node.create", "node", node.id, None, Some(&node)),
        )
        .await?;
        Ok(node)
    }

    async fn update_node(
        &self,
        ctx: &AuditContext,
        id: NodeId,
        version: i64,
        new: NewNode,
    ) -> StoreResult<Node> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch_node(tx.conn(), id).await?;
        check_version("node", Some(version), before.meta.version)?;
        fetch_provider(tx.conn(), new.provider_id)
            .await
            .map_err(unknown_provider)?;
        let after = Node {
            id,
            provider_id: new.provider_id,
            name: new.name,
            public_addresses: new.public_addresses,
            capacity: new.capacity,
            overcommit: new.overcommit,
            input_filter: new.input_filter,
            input_allowed: new.input_allowed,
            meta: next_meta(&before.meta),
        };
        let usage = fetch_node_usage(tx.conn()).await?;
        if let Some(usage) = usage.iter().find(|u| u.load.node_id == id) {
            let shrunk = alveole_model::NodeLoad {
                capacity: after.capacity,
                overcommit: after.overcommit,
                reserved: Default::default(),
                ..usage.load
            };
            shrunk.check_fits(usage.load.reserved)?;
        }
        write_row(
            &mut tx,
            "nodes",
            NODE_COLUMNS,
            Write::Replace { id: id.0, version },
            |q| bind_node(q, &after),
        )
        .await?;
        // Its input filter may have changed, and its addresses are its peers' filters' too.
        bump_generation(&mut tx, Some(id)).await?;
        bump_filtering_nodes(&mut tx).await?;
        tx.commit(
            ctx,
            Change::of("node.update", "node", id, Some(&before), Some(&after)),
        )
        .await?;
        Ok(after)
    }

    async fn delete_node(
        &self,
        ctx: &AuditContext,
        id: NodeId,
        version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch_node(tx.conn(), id).await?;
        check_version("node", version, before.meta.version)?;
        let sites = names_of(
            tx.conn(),
            "SELECT primary_domain FROM sites WHERE node_id = $1 ORDER BY primary_domain",
            id.0,
        )
        .await?;
        if !sites.is_empty() {
            return Err(in_use("node", "node.has_sites", "sites", &sites));
        }
        delete_row(&mut tx, "DELETE FROM nodes WHERE id = $1", id.0).await?;
        bump_filtering_nodes(&mut tx).await?;
        tx.commit(
            ctx,
            Change::of("node.delete", "node", id, Some(&before), None),
        )
        .await
    }

    async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>> {
        fetch_node_usage(&self.pool).await
    }

    // --- members ---------------------------------------------------------------------------

    async fn list_members(
        &self,
        filter: &MemberFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Member>> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {MEMBER_COLUMNS} FROM members WHERE 1 = 1"));
        if let Some(role) = filter.role {
            q.push(" AND role = ").push_bind(role.as_str());
        }
        fetch_page::<MemberRow, Member>(&self.pool, q, page, |m| m.id.0).await
    }

    async fn get_member(&self, id: MemberId) -> StoreResult<Member> {
        fetch_member(&self.pool, id).await
    }

    async fn create_member(&self, ctx: &AuditContext, new: NewMember) -> StoreResult<Member> {
        let mut tx = self.begin_write().await?;
        let member = Member {
            id: MemberId::generate(),
            display_name: new.display_name,
            email: new.email,
            role: new.role,
            meta: fresh_meta(),
        };
        write_row(&mut tx, "members", MEMBER_COLUMNS, Write::Insert, |q| {
            bind_member(q, &member)
        })
        .await?;
        tx.commit(
            ctx,
            Change::of("member.create", "member", member.id, None, Some(&member)),
        )
        .await?;
        Ok(member)
    }

    async fn update_member(
        &self,
        ctx: &AuditContext,
        id: MemberId,
        version: i64,
        new: NewMember,
    ) -> StoreResult<Member> {
        let mut tx = self.begin_write().await?;
        let before = fetch_member(tx.conn(), id).await?;
        check_version("member", Some(version), before.meta.version)?;
        let after = Member {
            id,
            display_name: new.display_name,
            email: new.email,
            role: new.role,
            meta: next_meta(&before.meta),
        };
        write_row(
            &mut tx,
            "members",
            MEMBER_COLUMNS,
            Write::Replace { id: id.0, version },
            |q| bind_member(q, &after),
        )
        .await?;
        tx.commit(
            ctx,
            Change::of("member.update", "member", id, Some(&before), Some(&after)),
        )
        .await?;
        Ok(after)
    }

    async fn delete_member(
        &self,
        ctx: &AuditContext,
        id: MemberId,
        version: Option<i64>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch_member(tx.conn(), id).await?;
        check_version("member", version, before.meta.version)?;
        let sites = names_of(
            tx.conn(),
            "SELECT primary_domain FROM sites WHERE owner_id = $1 ORDER BY primary_domain",
            id.0,
        )
        .await?;
        if !sites.is_empty() {
            return Err(in_use("member", "member.has_sites", "sites", &sites));
        }
        delete_row(&mut tx, "DELETE FROM members WHERE id = $1", id.0).await?;
        tx.commit(
            ctx,
            Change::of("member.delete", "member", id, Some(&before), None),
        )
        .await
    }

    // --- sites -----------------------------------------------------------------------------

    async fn list_sites(&self, filter: &SiteFilter, page: &PageRequest) -> StoreResult<Page<Site>> {
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {SITE_COLUMNS} FROM sites WHERE 1 = 1"));
        if let Some(owner) = filter.owner_id {
            q.push(" AND owner_id = ").push_bind(owner.0);
        }
        if let Some(node) = filter.node_id {
            q.push(" AND node_id = ").push_bind(node.0);
        }
        if let Some(phase) = filter.phase {
            q.push(" AND phase = ").push_bind(phase.as_str());
        }
        if let Some(hostname) = &filter.hostname {
            q.push(" AND id IN (SELECT site_id FROM hostnames WHERE name = ")
                .push_bind(hostname.clone())
                .push(")");
        }
        fetch_page::<SiteRow, Site>(&self.pool, q, page, |s| s.id.0).await
    }

    async fn list_sites_by_offset(&self, offset: u32, limit: u32) -> StoreResult<Vec<Site>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {SITE_COLUMNS} FROM sites ORDER BY id LIMIT "
        ));
        q.push_bind(i64::from(limit))
            .push(" OFFSET ")
            .push_bind(i64::from(offset));
        let rows: Vec<SiteRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn get_site(&self, id: SiteId) -> StoreResult<Site> {
        fetch_site(&self.pool, id).await
    }

    async fn create_site(&self, ctx: &AuditContext, mut new: NewSite) -> StoreResult<Site> {
        let mut tx = self.begin_write().await?;
        Self::check_site(&mut tx, &mut new, None).await?;
        let site = Site::from_new(SiteId::generate(), new, fresh_meta());
        write_row(&mut tx, "sites", SITE_COLUMNS, Write::Insert, |q| {
            bind_site(q, &site)
        })
        .await?;
        Self::insert_hostnames(&mut tx, &site).await?;
        bump_generation(&mut tx, site.node_id).await?;
        tx.commit(
            ctx,
            Change::of("site.create", "site", site.id, None, Some(&site)),
        )
        .await?;
        Ok(site)
    }

    async fn update_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: i64,
        mut new: NewSite,
    ) -> StoreResult<Site> {
        let mut tx = self.begin_write().await?;
        let before = fetch_site(tx.conn(), id).await?;
        check_version("site", Some(version), before.meta.version)?;
        Self::check_site(&mut tx, &mut new, Some(&before)).await?;
        let after = Site::from_new(id, new, next_meta(&before.meta));
        write_row(
            &mut tx,
            "sites",
            SITE_COLUMNS,
            Write::Replace { id: id.0, version },
            |q| bind_site(q, &after),
        )
        .await?;
        delete_row(&mut tx, "DELETE FROM hostnames WHERE site_id = $1", id.0).await?;
        Self::insert_hostnames(&mut tx, &after).await?;
        bump_generation(&mut tx, before.node_id).await?;
        bump_generation(
            &mut tx,
            after.node_id.filter(|n| Some(*n) != before.node_id),
        )
        .await?;
        tx.commit(
            ctx,
            Change::of("site.update", "site", id, Some(&before), Some(&after)),
        )
        .await?;
        Ok(after)
    }

    async fn delete_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
    ) -> StoreResult<()> {
        self.remove_site(ctx, id, version, false).await
    }

    async fn purge_site(
        &self,
        ctx: &AuditContext,
        id: SiteId,
        version: Option<i64>,
    ) -> StoreResult<()> {
        self.remove_site(ctx, id, version, true).await
    }

    async fn volume_purges(&self, node: NodeId) -> StoreResult<Vec<SiteId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT site_id FROM volume_purges WHERE node_id = $1 ORDER BY site_id",
        )
        .bind(node.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(SiteId).collect())
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let (providers, nodes, members, sites): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM providers), (SELECT COUNT(*) FROM nodes), \
                    (SELECT COUNT(*) FROM members), (SELECT COUNT(*) FROM sites)",
        )
        .fetch_one(&self.pool)
        .await?;
        let by_phase: Vec<(String, i64)> =
            sqlx::query_as("SELECT phase, COUNT(*) FROM sites GROUP BY phase")
                .fetch_all(&self.pool)
                .await?;
        let sites_by_phase = alveole_model::SitePhase::ALL
            .into_iter()
            .map(|phase| {
                let n = by_phase
                    .iter()
                    .find(|(p, _)| p == phase.as_str())
                    .map_or(0, |(_, n)| *n);
                (phase, n)
            })
            .collect();
        Ok(Counts {
            providers,
            nodes,
            members,
            sites,
            sites_by_phase,
        })
    }

    // --- node agents -------------------------------------------------------------------------

    async fn desired_state(&self, node: NodeId) -> StoreResult<NodeDesired> {
        // One read transaction, so the generation and the sites agree.
        let mut tx = self.pool.begin_with(BEGIN_READ).await?;
        let generation: Option<i64> =
            sqlx::query_scalar("SELECT desired_generation FROM nodes WHERE id = $1")
                .bind(node.0)
                .fetch_optional(&mut *tx)
                .await?;
        let generation = generation.ok_or(StoreError::NotFound { kind: "node" })?;
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {SITE_COLUMNS} FROM sites WHERE node_id = "));
        q.push_bind(node.0).push(" ORDER BY id");
        let rows: Vec<SiteRow> = q.build_query_as().fetch_all(&mut *tx).await?;
        // A moving address is in no node's state until its move completes.
        let filter: (bool, Json<Vec<String>>) =
            sqlx::query_as("SELECT input_filter, input_allowed FROM nodes WHERE id = $1")
                .bind(node.0)
                .fetch_one(&mut *tx)
                .await?;
        let peers: Vec<Json<Vec<String>>> =
            sqlx::query_scalar("SELECT public_addresses FROM nodes WHERE id <> $1 ORDER BY id")
                .bind(node.0)
                .fetch_all(&mut *tx)
                .await?;
        let allocated: Vec<(String, Option<Uuid>)> = sqlx::query_as(
            "SELECT address, site_id FROM ip_allocations a WHERE node_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM address_moves m WHERE m.address = a.address) \
             ORDER BY address",
        )
        .bind(node.0)
        .fetch_all(&mut *tx)
        .await?;
        let moves: Vec<SiteMoveRow> = sqlx::query_as(concat!(
            "SELECT ",
            site_move_columns!(),
            " FROM site_moves WHERE (from_node = $1 OR to_node = $1) \
              AND started_at = (SELECT MAX(started_at) FROM site_moves latest \
                                WHERE latest.site_id = site_moves.site_id) \
              ORDER BY started_at, id"
        ))
        .bind(node.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let moves = moves
            .into_iter()
            .map(TryInto::try_into)
            .collect::<StoreResult<Vec<SiteMove>>>()?;
        let sites = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<StoreResult<Vec<Site>>>()?;
        let mut dedicated: BTreeMap<SiteId, Vec<std::net::IpAddr>> = BTreeMap::new();
        let mut addresses = Vec::with_capacity(allocated.len());
        for (address, site) in allocated {
            let parsed = parse_address(&address)?;
            if let Some(site) = site {
                dedicated.entry(SiteId(site)).or_default().push(parsed);
            }
            addresses.push(parsed);
        }
        let input_filter = filter.0.then(|| {
            // The admins' networks and the co-op's other nodes; a value that does not read
            // is left out (it cannot have been stored through validation).
            let allowed: std::collections::BTreeSet<Prefix> = filter
                .1
                .0
                .iter()
                .chain(peers.iter().flat_map(|p| p.0.iter()))
                .filter_map(|text| Prefix::parse_or_host(text).ok())
                .collect();
            alveole_model::InputFilter {
                allowed: allowed.into_iter().collect(),
            }
        });
        Ok(NodeDesired {
            generation: u64::try_from(generation).unwrap_or_default(),
            sites,
            dedicated,
            addresses,
            input_filter,
            moves,
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
        fetch_node(tx.conn(), node).await?;
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
        fetch_node(tx.conn(), node).await?;
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
        let mut q =
            QueryBuilder::<Db>::new(format!("SELECT {SITE_COLUMNS} FROM sites WHERE node_id = "));
        q.push_bind(node.0);
        let rows: Vec<SiteRow> = q.build_query_as().fetch_all(tx.conn()).await?;
        let sites = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<StoreResult<Vec<Site>>>()?;
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
            after.meta = next_meta(&site.meta);
            sqlx::query("UPDATE sites SET phase = $1, version = $2, updated_at = $3 WHERE id = $4")
                .bind(phase.as_str())
                .bind(after.meta.version)
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
        tx.commit_all(ctx, changes).await?;
        Ok(moved)
    }

    async fn node_inventories(
        &self,
    ) -> StoreResult<Vec<(NodeId, DateTime<Utc>, alveole_model::NodeInventory)>> {
        let rows: Vec<(Uuid, DateTime<Utc>, Json<alveole_model::NodeInventory>)> =
            sqlx::query_as("SELECT node_id, reported_at, inventory FROM node_inventory")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(node, at, inventory)| (NodeId(node), at, inventory.0))
            .collect())
    }

    async fn node_statuses(&self) -> StoreResult<Vec<NodeStatus>> {
        let rows: Vec<(Uuid, DateTime<Utc>, Json<NodeReport>)> =
            sqlx::query_as("SELECT node_id, reported_at, report FROM node_status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(node, reported_at, report)| NodeStatus {
                node_id: NodeId(node),
                reported_at,
                report: report.0,
            })
            .collect())
    }

    // --- the panel's own credentials -------------------------------------------------------

    async fn set_admin_token(
        &self,
        ctx: &AuditContext,
        name: &str,
        token_hash: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM admin_tokens WHERE name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        sqlx::query("INSERT INTO admin_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(token_hash)
            .bind(now())
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "admin_token.set",
            target_kind: "admin_token",
            target_id: name.to_owned(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn admin_token_hash(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT token_hash FROM admin_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn create_api_token(
        &self,
        ctx: &AuditContext,
        token: &ApiToken,
        token_hash: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch_member(tx.conn(), token.member_id).await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, member_id, name, scope, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id)
        .bind(token.member_id.0)
        .bind(&token.name)
        .bind(token.scope.as_str())
        .bind(token_hash)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(tx.conn())
        .await?;
        let change = Change::of("api_token.create", "api_token", token.id, None, Some(token));
        tx.commit(ctx, change).await
    }

    async fn disable_member(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        hand_to: Option<MemberId>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let before = fetch_member(tx.conn(), member).await?;
        if let Some(heir) = hand_to {
            fetch_member(tx.conn(), heir).await?;
        }
        let at = now();
        sqlx::query("UPDATE members SET disabled_at = $1 WHERE id = $2")
            .bind(at)
            .bind(member.0)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE member_id = $2 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(member.0)
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM sessions WHERE member_id = $1")
            .bind(member.0)
            .execute(tx.conn())
            .await?;
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM sites WHERE owner_id = $1")
            .bind(member.0)
            .fetch_all(tx.conn())
            .await?;
        let mut changes = vec![Change {
            action: "member.disable",
            target_kind: "member",
            target_id: member.to_string(),
            before: serde_json::to_value(&before).ok(),
            after: Some(serde_json::json!({
                "disabled_at": at,
                "sites": ids.len(),
                "handed_to": hand_to,
            })),
        }];
        for id in ids {
            let site = fetch_site(tx.conn(), SiteId(id)).await?;
            let mut after = site.clone();
            after.meta = next_meta(&site.meta);
            match hand_to {
                Some(heir) => after.owner_id = heir,
                None => after.phase = SitePhase::Stopped,
            }
            sqlx::query(
                "UPDATE sites SET owner_id = $1, phase = $2, version = $3, updated_at = $4 \
                 WHERE id = $5",
            )
            .bind(after.owner_id.0)
            .bind(after.phase.as_str())
            .bind(after.meta.version)
            .bind(after.meta.updated_at)
            .bind(id)
            .execute(tx.conn())
            .await?;
            bump_generation(&mut tx, site.node_id).await?;
            changes.push(Change::of(
                "site.update",
                "site",
                id,
                Some(&site),
                Some(&after),
            ));
        }
        tx.commit_all(ctx, changes).await
    }

    async fn create_ip_pool(&self, ctx: &AuditContext, pool: &IpPool) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch_provider(tx.conn(), pool.provider_id).await?;
        let existing: Vec<String> = sqlx::query_scalar("SELECT prefix FROM ip_pools")
            .fetch_all(tx.conn())
            .await?;
        for other in existing.iter().filter_map(|p| Prefix::parse(p).ok()) {
            if pool.prefix.overlaps(&other) {
                return Err(StoreError::Conflict {
                    message: format!("{} overlaps the pool {other}", pool.prefix),
                    errors: vec![FieldError::new(
                        "prefix",
                        "prefix.overlap",
                        format!("overlaps the pool {other}"),
                    )],
                });
            }
        }
        sqlx::query(
            "INSERT INTO ip_pools (id, provider_id, prefix, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(pool.id)
        .bind(pool.provider_id.0)
        .bind(pool.prefix.to_string())
        .bind(pool.created_at)
        .execute(tx.conn())
        .await?;
        let change = Change::of("ip_pool.create", "ip_pool", pool.id, None, Some(pool));
        tx.commit(ctx, change).await
    }

    async fn ip_pools(&self) -> StoreResult<Vec<(IpPool, u64)>> {
        let rows: Vec<(Uuid, Uuid, String, DateTime<Utc>, i64)> = sqlx::query_as(
            "SELECT p.id, p.provider_id, p.prefix, p.created_at, \
             (SELECT COUNT(*) FROM ip_allocations a WHERE a.pool_id = p.id) \
             FROM ip_pools p ORDER BY p.prefix",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, provider, prefix, created_at, used)| {
                let prefix = Prefix::parse(&prefix).map_err(|e| StoreError::Corrupt {
                    kind: "ip pool",
                    id: id.to_string(),
                    reason: e.message,
                })?;
                Ok((
                    IpPool {
                        id,
                        provider_id: ProviderId(provider),
                        prefix,
                        created_at,
                    },
                    u64::try_from(used).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn delete_ip_pool(&self, ctx: &AuditContext, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let prefix: Option<String> =
            sqlx::query_scalar("SELECT prefix FROM ip_pools WHERE id = $1")
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
        let prefix = prefix.ok_or(StoreError::NotFound { kind: "ip pool" })?;
        let used: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ip_allocations WHERE pool_id = $1")
                .bind(id)
                .fetch_one(tx.conn())
                .await?;
        if used > 0 {
            return Err(StoreError::Conflict {
                message: format!("{used} addresses of {prefix} are allocated: release them first"),
                errors: vec![],
            });
        }
        sqlx::query("DELETE FROM ip_pools WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "ip_pool.delete",
            target_kind: "ip_pool",
            target_id: id.to_string(),
            before: Some(serde_json::json!({"prefix": prefix})),
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn allocate_ip(
        &self,
        ctx: &AuditContext,
        pool: Uuid,
        node: NodeId,
        site: Option<SiteId>,
        address: Option<std::net::IpAddr>,
    ) -> StoreResult<IpAllocation> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let prefix: Option<String> =
            sqlx::query_scalar("SELECT prefix FROM ip_pools WHERE id = $1")
                .bind(pool)
                .fetch_optional(tx.conn())
                .await?;
        let prefix = prefix
            .and_then(|p| Prefix::parse(&p).ok())
            .ok_or(StoreError::NotFound { kind: "ip pool" })?;
        fetch_node(tx.conn(), node).await?;
        if let Some(site) = site
            && fetch_site(tx.conn(), site).await?.node_id != Some(node)
        {
            return Err(StoreError::Conflict {
                message: "the site is not on this node".into(),
                errors: vec![FieldError::new(
                    "site_id",
                    "site.other_node",
                    "a site's dedicated address is on the node it runs on",
                )],
            });
        }
        let taken: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT address FROM ip_allocations WHERE pool_id = $1")
                .bind(pool)
                .fetch_all(tx.conn())
                .await?
                .into_iter()
                .collect();
        let address = match address {
            Some(address) if !prefix.is_usable(address) => {
                return Err(StoreError::Conflict {
                    message: format!("{address} is not a usable address of {prefix}"),
                    errors: vec![FieldError::new(
                        "address",
                        "address.outside",
                        format!("not a usable address of {prefix}"),
                    )],
                });
            }
            Some(address) => address,
            None => prefix
                .usable()
                .find(|a| !taken.contains(&a.to_string()))
                .ok_or_else(|| StoreError::Conflict {
                    message: format!("every address of {prefix} is allocated"),
                    errors: vec![],
                })?,
        };
        let allocation = IpAllocation {
            address,
            pool_id: pool,
            node_id: node,
            site_id: site,
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO ip_allocations (address, pool_id, node_id, site_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(address.to_string())
        .bind(pool)
        .bind(node.0)
        .bind(site.map(|s| s.0))
        .bind(allocation.created_at)
        .execute(tx.conn())
        .await?;
        // The node routes the address (and a site's, for that site).
        bump_generation(&mut tx, Some(node)).await?;
        let change = Change::of(
            "ip.allocate",
            "ip_address",
            address,
            None,
            Some(&allocation),
        );
        tx.commit(ctx, change).await?;
        Ok(allocation)
    }

    async fn ip_allocations(&self) -> StoreResult<Vec<IpAllocation>> {
        let rows: Vec<(String, Uuid, Uuid, Option<Uuid>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT address, pool_id, node_id, site_id, created_at FROM ip_allocations \
             ORDER BY address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(address, pool_id, node, site, created_at)| {
                Ok(IpAllocation {
                    address: parse_address(&address)?,
                    pool_id,
                    node_id: NodeId(node),
                    site_id: site.map(SiteId),
                    created_at,
                })
            })
            .collect()
    }

    async fn release_ip(&self, ctx: &AuditContext, address: std::net::IpAddr) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let held_by: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM ip_allocations WHERE address = $1 RETURNING node_id")
                .bind(address.to_string())
                .fetch_optional(tx.conn())
                .await?;
        let Some(node) = held_by else {
            return Err(StoreError::NotFound {
                kind: "ip allocation",
            });
        };
        // The node stops routing the address.
        bump_generation(&mut tx, Some(NodeId(node))).await?;
        let change = Change {
            action: "ip.release",
            target_kind: "ip_address",
            target_id: address.to_string(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn start_address_move(
        &self,
        ctx: &AuditContext,
        address: std::net::IpAddr,
        to: NodeId,
        forced: bool,
    ) -> StoreResult<AddressMove> {
        let mut tx = self.begin_write().await?;
        lock_site_writes(tx.conn()).await?;
        let held: Option<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT node_id, site_id FROM ip_allocations WHERE address = $1")
                .bind(address.to_string())
                .fetch_optional(tx.conn())
                .await?;
        let (from, site) = held.ok_or(StoreError::NotFound {
            kind: "ip allocation",
        })?;
        let from = NodeId(from);
        fetch_node(tx.conn(), to).await?;
        if from == to {
            return Err(StoreError::Conflict {
                message: format!("{address} is already on this node"),
                errors: vec![FieldError::new(
                    "to_node",
                    "address.same_node",
                    "the address is already on this node",
                )],
            });
        }
        if let Some(site) = site
            && fetch_site(tx.conn(), SiteId(site)).await?.node_id != Some(to)
        {
            return Err(StoreError::Conflict {
                message: format!("{address} is dedicated to a site that does not run on that node"),
                errors: vec![FieldError::new(
                    "to_node",
                    "address.site_elsewhere",
                    "a site's dedicated address moves with its site: move the site first",
                )],
            });
        }
        let moving: Option<Uuid> =
            sqlx::query_scalar("SELECT to_node FROM address_moves WHERE address = $1")
                .bind(address.to_string())
                .fetch_optional(tx.conn())
                .await?;
        if moving.is_some() {
            return Err(StoreError::Conflict {
                message: format!("{address} is already moving: finish or cancel that move first"),
                errors: vec![],
            });
        }
        // The old node lets the address go in its next desired state.
        bump_generation(&mut tx, Some(from)).await?;
        let release_generation: i64 =
            sqlx::query_scalar("SELECT desired_generation FROM nodes WHERE id = $1")
                .bind(from.0)
                .fetch_one(tx.conn())
                .await?;
        let movement = AddressMove {
            address,
            from_node: from,
            to_node: to,
            release_generation: u64::try_from(release_generation).unwrap_or_default(),
            forced,
            started_at: now(),
            last_error: None,
        };
        sqlx::query(
            "INSERT INTO address_moves \
             (address, from_node, to_node, release_generation, forced, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(address.to_string())
        .bind(from.0)
        .bind(to.0)
        .bind(release_generation)
        .bind(forced)
        .bind(movement.started_at)
        .execute(tx.conn())
        .await?;
        let change = Change::of(
            "ip.move.start",
            "ip_address",
            address,
            None,
            Some(&movement),
        );
        tx.commit(ctx, change).await?;
        Ok(movement)
    }

    async fn address_moves(&self) -> StoreResult<Vec<AddressMove>> {
        type Row = (String, Uuid, Uuid, i64, bool, DateTime<Utc>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT address, from_node, to_node, release_generation, forced, started_at, \
             last_error FROM address_moves ORDER BY started_at, address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(address, from, to, generation, forced, started_at, last_error)| {
                    Ok(AddressMove {
                        address: parse_address(&address)?,
                        from_node: NodeId(from),
                        to_node: NodeId(to),
                        release_generation: u64::try_from(generation).unwrap_or_default(),
                        forced,
                        started_at,
                        last_error,
                    })
                },
            )
            .collect()
    }

    async fn complete_address_move(
        &self,
        ctx: &AuditContext,
        address: std::net::IpAddr,
    ) -> StoreResult<IpAllocation> {
        let mut tx = self.begin_write().await?;
        let moving: Option<(Uuid, Uuid, bool, DateTime<Utc>)> = sqlx::query_as(
            "DELETE FROM address_moves WHERE address = $1 \
             RETURNING from_node, to_node, forced, started_at",
        )
        .bind(address.to_string())
        .fetch_optional(tx.conn())
        .await?;
        let (from, to, forced, started_at) = moving.ok_or(StoreError::NotFound {
            kind: "address move",
        })?;
        let row: (Uuid, Option<Uuid>, DateTime<Utc>) = sqlx::query_as(
            "UPDATE ip_allocations SET node_id = $1 WHERE address = $2 \
             RETURNING pool_id, site_id, created_at",
        )
        .bind(to)
        .bind(address.to_string())
        .fetch_one(tx.conn())
        .await?;
        // The new node takes the address in its next desired state.
        bump_generation(&mut tx, Some(NodeId(to))).await?;
        let completed_at = now();
        let change = Change {
            action: "ip.move.complete",
            target_kind: "ip_address",
            target_id: address.to_string(),
            before: Some(serde_json::json!({"node_id": from})),
            after: Some(serde_json::json!({
                "node_id": to,
                "forced": forced,
                "started_at": started_at,
                "took_ms": (completed_at - started_at).num_milliseconds(),
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(IpAllocation {
            address,
            pool_id: row.0,
            node_id: NodeId(to),
            site_id: row.1.map(SiteId),
            created_at: row.2,
        })
    }

    async fn note_address_move_error(
        &self,
        address: std::net::IpAddr,
        error: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE address_moves SET last_error = $1 WHERE address = $2")
            .bind(error)
            .bind(address.to_string())
            .execute(tx.conn())
            .await?;
        // A note on work in progress, not a change: nothing to audit.
        tx.commit_all(&AuditContext::new("system:failover", "-"), Vec::new())
            .await
    }

    async fn cancel_address_move(
        &self,
        ctx: &AuditContext,
        address: std::net::IpAddr,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let moving: Option<(Uuid, Uuid)> = sqlx::query_as(
            "DELETE FROM address_moves WHERE address = $1 RETURNING from_node, to_node",
        )
        .bind(address.to_string())
        .fetch_optional(tx.conn())
        .await?;
        let (from, to) = moving.ok_or(StoreError::NotFound {
            kind: "address move",
        })?;
        // The old node takes the address back.
        bump_generation(&mut tx, Some(NodeId(from))).await?;
        let change = Change {
            action: "ip.move.cancel",
            target_kind: "ip_address",
            target_id: address.to_string(),
            before: Some(serde_json::json!({"moving_to": to})),
            after: Some(serde_json::json!({"node_id": from})),
        };
        tx.commit(ctx, change).await
    }

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
        .bind(now())
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
        let change = Change::of("evacuation.start", "job", id, None, Some(&evacuation));
        tx.commit(ctx, change).await?;
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
        tx.commit_all(&AuditContext::new("system:jobs", "-"), Vec::new())
            .await?;
        Ok(ids.into_iter().map(JobId).collect())
    }

    async fn start_evacuation_item(
        &self,
        ctx: &AuditContext,
        job: JobId,
        site: SiteId,
        timing: MoveTiming,
    ) -> StoreResult<Option<SiteMove>> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE evacuation_items SET state = 'moving', started_at = $1 \
             WHERE job_id = $2 AND site_id = $3 AND state = 'pending'",
        )
        .bind(now())
        .bind(job.0)
        .bind(site.0)
        .execute(tx.conn())
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(None);
        }
        let to: Uuid = sqlx::query_scalar(
            "SELECT to_node FROM evacuation_items WHERE job_id = $1 AND site_id = $2",
        )
        .bind(job.0)
        .bind(site.0)
        .fetch_one(tx.conn())
        .await?;
        let movement = insert_site_move(&mut tx, site, NodeId(to), timing).await?;
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
        .bind(now())
        .bind(job.0)
        .bind(site.0)
        .execute(tx.conn())
        .await?;
        // The site's move records its own events; this is the job's bookkeeping.
        tx.commit_all(&AuditContext::new("system:jobs", "-"), Vec::new())
            .await
    }

    async fn finish_evacuation(&self, ctx: &AuditContext, id: JobId) -> StoreResult<Evacuation> {
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
        let finished_at = now();
        // A cancelled evacuation stays cancelled once its last moves have ended.
        let state = match before.state {
            JobState::Cancelled => JobState::Cancelled,
            _ => JobState::Done,
        };
        sqlx::query(
            "UPDATE jobs SET state = $1, finished_at = $2, lease_owner = NULL, lease_until = NULL \
             WHERE id = $3",
        )
        .bind(state.as_str())
        .bind(finished_at)
        .bind(id.0)
        .execute(tx.conn())
        .await?;
        let after = fetch_evacuation(tx.conn(), id).await?;
        let change = Change {
            action: "evacuation.finish",
            target_kind: "job",
            target_id: id.to_string(),
            before: Some(serde_json::json!({"state": before.state.as_str()})),
            after: Some(serde_json::json!({
                "items": after.counts(),
                "predicted_seconds": after.spec.predicted_seconds,
                "took_seconds": (finished_at - after.created_at).num_seconds(),
            })),
        };
        tx.commit(ctx, change).await?;
        Ok(after)
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
        tx.commit_all(&AuditContext::new("system:moves", "-"), Vec::new())
            .await
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
        let switched_at = now();
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
        sqlx::query("UPDATE sites SET node_id = $1 WHERE id = $2")
            .bind(before.to_node.0)
            .bind(before.site_id.0)
            .execute(tx.conn())
            .await?;
        bump_generation(&mut tx, Some(before.from_node)).await?;
        bump_generation(&mut tx, Some(before.to_node)).await?;
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

    async fn start_oidc_login(
        &self,
        state_hash: &str,
        nonce: &str,
        pkce_verifier: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Sign-ins abandoned at the provider go with the next one.
        sqlx::query("DELETE FROM oidc_logins WHERE expires_at < $1")
            .bind(now())
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, nonce, pkce_verifier, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(state_hash)
        .bind(nonce)
        .bind(pkce_verifier)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit_all(&AuditContext::new("system:oidc", "-"), Vec::new())
            .await
    }

    async fn take_oidc_login(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(String, String)>> {
        let mut tx = self.begin_write().await?;
        let found: Option<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT nonce, pkce_verifier, expires_at FROM oidc_logins WHERE state_hash = $1",
        )
        .bind(state_hash)
        .fetch_optional(tx.conn())
        .await?;
        let Some((nonce, verifier, expires_at)) = found else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM oidc_logins WHERE state_hash = $1")
            .bind(state_hash)
            .execute(tx.conn())
            .await?;
        tx.commit_all(&AuditContext::new("system:oidc", "-"), Vec::new())
            .await?;
        Ok((expires_at > now).then_some((nonce, verifier)))
    }

    async fn member_for_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<MemberId>> {
        let member: Option<Uuid> = sqlx::query_scalar(
            "SELECT member_id FROM identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(member.map(MemberId))
    }

    async fn link_identity(
        &self,
        ctx: &AuditContext,
        issuer: &str,
        subject: &str,
        member: MemberId,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        fetch_member(tx.conn(), member).await?;
        sqlx::query(
            "INSERT INTO identities (issuer, subject, member_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(issuer)
        .bind(subject)
        .bind(member.0)
        .bind(now())
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "member.link_identity",
            target_kind: "member",
            target_id: member.to_string(),
            before: None,
            after: Some(serde_json::json!({"issuer": issuer, "subject": subject})),
        };
        tx.commit(ctx, change).await
    }

    async fn member_by_email(&self, email: &str) -> StoreResult<Option<MemberId>> {
        let member: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM members WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        Ok(member.map(MemberId))
    }

    async fn set_member_role(
        &self,
        ctx: &AuditContext,
        member: MemberId,
        role: alveole_model::Role,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let before = fetch_member(tx.conn(), member).await?;
        let mut after = before.clone();
        after.role = role;
        after.meta = next_meta(&before.meta);
        sqlx::query("UPDATE members SET role = $1, version = $2, updated_at = $3 WHERE id = $4")
            .bind(role.as_str())
            .bind(after.meta.version)
            .bind(after.meta.updated_at)
            .bind(member.0)
            .execute(tx.conn())
            .await?;
        let change = Change::of(
            "member.update",
            "member",
            member,
            Some(&before),
            Some(&after),
        );
        tx.commit(ctx, change).await
    }

    async fn active_member(&self, member: MemberId) -> StoreResult<Option<Member>> {
        let disabled: Option<Option<DateTime<Utc>>> =
            sqlx::query_scalar("SELECT disabled_at FROM members WHERE id = $1")
                .bind(member.0)
                .fetch_optional(&self.pool)
                .await?;
        match disabled {
            None => Err(StoreError::NotFound { kind: "member" }),
            Some(Some(_)) => Ok(None),
            Some(None) => fetch_member(&self.pool, member).await.map(Some),
        }
    }

    async fn api_tokens_of(&self, member: MemberId) -> StoreResult<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, member_id, name, scope, created_at, expires_at, revoked_at \
             FROM api_tokens WHERE member_id = $1 ORDER BY created_at",
        )
        .bind(member.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn revoke_api_token(&self, ctx: &AuditContext, id: Uuid) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, member_id, name, scope, created_at, expires_at, revoked_at \
             FROM api_tokens WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        let before: ApiToken = row
            .ok_or(StoreError::NotFound { kind: "token" })?
            .try_into()?;
        let now = now();
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(tx.conn())
            .await?;
        let after = ApiToken {
            revoked_at: Some(now),
            ..before.clone()
        };
        let change = Change::of(
            "api_token.revoke",
            "api_token",
            id,
            Some(&before),
            Some(&after),
        );
        tx.commit(ctx, change).await
    }

    async fn api_token_holder(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(ApiToken, Member)>> {
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT id, member_id, name, scope, created_at, expires_at, revoked_at FROM api_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token: ApiToken = row.try_into()?;
        let disabled: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT disabled_at FROM members WHERE id = $1")
                .bind(token.member_id.0)
                .fetch_one(&self.pool)
                .await?;
        if disabled.is_some() {
            return Ok(None);
        }
        let member = fetch_member(&self.pool, token.member_id).await?;
        Ok(Some((token, member)))
    }

    async fn create_break_glass(
        &self,
        ctx: &AuditContext,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        session_seconds: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO break_glass_tokens (token_hash, session_seconds, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(session_seconds)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "break_glass.issue",
            target_kind: "break_glass",
            target_id: token_hash.chars().take(12).collect(),
            before: None,
            after: Some(serde_json::json!({
                "link_expires_at": expires_at, "session_seconds": session_seconds
            })),
        };
        tx.commit(ctx, change).await
    }

    async fn use_break_glass(
        &self,
        ctx: &AuditContext,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.begin_write().await?;
        let found: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT session_seconds, expires_at FROM break_glass_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(tx.conn())
        .await?;
        // An unknown or expired link changes nothing (the transaction rolls back).
        let Some((seconds, _)) = found.filter(|(_, expires_at)| *expires_at > now) else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM break_glass_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "break_glass.use",
            target_kind: "break_glass",
            target_id: token_hash.chars().take(12).collect(),
            before: None,
            after: Some(serde_json::json!({"session_seconds": seconds})),
        };
        tx.commit(ctx, change).await?;
        Ok(Some(seconds))
    }

    async fn create_session(&self, ctx: &AuditContext, session: &Session) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, actor, csrf_token, created_at, expires_at, member_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.token_hash)
        .bind(&session.actor)
        .bind(&session.csrf_token)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.member_id.map(|m| m.0))
        .execute(tx.conn())
        .await?;
        // The event names the session by a prefix of its hash: enough to follow it, useless to replay.
        let change = Change {
            action: "session.create",
            target_kind: "session",
            target_id: session.token_hash.chars().take(12).collect(),
            before: None,
            after: Some(
                serde_json::json!({"actor": session.actor, "expires_at": session.expires_at}),
            ),
        };
        tx.commit(ctx, change).await
    }

    async fn find_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        idle: chrono::Duration,
    ) -> StoreResult<Option<Session>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT token_hash, actor, csrf_token, created_at, expires_at, last_seen_at, member_id \
             FROM sessions WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let last_seen = row.last_seen_at.unwrap_or(row.created_at);
        if now - last_seen >= idle {
            return Ok(None);
        }
        if now - last_seen >= chrono::Duration::minutes(1) {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(tx.conn())
                .await?;
            tx.commit_all(&AuditContext::new(row.actor.clone(), "-"), Vec::new())
                .await?;
        }
        Ok(Some(row.into()))
    }

    async fn delete_session(&self, ctx: &AuditContext, token_hash: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(tx.conn())
            .await?;
        let change = Change {
            action: "session.delete",
            target_kind: "session",
            target_id: token_hash.chars().take(12).collect(),
            before: None,
            after: None,
        };
        tx.commit(ctx, change).await
    }

    async fn audit_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, id, at, actor, action, target_kind, target_id, before, after, request_id, \
             chain_index, canonical, hash \
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn audit_head(&self) -> StoreResult<ChainHead> {
        let (length, hash): (i64, Option<String>) =
            sqlx::query_as("SELECT length, head FROM audit_chain WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(ChainHead {
            length: u64::try_from(length).unwrap_or(0),
            hash,
        })
    }

    async fn audit_records(
        &self,
        filter: &ExportFilter,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        // Chained events in chain order (the unique index on chain_index serves the scan);
        // then, once those run out, any event outside the chain (only after an edit of the
        // database), so that a check reaches it.
        let mut records = self.audit_rows(filter, Some(after), limit).await?;
        let left = limit.saturating_sub(u32::try_from(records.len()).unwrap_or(u32::MAX));
        if left > 0 {
            records.extend(self.audit_rows(filter, None, left).await?);
        }
        Ok(records)
    }

    async fn chain_unchained_events(&self) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        // Only a record from before the chain is chained: once the chain has begun, an event
        // outside it was put there behind the panel's back, and verification reports it.
        let head = read_chain_head_for_append(tx.conn()).await?;
        if head.length > 0 {
            return Ok(0);
        }
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, id, at, actor, action, target_kind, target_id, before, after, request_id, \
             chain_index, canonical, hash FROM audit_events WHERE chain_index IS NULL ORDER BY seq",
        )
        .fetch_all(tx.conn())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut head = head;
        let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
        for row in rows {
            let event = AuditEvent::from(row);
            let fields = EventFields {
                id: event.id,
                at: event.at,
                actor: event.actor,
                action: event.action,
                target_kind: event.target_kind,
                target_id: event.target_id,
                before: event.before,
                after: event.after,
                request_id: event.request_id,
            };
            let sealed = alveole_audit::seal(&fields, &head);
            sqlx::query(
                "UPDATE audit_events SET chain_index = $1, canonical = $2, hash = $3 WHERE seq = $4",
            )
            .bind(i64::try_from(sealed.index).unwrap_or(i64::MAX))
            .bind(&sealed.canonical)
            .bind(&sealed.hash)
            .bind(event.seq)
            .execute(tx.conn())
            .await?;
            head = ChainHead {
                length: sealed.index,
                hash: Some(sealed.hash),
            };
        }
        write_chain_head(tx.conn(), &head).await?;
        tx.0.commit().await?;
        Ok(count)
    }

    async fn record_action(&self, ctx: &AuditContext, change: Change) -> StoreResult<()> {
        self.begin_write().await?.commit(ctx, change).await
    }

    async fn record_checkpoint(
        &self,
        ctx: &AuditContext,
        checkpoint: &Checkpoint,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (length, head, at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i64::try_from(checkpoint.length).unwrap_or(i64::MAX))
        .bind(&checkpoint.head)
        .bind(checkpoint.at)
        .bind(&checkpoint.key_id)
        .bind(&checkpoint.signature)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "audit.checkpoint",
            target_kind: "audit_checkpoint",
            target_id: checkpoint.length.to_string(),
            before: None,
            after: serde_json::to_value(checkpoint).ok(),
        };
        tx.commit(ctx, change).await
    }

    async fn checkpoints(&self, limit: u32) -> StoreResult<Vec<Checkpoint>> {
        let rows: Vec<(i64, Option<String>, DateTime<Utc>, String, String)> = sqlx::query_as(
            "SELECT length, head, at, key_id, signature FROM audit_checkpoints \
             ORDER BY seq DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(length, head, at, key_id, signature)| Checkpoint {
                length: u64::try_from(length).unwrap_or(0),
                head,
                at,
                key_id,
                signature,
            })
            .collect())
    }

    async fn publish_audit_key(&self, ctx: &AuditContext, key: &AuditKey) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT key_id FROM audit_keys WHERE key_id = $1")
                .bind(&key.key_id)
                .fetch_optional(tx.conn())
                .await?;
        if known.is_some() {
            return Ok(false);
        }
        let at = now();
        sqlx::query("UPDATE audit_keys SET retired_at = $1 WHERE retired_at IS NULL")
            .bind(at)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO audit_keys (key_id, algorithm, public_key, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.key_id)
        .bind(&key.algorithm)
        .bind(&key.public_key)
        .bind(at)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "audit.key.publish",
            target_kind: "audit_key",
            target_id: key.key_id.clone(),
            before: None,
            after: serde_json::to_value(key).ok(),
        };
        tx.commit(ctx, change).await?;
        Ok(true)
    }

    async fn audit_keys(&self) -> StoreResult<Vec<PublishedKey>> {
        let rows: Vec<(String, String, String, DateTime<Utc>, Option<DateTime<Utc>>)> =
            sqlx::query_as(
                "SELECT key_id, algorithm, public_key, created_at, retired_at FROM audit_keys \
                 ORDER BY created_at",
            )
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(key_id, algorithm, public_key, created_at, retired_at)| PublishedKey {
                    key: AuditKey {
                        key_id,
                        algorithm,
                        public_key,
                    },
                    created_at,
                    retired_at,
                },
            )
            .collect())
    }
}

fn unknown_provider(error: StoreError) -> StoreError {
    match error {
        StoreError::NotFound { .. } => StoreError::Conflict {
            message: "the provider does not exist".into(),
            errors: vec![FieldError::new(
                "provider_id",
                "provider.unknown",
                "no provider has this id",
            )],
        },
        other => other,
    }
}
