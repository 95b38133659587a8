//! Implements `SiteKeyStore`: one table per kind of key, the same statements for each.

use std::collections::BTreeMap;

use alveole_model::{NodeId, SiteId};
use async_trait::async_trait;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::Db;

use super::{SqlStore, bump_generation};
use crate::StoreResult;
use crate::areas::site_keys::{SiteKeyKind, SiteKeyStore};

#[async_trait]
impl SiteKeyStore for SqlStore {
    async fn ensure_site_key(
        &self,
        kind: SiteKeyKind,
        site: SiteId,
        sealed: &str,
    ) -> StoreResult<String> {
        let table = kind.table();
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        // The table's name comes from a closed list (`SiteKeyKind::table`), never from input.
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (site_id, sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (site_id) DO NOTHING"
        )))
        .bind(site.0)
        .bind(sealed)
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected()
            > 0;
        let kept: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT sealed FROM {table} WHERE site_id = $1"
        )))
        .bind(site.0)
        .fetch_one(tx.conn())
        .await?;
        // Only a new key changes what the site's node is told.
        if inserted {
            let node: Option<Uuid> = sqlx::query_scalar("SELECT node_id FROM sites WHERE id = $1")
                .bind(site.0)
                .fetch_optional(tx.conn())
                .await?
                .flatten();
            bump_generation(&mut tx, node.map(NodeId)).await?;
        }
        // A key is not a change to the platform anyone audits: what needed it is.
        tx.commit_bookkeeping().await?;
        Ok(kept)
    }

    async fn site_keys(&self, kind: SiteKeyKind) -> StoreResult<Vec<(SiteId, String)>> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT site_id, sealed FROM {} ORDER BY site_id",
            kind.table()
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, k)| (SiteId(s), k)).collect())
    }

    async fn reseal_site_keys(
        &self,
        kind: SiteKeyKind,
        keys: &[(SiteId, String)],
    ) -> StoreResult<()> {
        let statement = format!("UPDATE {} SET sealed = $1 WHERE site_id = $2", kind.table());
        let mut tx = self.begin_write().await?;
        for (site, sealed) in keys {
            sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .bind(sealed)
                .bind(site.0)
                .execute(tx.conn())
                .await?;
        }
        tx.commit_bookkeeping().await
    }

    async fn sites_without_key(&self, kind: SiteKeyKind) -> StoreResult<Vec<SiteId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(kind.missing_query())
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(SiteId).collect())
    }
}

/// The sealed admission keys of `sites` (those that have one).
pub(super) async fn admission_keys_of<'e, E>(
    ex: E,
    sites: &[SiteId],
) -> StoreResult<BTreeMap<SiteId, String>>
where
    E: Executor<'e, Database = Db>,
{
    if sites.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut q =
        QueryBuilder::<Db>::new("SELECT site_id, sealed FROM admission_keys WHERE site_id IN (");
    let mut list = q.separated(", ");
    for site in sites {
        list.push_bind(site.0);
    }
    q.push(")");
    let rows: Vec<(Uuid, String)> = q.build_query_as().fetch_all(ex).await?;
    Ok(rows.into_iter().map(|(s, k)| (SiteId(s), k)).collect())
}
