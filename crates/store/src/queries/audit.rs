//! The audit chain: events appended in each write's transaction, read in chain order, checked,
//! signed in checkpoints, and the last check kept.

use alveole_audit::export::ExportFilter;
use alveole_audit::{AuditKey, ChainHead, Checkpoint, EventFields};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use sqlx::types::Json;

use super::super::{Db, READ_CHAIN_HEAD_FOR_APPEND};
use super::{SqlStore, count};
use crate::rows::AuditRow;
use crate::{
    AuditContext, AuditEvent, AuditRecord, AuditStore, Change, PublishedKey, StoreResult,
    VerifiedPoint,
};

pub(super) async fn read_chain_head_for_append(
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

pub(super) async fn write_chain_head(
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

/// Records one event after `head`; returns the new head.
pub(super) async fn append_event(
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

const EVENT_COLUMNS: &str = "seq, id, at, actor, action, target_kind, target_id, before, \
     after, request_id, chain_index, canonical, hash";

/// Which events of the record a query reads, and in which order.
enum Span {
    /// Chained events after this position, in chain order.
    After(u64),
    /// The newest chained events first.
    Newest,
    /// Events outside the chain (only after an edit of the database), as written.
    Unchained,
}

/// `... WHERE <span> AND <filter>`.
fn push_filter(query: &mut QueryBuilder<Db>, span: &Span, filter: &ExportFilter) {
    match span {
        Span::After(after) => {
            query
                .push("chain_index > ")
                .push_bind(i64::try_from(*after).unwrap_or(i64::MAX));
        }
        Span::Newest => {
            query.push("chain_index IS NOT NULL");
        }
        Span::Unchained => {
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
}

impl SqlStore {
    /// Events of `span` matching `filter`, at most `limit`.
    async fn audit_rows(
        &self,
        span: Span,
        filter: &ExportFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let mut query =
            QueryBuilder::<Db>::new(format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE "));
        push_filter(&mut query, &span, filter);
        query.push(match span {
            Span::After(_) => " ORDER BY chain_index LIMIT ",
            Span::Newest => " ORDER BY chain_index DESC LIMIT ",
            Span::Unchained => " ORDER BY seq LIMIT ",
        });
        query.push_bind(i64::from(limit));
        let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[async_trait]
impl AuditStore for SqlStore {
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
        let mut records = self.audit_rows(Span::After(after), filter, limit).await?;
        let left = limit.saturating_sub(u32::try_from(records.len()).unwrap_or(u32::MAX));
        if left > 0 {
            records.extend(self.audit_rows(Span::Unchained, filter, left).await?);
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
        tx.tx.commit().await?;
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
        let at = tx.now;
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

    async fn newest_audit_records(
        &self,
        filter: &ExportFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.audit_rows(Span::Newest, filter, limit).await
    }

    async fn count_audit_records(&self, filter: &ExportFilter) -> StoreResult<u64> {
        let mut query = QueryBuilder::<Db>::new("SELECT COUNT(*) FROM audit_events WHERE ");
        push_filter(&mut query, &Span::Newest, filter);
        let total: i64 = query.build_query_scalar().fetch_one(&self.pool).await?;
        Ok(count(total))
    }

    async fn last_verification(&self) -> StoreResult<Option<VerifiedPoint>> {
        let found: Option<Json<VerifiedPoint>> =
            sqlx::query_scalar("SELECT point FROM audit_verification WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.map(|point| point.0))
    }

    async fn record_verification(&self, point: &VerifiedPoint) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_verification (id, point) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET point = excluded.point",
        )
        .bind(Json(point))
        .execute(tx.conn())
        .await?;
        tx.commit_bookkeeping().await
    }
}
