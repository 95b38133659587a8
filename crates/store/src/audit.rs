//! What the audited write path records. Every change commits together with one event, which
//! joins the audit chain in the same transaction; and the check of the whole record.

use alveole_audit::export::ExportFilter;
use alveole_audit::{AuditKey, ChainBreak, ChainHead, Checkpoint, Link};
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
    /// Position in the audit chain.
    pub chain_index: Option<u64>,
    /// SHA-256 of the event's canonical text (which names the previous event's hash).
    pub hash: Option<String>,
}

/// An event and the exact text its hash covers.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub event: AuditEvent,
    /// `None` for an event that is not chained (only possible if the database was edited).
    pub link: Option<Link>,
}

/// A key that signs checkpoints, with its lifetime.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PublishedKey {
    #[serde(flatten)]
    pub key: AuditKey,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// What checking the whole record found.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AuditVerification {
    /// Whether the chain, its columns and its checkpoints all hold.
    pub intact: bool,
    /// The head the events make up (up to the first break).
    pub head: ChainHead,
    /// The first broken event and why, when not intact.
    pub first_break: Option<ChainBreak>,
    /// Checkpoints that matched the chain: their length.
    pub checkpoints_verified: Vec<u64>,
}

/// Checks the record in the store from its first event: every hash and link, every event's
/// columns against the text that was hashed, the recorded head, and every checkpoint (the
/// store's and `outside` ones, kept elsewhere) with `keys` when given, else the store's keys.
pub async fn verify_audit(
    store: &dyn crate::Store,
    outside: &[Checkpoint],
    keys: Option<&[AuditKey]>,
) -> crate::StoreResult<AuditVerification> {
    verify_audit_from(store, &ChainHead::empty(), outside, keys).await
}

/// The same check from `from` onwards: a head an earlier check found intact, so that a
/// check's cost is what was recorded since, not the whole chain. Checkpoints at or after
/// `from` are checked; older ones were when the events they sign were.
pub async fn verify_audit_from(
    store: &dyn crate::Store,
    from: &ChainHead,
    outside: &[Checkpoint],
    keys: Option<&[AuditKey]>,
) -> crate::StoreResult<AuditVerification> {
    let mut head = from.clone();
    let mut hashes = std::collections::BTreeMap::new();
    if let Some(hash) = &from.hash {
        hashes.insert(from.length, hash.clone());
    }
    let mut first_break = None;
    let mut checkpoints = store.checkpoints(u32::MAX).await?;
    checkpoints.extend_from_slice(outside);
    checkpoints.retain(|c| c.length >= from.length);
    // Only the hashes checkpoints need are kept, not the whole chain.
    let wanted: std::collections::BTreeSet<u64> = checkpoints.iter().map(|c| c.length).collect();
    'pages: loop {
        let page = store
            .audit_records(&ExportFilter::default(), head.length, 1000)
            .await?;
        if page.is_empty() {
            break;
        }
        for record in page {
            let index = record.event.chain_index.unwrap_or(head.length + 1);
            let broken = |reason: &str| ChainBreak {
                index,
                reason: reason.to_owned(),
            };
            let Some(link) = record.link else {
                first_break = Some(broken("it was recorded outside the chain"));
                break 'pages;
            };
            let parsed = match alveole_audit::chain::verify_one(&head, &link) {
                Ok((_, parsed)) => parsed,
                Err(error) => {
                    first_break = Some(error);
                    break 'pages;
                }
            };
            if !columns_match(&record.event, &parsed.fields, &link) {
                first_break = Some(broken(
                    "its columns differ from the text that was hashed (they were edited)",
                ));
                break 'pages;
            }
            if wanted.contains(&link.index) {
                hashes.insert(link.index, link.hash.clone());
            }
            head = ChainHead {
                length: link.index,
                hash: Some(link.hash),
            };
        }
    }
    let recorded = store.audit_head().await?;
    if first_break.is_none() && recorded != head {
        first_break = Some(ChainBreak {
            index: head.length + 1,
            reason: format!(
                "the recorded head says {} events, the events make {}: events were removed from the end",
                recorded.length, head.length
            ),
        });
    }
    let published: Vec<AuditKey> = store
        .audit_keys()
        .await?
        .into_iter()
        .map(|k| k.key)
        .collect();
    let keys = keys.unwrap_or(&published);
    let mut verified = Vec::new();
    for checkpoint in &checkpoints {
        let failed = |reason: String| ChainBreak {
            index: checkpoint.length,
            reason: format!("the checkpoint of length {} {reason}", checkpoint.length),
        };
        let problem = if let Err(error) = checkpoint.verify(keys) {
            Some(failed(format!("does not verify: {error}")))
        } else if checkpoint.length > head.length {
            Some(failed(format!(
                "covers more events than the chain holds ({}): events were removed from the end",
                head.length
            )))
        } else if checkpoint.length > 0
            && hashes.get(&checkpoint.length) != checkpoint.head.as_ref()
        {
            Some(failed(
                "signed another event at its length: the chain was rewritten".into(),
            ))
        } else {
            None
        };
        match problem {
            Some(problem) if first_break.is_none() => first_break = Some(problem),
            Some(_) => {}
            None => verified.push(checkpoint.length),
        }
    }
    Ok(AuditVerification {
        intact: first_break.is_none(),
        head,
        first_break,
        checkpoints_verified: verified,
    })
}

/// Equal as canonical JSON: the column may keep `1.0` where the hashed text says `1`.
fn same_json(a: &Option<serde_json::Value>, b: &Option<serde_json::Value>) -> bool {
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(alveole_audit::canonical::to_string);
    text(a) == text(b)
}

/// Whether the event's columns say what its hashed text says.
fn columns_match(event: &AuditEvent, fields: &alveole_audit::EventFields, link: &Link) -> bool {
    fields.id == event.id
        && fields.at == event.at
        && fields.actor == event.actor
        && fields.action == event.action
        && fields.target_kind == event.target_kind
        && fields.target_id == event.target_id
        && same_json(&fields.before, &event.before)
        && same_json(&fields.after, &event.after)
        && fields.request_id == event.request_id
        && event.hash.as_deref() == Some(link.hash.as_str())
}
