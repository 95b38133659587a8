//! The audit record: events in chain order, the chain's head, signed checkpoints and the keys
//! that sign them, and the last check of it all.

use alveole_audit::export::ExportFilter;
use alveole_audit::{AuditKey, ChainHead, Checkpoint};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    AuditContext, AuditEvent, AuditRecord, AuditVerification, Change, PublishedKey, StoreResult,
};

/// The last check of the audit record, kept so that a page shows it without checking again.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct VerifiedPoint {
    pub at: DateTime<Utc>,
    /// From the first event (else from the previous check's head onwards).
    pub full: bool,
    pub verification: AuditVerification,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Audit events after `after_seq`, oldest first.
    async fn audit_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>>;
    /// The chain's head as recorded.
    async fn audit_head(&self) -> StoreResult<ChainHead>;
    /// Chained events matching `filter`, in chain order, after position `after`.
    async fn audit_records(
        &self,
        filter: &ExportFilter,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// The newest `limit` chained events matching `filter`, newest first.
    async fn newest_audit_records(
        &self,
        filter: &ExportFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// How many chained events match `filter`.
    async fn count_audit_records(&self, filter: &ExportFilter) -> StoreResult<u64>;
    /// Chains the events recorded before the chain existed, in their order, when the chain has
    /// not begun yet (an upgrade); returns how many.
    async fn chain_unchained_events(&self) -> StoreResult<u64>;
    /// Keeps a signed checkpoint; its signing is itself an event (after the checkpoint).
    async fn record_checkpoint(
        &self,
        ctx: &AuditContext,
        checkpoint: &Checkpoint,
    ) -> StoreResult<()>;
    /// Records an action that changes no other row (an agent's certificate renewed).
    async fn record_action(&self, ctx: &AuditContext, change: Change) -> StoreResult<()>;
    /// The newest checkpoints first.
    async fn checkpoints(&self, limit: u32) -> StoreResult<Vec<Checkpoint>>;
    /// Publishes the key that signs checkpoints from now on (audited when it is new), and
    /// retires the others; their public keys stay published. Returns whether it was new.
    async fn publish_audit_key(&self, ctx: &AuditContext, key: &AuditKey) -> StoreResult<bool>;
    async fn audit_keys(&self) -> StoreResult<Vec<PublishedKey>>;
    /// The last check of the record, if any was made.
    async fn last_verification(&self) -> StoreResult<Option<VerifiedPoint>>;
    /// Keeps a check's result as the last one (bookkeeping, not audited).
    async fn record_verification(&self, point: &VerifiedPoint) -> StoreResult<()>;
}
