//! The SQLite backend: the embedded default. WAL for concurrent readers, a busy timeout, foreign
//! keys on, and `BEGIN IMMEDIATE` for every write so writers queue instead of failing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{Backend, StoreResult};

type Db = sqlx::Sqlite;
const BACKEND: Backend = Backend::Sqlite;
/// A consistent snapshot for reads that span several statements.
const BEGIN_READ: &str = "BEGIN";
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// The audit chain's head, read to append to it (the transaction is already exclusive).
const READ_CHAIN_HEAD_FOR_APPEND: &str = "SELECT length, head FROM audit_chain WHERE id = 1";

/// `BEGIN IMMEDIATE` already makes every write transaction exclusive.
async fn lock_site_writes(_conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    Ok(())
}

/// Unfinished jobs whose lease is free, expired or the caller's (the write transaction is
/// already exclusive).
const CLAIMABLE_JOBS: &str = "SELECT id FROM jobs WHERE finished_at IS NULL \
     AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < $2) \
     ORDER BY created_at LIMIT 16";

#[path = "queries/mod.rs"]
mod queries;

pub(crate) async fn connect(
    url: &str,
    clock: std::sync::Arc<dyn alveole_model::Clock>,
) -> StoreResult<queries::SqlStore> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true);
    // An in-memory database exists once per connection: keep exactly one.
    let max = if url.contains(":memory:") { 1 } else { 8 };
    let pool = SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await?;
    sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
    Ok(queries::SqlStore::new(pool, clock))
}
