//! `alveole bench audit-verify`: how long `verify` takes over a large audit record (SQLite),
//! against the naive baseline of reading the same rows without checking anything.

use std::time::Instant;

use alveole_audit::{ChainHead, EventFields, seal};
use anyhow::Context;
use sqlx::Connection;
use sqlx::types::Json;

/// Rows per INSERT statement (SQLite allows 32,766 parameters; 12 per row).
const BATCH: usize = 500;

pub async fn verify(database_url: &str, events: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        database_url.starts_with("sqlite:"),
        "this bench fills an SQLite database (sqlite://FILE)"
    );
    let store = alveole_store::connect(database_url)
        .await
        .context("opening the bench database")?;
    let start = store.audit_head().await?;
    let filling = Instant::now();
    let head = fill(database_url, &start, events).await?;
    eprintln!(
        "filled {events} chained events in {:.1?}",
        filling.elapsed()
    );

    let checking = Instant::now();
    let report = alveole_store::verify_audit(store.as_ref(), &[], None).await?;
    let verify = checking.elapsed();
    anyhow::ensure!(
        report.intact && report.head == head,
        "the record does not verify: {:?}",
        report.first_break
    );

    // The baseline: the same rows read, page by page in chain order, and nothing checked.
    let reading = Instant::now();
    let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
    let mut after = 0i64;
    let mut rows = 0u64;
    loop {
        let page: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT chain_index, canonical, hash FROM audit_events \
             WHERE chain_index > $1 ORDER BY chain_index LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&mut conn)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        rows += page.len() as u64;
    }
    let read = reading.elapsed();
    println!(
        "verify over {} events: {:.2} s ({:.0} events/s); reading the same rows unchecked: {:.2} s ({rows} rows); ratio {:.2}x",
        report.head.length,
        verify.as_secs_f64(),
        report.head.length as f64 / verify.as_secs_f64(),
        read.as_secs_f64(),
        verify.as_secs_f64() / read.as_secs_f64()
    );
    Ok(())
}

/// Appends `events` chained events after `head` in one transaction, as the store would have
/// written them one by one; returns the new head.
async fn fill(database_url: &str, head: &ChainHead, events: u64) -> anyhow::Result<ChainHead> {
    let mut conn = sqlx::SqliteConnection::connect(database_url).await?;
    let mut tx = conn.begin().await?;
    let mut head = head.clone();
    let mut batch = Vec::with_capacity(BATCH);
    for n in 0..events {
        let fields = EventFields {
            id: uuid::Uuid::now_v7(),
            at: chrono::Utc::now(),
            actor: "system:bench".into(),
            action: "site.update".into(),
            target_kind: "site".into(),
            target_id: format!("bench-{}", n % 1000),
            before: Some(serde_json::json!({"http_port": 8080, "notes": "before"})),
            after: Some(serde_json::json!({"http_port": 8081, "notes": "after"})),
            request_id: format!("bench-{n}"),
        };
        let at = chrono::DateTime::from_timestamp_micros(fields.at.timestamp_micros())
            .unwrap_or(fields.at);
        let fields = EventFields { at, ..fields };
        let sealed = seal(&fields, &head);
        head = ChainHead {
            length: sealed.index,
            hash: Some(sealed.hash.clone()),
        };
        batch.push((fields, sealed));
        if batch.len() == BATCH || n + 1 == events {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO audit_events (id, at, actor, action, target_kind, target_id, before, \
                 after, request_id, chain_index, canonical, hash) ",
            );
            insert.push_values(batch.drain(..), |mut row, (fields, sealed)| {
                row.push_bind(fields.id)
                    .push_bind(fields.at)
                    .push_bind(fields.actor)
                    .push_bind(fields.action)
                    .push_bind(fields.target_kind)
                    .push_bind(fields.target_id)
                    .push_bind(fields.before.map(Json))
                    .push_bind(fields.after.map(Json))
                    .push_bind(fields.request_id)
                    .push_bind(i64::try_from(sealed.index).unwrap_or(i64::MAX))
                    .push_bind(sealed.canonical)
                    .push_bind(sealed.hash);
            });
            insert.build().execute(&mut *tx).await?;
        }
    }
    sqlx::query("UPDATE audit_chain SET length = $1, head = $2 WHERE id = 1")
        .bind(i64::try_from(head.length).unwrap_or(i64::MAX))
        .bind(&head.hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(head)
}
