//! Checks the audit chain from where the last check stopped, so that the audit pages show a
//! recent result without their cost growing with the chain; and from its first event at
//! start and then now and then, which an edit of events already checked needs to be seen.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::Activity;
use crate::error::ApiError;
use crate::service::Service;

#[derive(Default)]
pub(super) struct VerifyAudit {
    /// When this process last checked the whole chain.
    last_full: Option<DateTime<Utc>>,
}

#[async_trait]
impl Activity for VerifyAudit {
    async fn activate(&mut self, service: &Service) -> Result<String, ApiError> {
        let every = chrono::Duration::from_std(service.config().background.full_verification_every)
            .unwrap_or(chrono::Duration::days(1));
        let now = service.now();
        let full = self.last_full.is_none_or(|at| now - at >= every);
        let point = service.verify_audit(full).await?;
        if point.full {
            self.last_full = Some(now);
        }
        Ok(format!(
            "checked the audit chain ({}) up to {}: {}",
            if point.full { "whole" } else { "new events" },
            point.verification.head.length,
            if point.verification.intact {
                "intact"
            } else {
                "broken"
            }
        ))
    }
}
