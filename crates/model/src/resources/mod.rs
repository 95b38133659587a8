//! The resources of the control plane, one file each. Each has an `Input` (what a client
//! sends: raw values, so every problem can be reported against its field), a `validate` that
//! turns it into a typed `New*` value or the full list of errors, and the stored resource.
//!
//! PATCH is a JSON Merge Patch (RFC 7396) applied to the stored resource's input form and
//! validated like a create: one validator per resource, whatever the verb.

mod backup_target;
mod member;
mod node;
mod provider;
mod site;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{FieldError, ValidationErrors};

pub use backup_target::{BackupTarget, BackupTargetInput, NewBackupTarget, TargetKind};
pub use member::{Member, MemberInput, NewMember, Role};
pub use node::{Capacity, MAX_INPUT_ALLOWED, NewNode, Node, NodeInput, Overcommit};
pub use provider::{NewProvider, Provider, ProviderInput};
pub use site::{
    DEFAULT_REQUEST_BODY_BYTES, Limits, MAX_REQUEST_BODY_BYTES, NewSite, Reservation, Security,
    Site, SiteInput, Volume,
};

/// Bookkeeping every stored resource carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Meta {
    /// Incremented by every change; send it back in PATCH to detect concurrent edits.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An optional text field: absent or blank is `None`, anything else must parse.
fn optional_text<T>(
    errors: &mut ValidationErrors,
    field: &str,
    value: Option<String>,
    parse: fn(&str) -> Result<T, FieldError>,
) -> Option<Option<T>> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Some(None),
        Some(text) => errors.check(field, parse(text)).map(Some),
    }
}

/// Applies an RFC 7396 JSON Merge Patch to `target`.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(
                        target.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
    }
}
