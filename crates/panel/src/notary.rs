//! The panel's notary: it signs checkpoints of the audit chain with the panel's Ed25519 key,
//! keeps them, and sends each one out (a webhook of the co-op's choosing), because a
//! checkpoint only protects the record once a copy lives outside the panel.

use std::sync::Arc;
use std::time::Duration;

use alveole_audit::{Checkpoint, SigningKey};
use alveole_store::{AuditContext, Store, StoreResult};
use chrono::{DateTime, Utc};

/// Signs and publishes checkpoints.
#[derive(Clone, Debug)]
pub struct Notary {
    key: Arc<SigningKey>,
    /// Where each new checkpoint is POSTed as JSON (an archive, a chat room, a mailing bot).
    webhook: Option<String>,
    /// `None` when no HTTP client could be made (then no webhook is called, and it is said).
    http: Option<reqwest::Client>,
}

impl Notary {
    pub fn new(key: SigningKey, webhook: Option<String>) -> Self {
        Self {
            key: Arc::new(key),
            webhook,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .inspect_err(
                    |error| tracing::error!(%error, "no HTTP client for the audit webhook"),
                )
                .ok(),
        }
    }

    /// Publishes the key's public half in the store (audited when it is new); the other keys
    /// are retired but stay published, so older checkpoints still verify.
    pub async fn publish_key(&self, store: &dyn Store) -> StoreResult<bool> {
        let ctx = AuditContext::new("system:audit", "audit-key");
        store.publish_audit_key(&ctx, &self.key.public()).await
    }

    /// Signs the chain's head now, keeps the checkpoint (recording who asked for it), and
    /// sends it to the webhook.
    pub async fn checkpoint(
        &self,
        store: &dyn Store,
        ctx: &AuditContext,
        now: DateTime<Utc>,
    ) -> StoreResult<Checkpoint> {
        let head = store.audit_head().await?;
        let checkpoint = self.key.sign(&head, now);
        store.record_checkpoint(ctx, &checkpoint).await?;
        tracing::info!(
            length = checkpoint.length,
            key_id = %checkpoint.key_id,
            "signed an audit checkpoint"
        );
        if let (Some(url), Some(http)) = (&self.webhook, &self.http) {
            let sent = http.post(url).json(&checkpoint).send().await;
            match sent.map(|r| r.error_for_status()) {
                Ok(Ok(_)) => {}
                Ok(Err(error)) | Err(error) => {
                    tracing::warn!(%error, %url, "could not send the audit checkpoint to the webhook");
                }
            }
        }
        Ok(checkpoint)
    }
}
