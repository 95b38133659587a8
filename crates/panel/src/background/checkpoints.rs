//! Signs a checkpoint of the audit chain when it has grown since the last one.

use alveole_store::AuditContext;
use async_trait::async_trait;

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

pub(super) struct SignCheckpoints;

#[async_trait]
impl Activity for SignCheckpoints {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let store = service.store();
        let head = store.audit_head().await?;
        let last = store.checkpoints(1).await?;
        // Grown: more than the event that recorded the last checkpoint.
        let grown = last.first().is_none_or(|c| c.length + 1 < head.length);
        if !grown {
            return Ok(String::new());
        }
        let ctx = AuditContext::new("system:audit", "periodic-checkpoint");
        let checkpoint = service.sign_checkpoint(&ctx).await?;
        Ok(format!("signed a checkpoint at {}", checkpoint.length))
    }
}
