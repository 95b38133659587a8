//! The hash chain. Each event's hash is the SHA-256 of its canonical text, and that text
//! names the previous event's hash and the event's position: changing, removing or reordering
//! one event breaks every later link, unless all of them are rewritten (which only a
//! checkpoint kept elsewhere reveals).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Version of the canonical form, inside every event's hashed text.
pub const FORMAT_VERSION: u64 = 1;

/// What one event says, before it is chained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventFields {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: String,
}

/// An event placed in the chain: what the store keeps beside the event's columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Sealed {
    pub index: u64,
    pub canonical: String,
    pub hash: String,
}

/// The chain's position after an event: what the next event links to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChainHead {
    /// How many events the chain holds (the last one's index).
    pub length: u64,
    /// The last event's hash; `None` for the empty chain.
    pub hash: Option<String>,
}

impl ChainHead {
    pub fn empty() -> Self {
        Self {
            length: 0,
            hash: None,
        }
    }
}

/// One link as read back: its position, its canonical text and the hash recorded for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub index: u64,
    pub canonical: String,
    pub hash: String,
}

/// Where and why a chain stops being trustworthy.
#[derive(
    Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema,
)]
#[error("the audit chain is broken at event {index}: {reason}")]
pub struct ChainBreak {
    pub index: u64,
    pub reason: String,
}

/// SHA-256 of the text, in hex.
pub fn hash_of(canonical: &str) -> String {
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The canonical JSON object of an event at `index` after `prev`.
fn canonical_value(fields: &EventFields, index: u64, prev: Option<&str>) -> Value {
    json!({
        "v": FORMAT_VERSION,
        "index": index,
        "prev": prev,
        "id": fields.id,
        // Microseconds, as both databases keep them; the text, not the column, is hashed.
        "at": fields.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "actor": fields.actor,
        "action": fields.action,
        "target_kind": fields.target_kind,
        "target_id": fields.target_id,
        "before": fields.before,
        "after": fields.after,
        "request_id": fields.request_id,
    })
}

/// Places `fields` after `head`.
pub fn seal(fields: &EventFields, head: &ChainHead) -> Sealed {
    let index = head.length + 1;
    let canonical =
        crate::canonical::to_string(&canonical_value(fields, index, head.hash.as_deref()));
    let hash = hash_of(&canonical);
    Sealed {
        index,
        canonical,
        hash,
    }
}

/// What an event's canonical text says: its fields, index and previous hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub fields: EventFields,
    pub index: u64,
    pub prev: Option<String>,
}

/// Reads a canonical text back; `None` when it is not one this version wrote.
pub fn parse(canonical: &str) -> Option<Parsed> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Text {
        v: u64,
        index: u64,
        prev: Option<String>,
        id: Uuid,
        at: DateTime<Utc>,
        actor: String,
        action: String,
        target_kind: String,
        target_id: String,
        before: Option<Value>,
        after: Option<Value>,
        request_id: String,
    }
    let text: Text = serde_json::from_str(canonical).ok()?;
    (text.v == FORMAT_VERSION).then_some(Parsed {
        index: text.index,
        prev: text.prev,
        fields: EventFields {
            id: text.id,
            at: text.at,
            actor: text.actor,
            action: text.action,
            target_kind: text.target_kind,
            target_id: text.target_id,
            before: text.before,
            after: text.after,
            request_id: text.request_id,
        },
    })
}

/// Checks links that follow `start` (the empty chain, or a head an earlier check trusted):
/// each text hashes to its recorded hash, is canonical, names its own position and the hash
/// before it. Returns the head after the last link, or the first broken one.
pub fn verify(
    start: &ChainHead,
    links: impl IntoIterator<Item = Link>,
) -> Result<ChainHead, ChainBreak> {
    let mut head = start.clone();
    for link in links {
        head = verify_one(&head, &link)?.0;
    }
    Ok(head)
}

/// Checks one link after `head`; returns the new head and what the link's text says.
pub fn verify_one(head: &ChainHead, link: &Link) -> Result<(ChainHead, Parsed), ChainBreak> {
    let broken = |reason: &str| ChainBreak {
        index: link.index,
        reason: reason.to_owned(),
    };
    if link.index != head.length + 1 {
        return Err(ChainBreak {
            index: head.length + 1,
            reason: format!(
                "event {} is missing (the next one recorded is {})",
                head.length + 1,
                link.index
            ),
        });
    }
    if hash_of(&link.canonical) != link.hash {
        return Err(broken(
            "its content does not match its hash (it was changed after it was recorded)",
        ));
    }
    let Some(parsed) = parse(&link.canonical) else {
        return Err(broken("its recorded text is not an audit event"));
    };
    if crate::canonical::to_string(&canonical_value(
        &parsed.fields,
        parsed.index,
        parsed.prev.as_deref(),
    )) != link.canonical
    {
        return Err(broken("its recorded text is not in canonical form"));
    }
    if parsed.index != link.index {
        return Err(broken("its text names another position"));
    }
    if parsed.prev != head.hash {
        return Err(broken(
            "it does not link to the event before it (an event before it was changed, removed or inserted)",
        ));
    }
    let next = ChainHead {
        length: link.index,
        hash: Some(link.hash.clone()),
    };
    Ok((next, parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(n: u32) -> EventFields {
        EventFields {
            id: Uuid::now_v7(),
            at: Utc::now(),
            actor: "bootstrap-admin".into(),
            action: "site.create".into(),
            target_kind: "site".into(),
            target_id: format!("site-{n}"),
            before: None,
            after: Some(json!({"name": format!("site {n}"), "ratio": 1.5})),
            request_id: "req".into(),
        }
    }

    fn chain(n: u32) -> Vec<Link> {
        let mut head = ChainHead::empty();
        let mut links = Vec::new();
        for i in 0..n {
            let sealed = seal(&fields(i), &head);
            head = ChainHead {
                length: sealed.index,
                hash: Some(sealed.hash.clone()),
            };
            links.push(Link {
                index: sealed.index,
                canonical: sealed.canonical,
                hash: sealed.hash,
            });
        }
        links
    }

    #[test]
    fn an_intact_chain_verifies_and_reads_back() {
        let links = chain(5);
        let head = verify(&ChainHead::empty(), links.clone()).unwrap();
        assert_eq!(head.length, 5);
        assert_eq!(head.hash.as_deref(), Some(links[4].hash.as_str()));
        // Verifying on from a trusted head gives the same answer.
        let middle = ChainHead {
            length: 2,
            hash: Some(links[1].hash.clone()),
        };
        assert_eq!(verify(&middle, links[2..].to_vec()).unwrap(), head);
        let parsed = parse(&links[0].canonical).unwrap();
        assert_eq!(parsed.fields.target_id, "site-0");
        assert_eq!(parsed.prev, None);
    }

    #[test]
    fn every_kind_of_tampering_names_the_first_broken_event() {
        let links = chain(5);
        let start = ChainHead::empty();

        let mut edited = links.clone();
        edited[2].canonical = edited[2].canonical.replace("site-2", "site-9");
        assert_eq!(verify(&start, edited).unwrap_err().index, 3);

        // Edited and re-hashed: the next event no longer links to it.
        let mut rehashed = links.clone();
        rehashed[2].canonical = rehashed[2].canonical.replace("site-2", "site-9");
        rehashed[2].hash = hash_of(&rehashed[2].canonical);
        assert_eq!(verify(&start, rehashed).unwrap_err().index, 4);

        let mut removed = links.clone();
        removed.remove(1);
        let error = verify(&start, removed).unwrap_err();
        assert_eq!(error.index, 2, "{error}");

        let mut swapped = links.clone();
        swapped.swap(1, 2);
        assert_eq!(verify(&start, swapped).unwrap_err().index, 2);

        // A text that is not canonical (spaces added) is refused even with a matching hash.
        let mut spaced = links;
        spaced[0].canonical = spaced[0].canonical.replace(",", ", ");
        spaced[0].hash = hash_of(&spaced[0].canonical);
        assert_eq!(verify(&start, spaced).unwrap_err().index, 1);
    }
}
