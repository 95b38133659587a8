//! The store's SQL, written once and compiled twice: `sqlite.rs` and `postgres.rs` each
//! include this folder as a module, with `super::Db` naming their database. Placeholders are
//! `$N`, which both drivers bind by position. One file per area, each implementing its trait
//! of `crate::areas`; this file holds what they share: the write transaction (the only way to
//! commit, with its audit events), reading rows, and telling nodes their state changed.

mod addresses;
mod agents;
mod audit;
mod backup_targets;
mod backups;
mod certificates;
mod drills;
mod identity;
mod jobs;
mod members;
mod moves;
mod nodes;
mod providers;
mod records;
mod series;
mod site_keys;
mod sites;

use std::sync::Arc;

use alveole_audit::EventFields;
use alveole_model::{Clock, FieldError, Meta, NodeId};
use chrono::{DateTime, Utc};
use sqlx::{Executor, Pool, QueryBuilder, Transaction};
use uuid::Uuid;

use super::{BACKEND, BEGIN_READ, BEGIN_WRITE, Db};
use crate::{AuditContext, Backend, Change, Page, PageRequest, Store, StoreError, StoreResult};

/// A store on one database.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: Pool<Db>,
    clock: Arc<dyn Clock>,
}

impl Store for SqlStore {
    fn backend(&self) -> Backend {
        BACKEND
    }
}

impl SqlStore {
    pub(super) fn new(pool: Pool<Db>, clock: Arc<dyn Clock>) -> Self {
        Self { pool, clock }
    }

    /// Now, to the microsecond: what both databases keep, so a value reads back as written.
    fn now(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
    }

    #[allow(clippy::disallowed_methods)] // the one place a transaction begins, with BEGIN_WRITE
    async fn begin_write(&self) -> StoreResult<WriteTx> {
        Ok(WriteTx {
            tx: self.pool.begin_with(BEGIN_WRITE).await?,
            now: self.now(),
        })
    }

    /// A consistent snapshot for reads that span several statements.
    async fn begin_read(&self) -> StoreResult<Transaction<'static, Db>> {
        Ok(self.pool.begin_with(BEGIN_READ).await?)
    }
}

/// A write transaction. Dropping it rolls back; the only way to commit records an audit event.
struct WriteTx {
    tx: Transaction<'static, Db>,
    /// The transaction's one "now": every time it writes, and its events' time.
    now: DateTime<Utc>,
}

impl WriteTx {
    fn conn(&mut self) -> &mut <Db as sqlx::Database>::Connection {
        &mut self.tx
    }

    async fn commit(self, ctx: &AuditContext, change: Change) -> StoreResult<()> {
        self.commit_all(ctx, vec![change]).await
    }

    /// Commits with one audit event per change, each appended to the audit chain. No change
    /// at all is only for bookkeeping and telemetry (an agent's heartbeat, a lease), which
    /// are not changes to the platform.
    async fn commit_all(mut self, ctx: &AuditContext, changes: Vec<Change>) -> StoreResult<()> {
        if !changes.is_empty() {
            let mut head = audit::read_chain_head_for_append(self.conn()).await?;
            for change in changes {
                let fields = EventFields {
                    id: Uuid::now_v7(),
                    at: self.now,
                    actor: ctx.actor.clone(),
                    action: change.action.to_owned(),
                    target_kind: change.target_kind.to_owned(),
                    target_id: change.target_id,
                    before: change.before,
                    after: change.after,
                    request_id: ctx.request_id.clone(),
                };
                head = audit::append_event(self.conn(), &fields, &head).await?;
            }
            audit::write_chain_head(self.conn(), &head).await?;
        }
        self.tx.commit().await?;
        Ok(())
    }

    /// Commits bookkeeping that changes nothing anyone audits.
    async fn commit_bookkeeping(self) -> StoreResult<()> {
        self.commit_all(&AuditContext::new("system:store", "-"), Vec::new())
            .await
    }

    fn fresh_meta(&self) -> Meta {
        Meta {
            version: 1,
            created_at: self.now,
            updated_at: self.now,
        }
    }

    fn next_meta(&self, previous: &Meta) -> Meta {
        Meta {
            version: previous.version + 1,
            created_at: previous.created_at,
            updated_at: self.now,
        }
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

/// A count or a length as the database keeps it (never negative).
fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn in_use(kind: &str, code: &str, what: &str, names: &[String]) -> StoreError {
    let message = format!("the {kind} still has {what}: {}", names.join(", "));
    StoreError::Conflict {
        message: message.clone(),
        errors: vec![FieldError::new("id", code, message)],
    }
}

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

/// Every row a query returns, validated into `T`.
async fn fetch_all<'e, R: DbRow, T: TryFrom<R, Error = StoreError>>(
    ex: impl Executor<'e, Database = Db>,
    mut q: QueryBuilder<Db>,
) -> StoreResult<Vec<T>> {
    let rows: Vec<R> = q.build_query_as().fetch_all(ex).await?;
    rows.into_iter().map(T::try_from).collect()
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
    let mut items: Vec<T> = fetch_all::<R, T>(pool, q).await?;
    let more = items.len() > page.limit as usize;
    items.truncate(page.limit as usize);
    let next_cursor = if more {
        items.last().map(|last| id(last).to_string())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

async fn names_of<'e>(
    ex: impl Executor<'e, Database = Db>,
    sql: &'static str,
    id: Uuid,
) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(sql).bind(id).fetch_all(ex).await?)
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
