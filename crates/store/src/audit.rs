//! What the audited write path records. Every change commits together with one event.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Who acts, and for which request or job: given by the caller of every write.
#[derive(Clone, Debug)]
pub struct AuditContext {
    /// `bootstrap-admin`, `member:<id>`, `system:<job>`.
    pub actor: String,
    pub request_id: String,
}

impl AuditContext {
    pub fn new(actor: impl Into<String>, request_id: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            request_id: request_id.into(),
        }
    }
}

/// One change, as the write path hands it to [`crate::Store`]'s transaction.
#[derive(Clone, Debug)]
pub struct Change {
    /// `site.create`, `node.update`, `session.create`, ...
    pub action: &'static str,
    pub target_kind: &'static str,
    pub target_id: String,
    /// The public (secret-free) serialisation of the resource before and after.
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl Change {
    /// Builds a change from resources' public serialisations (secrets redacted by their types).
    pub fn of<T: Serialize>(
        action: &'static str,
        target_kind: &'static str,
        target_id: impl ToString,
        before: Option<&T>,
        after: Option<&T>,
    ) -> Self {
        let json = |value: Option<&T>| value.and_then(|v| serde_json::to_value(v).ok());
        Self {
            action,
            target_kind,
            target_id: target_id.to_string(),
            before: json(before),
            after: json(after),
        }
    }
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: String,
}
