//! The audited CRUD skeleton, written once for providers, nodes, members and sites. Each
//! write runs in one transaction: the checks that span rows, the row itself, the rows that
//! follow it (host names, nodes' generations), and its audit event. What differs per resource
//! is its [`Audited`] impl, in the resource's own file.

use alveole_model::Meta;
use async_trait::async_trait;
use serde::Serialize;
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::super::{Db, lock_site_writes};
use super::{DbRow, SqlStore, WriteTx, check_version, fetch_by_id, fetch_page};
use crate::{AuditContext, Change, Page, PageRequest, Records, StoreError, StoreResult, Stored};

/// How a resource is kept: its table and columns, and the checks and rows around its writes.
#[async_trait]
pub(super) trait Audited:
    Stored + Serialize + TryFrom<Self::Row, Error = StoreError>
{
    const TABLE: &'static str;
    /// Every column, in [`Audited::bind`]'s order.
    const COLUMNS: &'static str;
    /// Whether its writes serialise with every write touching sites' placement or names
    /// (checks such as "is this node's room enough" span several rows).
    const SERIALISED: bool;
    /// Its audit actions: created, updated, deleted (`site.create`, ...).
    const ACTIONS: Actions;
    type Row: DbRow;

    fn uuid(id: Self::Id) -> Uuid;
    fn meta(&self) -> &Meta;
    /// Binds every column's value, in [`Audited::COLUMNS`]'s order.
    fn bind(&self, q: &mut QueryBuilder<Db>);
    /// Adds the filter's conditions to `... WHERE 1 = 1`.
    fn filter(filter: &Self::Filter, q: &mut QueryBuilder<Db>);
    /// The stored form of a validated value.
    /// The item `new` makes; `before` is the stored one on an edit (what the input does not
    /// say, such as whether a member is disabled, is kept from it).
    fn build(id: Self::Id, new: Self::New, meta: Meta, before: Option<&Self>) -> Self;
    fn new_id() -> Self::Id;

    /// Checks what spans rows before a write; may complete `new` (a site's placement).
    async fn check(
        _tx: &mut WriteTx,
        _new: &mut Self::New,
        _before: Option<&Self>,
    ) -> StoreResult<()> {
        Ok(())
    }
    /// Writes the rows that follow a change (`None` before a create, after a delete).
    async fn follow(
        _tx: &mut WriteTx,
        _before: Option<&Self>,
        _after: Option<&Self>,
    ) -> StoreResult<()> {
        Ok(())
    }
    /// Refuses deleting what others still depend on.
    async fn check_delete(_tx: &mut WriteTx, _item: &Self) -> StoreResult<()> {
        Ok(())
    }
}

/// The audit actions of a resource's writes.
pub(super) struct Actions {
    pub create: &'static str,
    pub update: &'static str,
    pub delete: &'static str,
}

fn select<T: Audited>() -> String {
    format!("SELECT {} FROM {}", T::COLUMNS, T::TABLE)
}

/// The item as stored, in a transaction.
pub(super) async fn fetch<T: Audited>(tx: &mut WriteTx, id: T::Id) -> StoreResult<T> {
    fetch_by_id::<T::Row, T>(tx.conn(), T::KIND, &select::<T>(), T::uuid(id)).await
}

/// Writes a new row, or replaces the row with this id if it still has this version (a second
/// guard under the version check).
async fn write<T: Audited>(tx: &mut WriteTx, item: &T, replacing: Option<i64>) -> StoreResult<()> {
    let mut q = QueryBuilder::<Db>::new("");
    match replacing {
        None => {
            q.push(format!(
                "INSERT INTO {} ({}) VALUES (",
                T::TABLE,
                T::COLUMNS
            ));
            item.bind(&mut q);
            q.push(")");
        }
        Some(version) => {
            // Delete-and-insert would cascade to dependent rows; update the columns instead.
            q.push(format!("UPDATE {} SET ({}) = (", T::TABLE, T::COLUMNS));
            item.bind(&mut q);
            q.push(") WHERE id = ")
                .push_bind(T::uuid(item.id()))
                .push(" AND version = ")
                .push_bind(version);
        }
    }
    let result = q.build().execute(tx.conn()).await?;
    if result.rows_affected() != 1 {
        return Err(StoreError::Conflict {
            message: format!("{}: the row changed meanwhile", T::TABLE),
            errors: vec![],
        });
    }
    Ok(())
}

async fn begin<T: Audited>(store: &SqlStore) -> StoreResult<WriteTx> {
    let mut tx = store.begin_write().await?;
    if T::SERIALISED {
        lock_site_writes(tx.conn()).await?;
    }
    Ok(tx)
}

fn change<T: Audited>(
    action: &'static str,
    id: T::Id,
    before: Option<&T>,
    after: Option<&T>,
) -> Change {
    Change::of(action, T::KIND, id, before, after)
}

/// Deletes an item in `tx` (after its checks), with the rows that follow; the caller commits.
pub(super) async fn delete_in<T: Audited>(
    tx: &mut WriteTx,
    id: T::Id,
    version: Option<i64>,
) -> StoreResult<T> {
    let before = fetch::<T>(tx, id).await?;
    check_version(T::KIND, version, before.meta().version)?;
    T::check_delete(tx, &before).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE id = $1",
        T::TABLE
    )))
    .bind(T::uuid(id))
    .execute(tx.conn())
    .await?;
    T::follow(tx, Some(&before), None).await?;
    Ok(before)
}

/// Deletes an item as `action` (`site.delete`, `site.purge`): the transaction, still open for
/// what else the action writes, and its audit change.
pub(super) async fn delete_as<T: Audited>(
    store: &SqlStore,
    action: &'static str,
    id: T::Id,
    version: Option<i64>,
) -> StoreResult<(WriteTx, T, Change)> {
    let mut tx = begin::<T>(store).await?;
    let before = delete_in::<T>(&mut tx, id, version).await?;
    let change = change::<T>(action, id, Some(&before), None);
    Ok((tx, before, change))
}

#[async_trait]
impl<T: Audited> Records<T> for SqlStore {
    async fn list(&self, filter: &T::Filter, page: &PageRequest) -> StoreResult<Page<T>> {
        let mut q = QueryBuilder::<Db>::new(format!("{} WHERE 1 = 1", select::<T>()));
        T::filter(filter, &mut q);
        fetch_page::<T::Row, T>(&self.pool, q, page, |item| T::uuid(item.id())).await
    }

    async fn get(&self, id: T::Id) -> StoreResult<T> {
        fetch_by_id::<T::Row, T>(&self.pool, T::KIND, &select::<T>(), T::uuid(id)).await
    }

    async fn create(&self, ctx: &AuditContext, mut new: T::New) -> StoreResult<T> {
        let mut tx = begin::<T>(self).await?;
        T::check(&mut tx, &mut new, None).await?;
        let item = T::build(T::new_id(), new, tx.fresh_meta(), None);
        write(&mut tx, &item, None).await?;
        T::follow(&mut tx, None, Some(&item)).await?;
        tx.commit(
            ctx,
            change::<T>(T::ACTIONS.create, item.id(), None, Some(&item)),
        )
        .await?;
        Ok(item)
    }

    async fn update(
        &self,
        ctx: &AuditContext,
        id: T::Id,
        version: i64,
        mut new: T::New,
    ) -> StoreResult<T> {
        let mut tx = begin::<T>(self).await?;
        let before = fetch::<T>(&mut tx, id).await?;
        check_version(T::KIND, Some(version), before.meta().version)?;
        T::check(&mut tx, &mut new, Some(&before)).await?;
        let after = T::build(id, new, tx.next_meta(before.meta()), Some(&before));
        write(&mut tx, &after, Some(version)).await?;
        T::follow(&mut tx, Some(&before), Some(&after)).await?;
        tx.commit(
            ctx,
            change::<T>(T::ACTIONS.update, id, Some(&before), Some(&after)),
        )
        .await?;
        Ok(after)
    }

    async fn delete(&self, ctx: &AuditContext, id: T::Id, version: Option<i64>) -> StoreResult<()> {
        let (tx, _, change) = delete_as::<T>(self, T::ACTIONS.delete, id, version).await?;
        tx.commit(ctx, change).await
    }
}
