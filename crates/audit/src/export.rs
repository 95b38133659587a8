//! Exports for the board. JSON Lines carries every event's canonical content and hash, the
//! public keys and the latest checkpoint, so that `alveole audit verify --export FILE` checks
//! it with nothing else. CSV is for spreadsheets, with formula-looking cells neutralised.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::{self, ChainHead, Link};
use crate::checkpoint::{AuditKey, Checkpoint};

/// What an export was asked for; echoed in its first line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// Only events about one of these targets (a member's sites).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_ids: Vec<String>,
}

impl ExportFilter {
    /// Whether the export holds every event (a full chain, verifiable end to end).
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }
}

/// One line of a JSON Lines export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Header {
        format: String,
        exported_at: DateTime<Utc>,
        filter: ExportFilter,
        keys: Vec<AuditKey>,
    },
    Event {
        index: u64,
        hash: String,
        /// The canonical object: its RFC 8785 text is what `hash` is the SHA-256 of.
        event: Value,
    },
    Checkpoint(Checkpoint),
}

const FORMAT: &str = "alveole-audit-export/1";

pub fn header(filter: &ExportFilter, keys: &[AuditKey], at: DateTime<Utc>) -> String {
    line(&Line::Header {
        format: FORMAT.into(),
        exported_at: at,
        filter: filter.clone(),
        keys: keys.to_vec(),
    })
}

pub fn event_line(link: &Link) -> String {
    let event = serde_json::from_str(&link.canonical).unwrap_or(Value::Null);
    line(&Line::Event {
        index: link.index,
        hash: link.hash.clone(),
        event,
    })
}

pub fn checkpoint_line(checkpoint: &Checkpoint) -> String {
    line(&Line::Checkpoint(checkpoint.clone()))
}

fn line(value: &Line) -> String {
    let mut text = serde_json::to_string(value).unwrap_or_default();
    text.push('\n');
    text
}

/// What checking an export found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExportReport {
    pub events: u64,
    /// Whether the export holds the whole chain from its first event.
    pub complete: bool,
    /// The chain's head, when the export is complete.
    pub head: Option<ChainHead>,
    /// Checkpoints that were checked: their length.
    pub checkpoints: Vec<u64>,
}

/// Why an export cannot be trusted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VerifyError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error(transparent)]
    Broken(#[from] chain::ChainBreak),
    #[error("checkpoint of length {length}: {reason}")]
    Checkpoint { length: u64, reason: String },
}

/// Checks an export on its own: every event's hash, every link between consecutive events
/// (all of them when the export is complete), and the checkpoints (the file's own and
/// `outside` ones, kept elsewhere) against `keys` when given, else the file's keys.
pub fn verify_export(
    text: &str,
    outside: &[Checkpoint],
    keys: Option<&[AuditKey]>,
) -> Result<ExportReport, VerifyError> {
    let mut file_keys = Vec::new();
    let mut complete = false;
    let mut links: Vec<Link> = Vec::new();
    let mut checkpoints: Vec<Checkpoint> = outside.to_vec();
    for (number, raw) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let malformed = |reason: String| VerifyError::Malformed {
            line: number + 1,
            reason,
        };
        match serde_json::from_str::<Line>(raw).map_err(|e| malformed(e.to_string()))? {
            Line::Header {
                format,
                filter,
                keys,
                ..
            } => {
                if format != FORMAT {
                    return Err(malformed(format!("unknown export format {format}")));
                }
                complete = filter.is_everything();
                file_keys = keys;
            }
            Line::Event { index, hash, event } => {
                links.push(Link {
                    index,
                    canonical: crate::canonical::to_string(&event),
                    hash,
                });
            }
            Line::Checkpoint(checkpoint) => checkpoints.push(checkpoint),
        }
    }
    let keys = keys.unwrap_or(&file_keys);
    let head = if complete {
        Some(chain::verify(&ChainHead::empty(), links.iter().cloned())?)
    } else {
        // A filtered export: each event on its own, and links where events are consecutive.
        for pair in links.windows(2) {
            if pair[1].index <= pair[0].index {
                return Err(chain::ChainBreak {
                    index: pair[1].index,
                    reason: "events are out of order".into(),
                }
                .into());
            }
        }
        for (i, link) in links.iter().enumerate() {
            let before = match i.checked_sub(1).map(|p| &links[p]) {
                Some(prev) if prev.index + 1 == link.index => ChainHead {
                    length: prev.index,
                    hash: Some(prev.hash.clone()),
                },
                _ => match chain::parse(&link.canonical) {
                    // Not consecutive: take the text's own claim of what came before.
                    Some(parsed) => ChainHead {
                        length: link.index.saturating_sub(1),
                        hash: parsed.prev,
                    },
                    None => {
                        return Err(chain::ChainBreak {
                            index: link.index,
                            reason: "its recorded text is not an audit event".into(),
                        }
                        .into());
                    }
                },
            };
            chain::verify(&before, [link.clone()])?;
        }
        None
    };
    let mut checked = Vec::new();
    for checkpoint in &checkpoints {
        let failed = |reason: String| VerifyError::Checkpoint {
            length: checkpoint.length,
            reason,
        };
        checkpoint.verify(keys).map_err(|e| failed(e.to_string()))?;
        let recorded = links
            .iter()
            .find(|l| l.index == checkpoint.length)
            .map(|l| l.hash.clone());
        match (&head, recorded) {
            (Some(head), _) if checkpoint.length > head.length => {
                return Err(failed(format!(
                    "it covers {} events but the chain holds {}: events were removed from its end",
                    checkpoint.length, head.length
                )));
            }
            (_, Some(hash)) if Some(&hash) != checkpoint.head.as_ref() => {
                return Err(failed(format!(
                    "event {} is not the one it signed: the chain was rewritten",
                    checkpoint.length
                )));
            }
            _ => checked.push(checkpoint.length),
        }
    }
    Ok(ExportReport {
        events: u64::try_from(links.len()).unwrap_or(u64::MAX),
        complete,
        head,
        checkpoints: checked,
    })
}

/// The CSV header.
pub const CSV_HEADER: &str =
    "index,at,actor,action,target_kind,target_id,request_id,before,after,hash\r\n";

/// One event as a CSV row (RFC 4180).
pub fn csv_row(link: &Link) -> String {
    let Some(parsed) = chain::parse(&link.canonical) else {
        return String::new();
    };
    let json = |value: &Option<Value>| value.as_ref().map(Value::to_string).unwrap_or_default();
    let fields = &parsed.fields;
    let cells = [
        link.index.to_string(),
        fields.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        fields.actor.clone(),
        fields.action.clone(),
        fields.target_kind.clone(),
        fields.target_id.clone(),
        fields.request_id.clone(),
        json(&fields.before),
        json(&fields.after),
        link.hash.clone(),
    ];
    let mut row = cells
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
    row.push_str("\r\n");
    row
}

/// A cell a spreadsheet shows as text: one beginning like a formula (`= + - @`, or a tab or
/// carriage return) gets a leading apostrophe; quotes are doubled.
pub fn csv_cell(value: &str) -> String {
    let neutral = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if neutral.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", neutral.replace('"', "\"\""))
    } else {
        neutral
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{EventFields, seal};
    use crate::checkpoint::SigningKey;

    fn links(actors: &[&str]) -> Vec<Link> {
        let mut head = ChainHead::empty();
        actors
            .iter()
            .map(|actor| {
                let fields = EventFields {
                    id: uuid::Uuid::now_v7(),
                    at: Utc::now(),
                    actor: (*actor).to_owned(),
                    action: "site.update".into(),
                    target_kind: "site".into(),
                    target_id: "s1".into(),
                    before: None,
                    after: Some(serde_json::json!({"notes": "=HYPERLINK(\"x\")"})),
                    request_id: "r".into(),
                };
                let sealed = seal(&fields, &head);
                head = ChainHead {
                    length: sealed.index,
                    hash: Some(sealed.hash.clone()),
                };
                Link {
                    index: sealed.index,
                    canonical: sealed.canonical,
                    hash: sealed.hash,
                }
            })
            .collect()
    }

    fn export(links: &[Link], filter: &ExportFilter, key: &SigningKey, signed: u64) -> String {
        let mut text = header(filter, &[key.public()], Utc::now());
        for link in links {
            text.push_str(&event_line(link));
        }
        let covered = links.iter().find(|l| l.index == signed);
        let head = ChainHead {
            length: signed,
            hash: covered.map(|l| l.hash.clone()),
        };
        text.push_str(&checkpoint_line(&key.sign(&head, Utc::now())));
        text
    }

    #[test]
    fn a_complete_export_verifies_on_its_own_and_reveals_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("k")).unwrap();
        let all = links(&["a", "b", "c", "d"]);
        let text = export(&all, &ExportFilter::default(), &key, 4);
        let report = verify_export(&text, &[], None).unwrap();
        assert!(report.complete);
        assert_eq!(report.head.unwrap().length, 4);
        assert_eq!(report.checkpoints, vec![4]);

        // The last event cut off, checkpoint kept: truncation shows.
        let cut = export(&all[..3], &ExportFilter::default(), &key, 4);
        let error = verify_export(&cut, &[], None).unwrap_err();
        assert!(
            error.to_string().contains("removed from its end"),
            "{error}"
        );

        // An event changed in the file: named.
        let edited = text.replacen("\"actor\":\"b\"", "\"actor\":\"z\"", 1);
        assert!(matches!(
            verify_export(&edited, &[], None),
            Err(VerifyError::Broken(chain::ChainBreak { index: 2, .. }))
        ));
    }

    #[test]
    fn a_filtered_export_checks_each_event_and_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("k")).unwrap();
        let all = links(&["a", "b", "a", "a"]);
        let filter = ExportFilter {
            actor: Some("a".into()),
            ..Default::default()
        };
        let only_a: Vec<Link> = all.iter().filter(|l| l.index != 2).cloned().collect();
        let report = verify_export(&export(&only_a, &filter, &key, 4), &[], None).unwrap();
        assert!(!report.complete);
        assert_eq!(report.events, 3);
    }

    #[test]
    fn csv_cells_that_look_like_formulas_are_neutralised() {
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("+33 1"), "'+33 1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("plain"), "plain");
        let row = csv_row(&links(&["=cmd|' /C calc'!A0"])[0]);
        assert!(row.contains(",'=cmd|' /C calc'!A0,"), "{row}");
    }
}
