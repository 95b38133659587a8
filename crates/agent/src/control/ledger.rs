//! The desired state the agent accepted last, kept in the state directory (`desired-state.json`,
//! replaced whole, mode 0600, since it carries secret values). Only a newer generation is
//! accepted; the same generation with other content is refused. An unreadable file is an
//! error, never "nothing is desired": the agent then keeps what runs until the panel answers.

use std::path::PathBuf;
use std::sync::Arc;

use alveole_model::{DesiredState, NodeId};

use super::files::StateFiles;

const FILE: &str = "desired-state.json";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read or write {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a desired-state document (kept running what runs; waiting for the panel)"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What became of a document the panel offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Newer: persisted, reconcile toward it.
    Accepted,
    /// The document already held.
    Unchanged,
    /// Refused, with the reason; the held document stays.
    Rejected(String),
}

/// The held desired state and the file that keeps it.
#[derive(Debug)]
pub struct Ledger {
    node_id: NodeId,
    files: Arc<dyn StateFiles>,
    held: Option<DesiredState>,
}

impl Ledger {
    /// The ledger of `node_id` in `files`, holding what was accepted last. An unreadable
    /// document is reported and held as nothing: the agent changes nothing until the panel
    /// sends one.
    pub fn open(node_id: NodeId, files: Arc<dyn StateFiles>) -> Self {
        let mut ledger = Self {
            node_id,
            files,
            held: None,
        };
        match ledger.load() {
            Ok(held) => ledger.held = held,
            Err(error) => {
                tracing::error!(%error, "the held desired state is unreadable; keeping what runs until the panel answers");
            }
        }
        ledger
    }

    pub fn held(&self) -> Option<&DesiredState> {
        self.held.as_ref()
    }

    /// The held document as stored, `None` when there has never been one.
    fn load(&self) -> Result<Option<DesiredState>, LedgerError> {
        let path = || self.files.locate(FILE);
        let Some(bytes) = self.files.read(FILE).map_err(|source| LedgerError::Io {
            path: path(),
            source,
        })?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| LedgerError::Corrupt {
                path: path(),
                source,
            })
    }

    /// Decides on `offered` against the held document; an accepted one is persisted, then
    /// held.
    pub fn offer(&mut self, offered: DesiredState) -> Result<Verdict, LedgerError> {
        if offered.node_id != self.node_id {
            return Ok(Verdict::Rejected(format!(
                "document for node {}, this is {}",
                offered.node_id, self.node_id
            )));
        }
        if let Some(held) = &self.held {
            if offered.generation < held.generation {
                return Ok(Verdict::Rejected(format!(
                    "generation {} is older than the held {}",
                    offered.generation, held.generation
                )));
            }
            if offered.generation == held.generation {
                return Ok(if offered.content_digest() == held.content_digest() {
                    Verdict::Unchanged
                } else {
                    Verdict::Rejected(format!(
                        "generation {} with different content",
                        offered.generation
                    ))
                });
            }
        }
        let path = || self.files.locate(FILE);
        let text = serde_json::to_vec_pretty(&offered).map_err(|source| LedgerError::Corrupt {
            path: path(),
            source,
        })?;
        self.files
            .write(FILE, &text)
            .map_err(|source| LedgerError::Io {
                path: path(),
                source,
            })?;
        self.held = Some(offered);
        Ok(Verdict::Accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::files::MemoryFiles;

    fn doc(node: NodeId, generation: u64) -> DesiredState {
        DesiredState {
            node_id: node,
            generation,
            sites: vec![],
            purge_volumes: vec![],
            addresses: vec![],
            input_filter: None,
            moves_out: vec![],
            moves_in: vec![],
            restores: vec![],
            drills: vec![],
            acme_challenges: vec![],
            vault: None,
        }
    }

    #[test]
    fn only_newer_generations_are_accepted_and_persisted() {
        let files = Arc::new(MemoryFiles::default());
        let node = NodeId::generate();
        let mut ledger = Ledger::open(node, files.clone());
        assert_eq!(ledger.held(), None);
        assert_eq!(ledger.offer(doc(node, 3)).unwrap(), Verdict::Accepted);
        let held = ledger.held().unwrap().clone();
        assert_eq!(held.generation, 3);
        assert_eq!(
            Ledger::open(node, files.clone()).held(),
            Some(&held),
            "kept for the next start"
        );

        assert_eq!(ledger.offer(doc(node, 3)).unwrap(), Verdict::Unchanged);
        assert!(matches!(
            ledger.offer(doc(node, 2)).unwrap(),
            Verdict::Rejected(_)
        ));
        let mut different = doc(node, 3);
        different.sites.push(
            serde_json::from_value(serde_json::json!({
                "site_id": alveole_model::SiteId::generate(), "hostnames": ["a.example.org"],
                "image": "a:1", "command": [], "env": [], "http_port": 80,
                "volume": {"quota_bytes": 1, "mount_path": "/data"},
                "limits": {"cpu_millis": 100, "memory_bytes": 16777216, "pids": 16}, "run": true
            }))
            .unwrap(),
        );
        assert!(matches!(
            ledger.offer(different).unwrap(),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            ledger.offer(doc(NodeId::generate(), 9)).unwrap(),
            Verdict::Rejected(_)
        ));
        assert_eq!(ledger.held(), Some(&held), "refusals change nothing");
        assert_eq!(
            Ledger::open(node, files).held(),
            Some(&held),
            "nor what is kept"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let files = Arc::new(MemoryFiles::default());
        files.write(FILE, b"{ not json").unwrap();
        let ledger = Ledger::open(NodeId::generate(), files);
        assert!(matches!(ledger.load(), Err(LedgerError::Corrupt { .. })));
        assert_eq!(ledger.held(), None);
    }

    #[test]
    fn a_document_that_cannot_be_kept_is_not_held() {
        let files = Arc::new(MemoryFiles::default());
        let node = NodeId::generate();
        let mut ledger = Ledger::open(node, files.clone());
        files.fail(FILE);
        assert!(matches!(
            ledger.offer(doc(node, 1)),
            Err(LedgerError::Io { .. })
        ));
        assert_eq!(ledger.held(), None);
    }
}
