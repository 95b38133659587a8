//! Naive baselines that benchmarks measure the store against (feature `bench`; the panel never
//! builds it): a site list paged with `LIMIT/OFFSET`, which keyset paging replaced.

use alveole_model::Site;
use sqlx::{Pool, Postgres, Sqlite};

use crate::StoreResult;
use crate::rows::{SITE_COLUMNS, SiteRow};

/// Sites paged by offset, on its own connections to the store's database.
#[derive(Debug)]
pub enum OffsetPaging {
    Sqlite(Pool<Sqlite>),
    Postgres(Pool<Postgres>),
}

impl OffsetPaging {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Ok(if crate::is_postgres(url) {
            Self::Postgres(Pool::connect(url).await?)
        } else {
            Self::Sqlite(Pool::connect(url).await?)
        })
    }

    /// `limit` sites from `offset` in id order: the database walks past every row before
    /// `offset`, which keyset paging does not.
    pub async fn sites(&self, offset: u32, limit: u32) -> StoreResult<Vec<Site>> {
        let sql = format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY id LIMIT $1 OFFSET $2");
        let sql = sqlx::AssertSqlSafe(sql);
        let rows: Vec<SiteRow> = match self {
            Self::Sqlite(pool) => {
                sqlx::query_as(sql)
                    .bind(i64::from(limit))
                    .bind(i64::from(offset))
                    .fetch_all(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(i64::from(limit))
                    .bind(i64::from(offset))
                    .fetch_all(pool)
                    .await?
            }
        };
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
