//! The PostgreSQL backend, for production and for several panel processes.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::{Backend, StoreResult};

type Db = sqlx::Postgres;
const BACKEND: Backend = Backend::Postgres;
/// A consistent snapshot for reads that span several statements.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
const BEGIN_WRITE: &str = "BEGIN";
/// The audit chain's head, locked until commit: appends queue on it and never fork the chain.
const READ_CHAIN_HEAD_FOR_APPEND: &str =
    "SELECT length, head FROM audit_chain WHERE id = 1 FOR UPDATE";

/// Arbitrary, fixed key of the advisory lock that serialises writes touching site placement
/// and host names (checks such as "is this name free" span several rows, so a row lock
/// cannot express them). Released at commit or rollback.
const SITE_WRITES_LOCK: i64 = 0x616c_7665_6f6c_6501;

async fn lock_site_writes(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SITE_WRITES_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Unfinished jobs whose lease is free, expired or the caller's; rows another process is
/// locking are skipped, so two processes never take the same job.
const CLAIMABLE_JOBS: &str = "SELECT id FROM jobs WHERE finished_at IS NULL \
     AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $2) \
     ORDER BY created_at LIMIT 16 FOR UPDATE SKIP LOCKED";

#[path = "queries/mod.rs"]
mod queries;

pub(crate) async fn connect(
    url: &str,
    clock: std::sync::Arc<dyn alveole_model::Clock>,
) -> StoreResult<queries::SqlStore> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await?;
    sqlx::migrate!("../../migrations/postgres")
        .run(&pool)
        .await?;
    Ok(queries::SqlStore::new(pool, clock))
}
