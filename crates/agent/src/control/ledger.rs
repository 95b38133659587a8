//! The desired state the agent accepted last, on disk. Written atomically (temporary file,
//! fsync, rename, fsync of the directory) with mode 0600, since it carries secret values. An
//! unreadable file is an error, never "nothing is desired": the agent then keeps what runs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use alveole_model::{DesiredState, NodeId};

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

#[derive(Debug)]
pub struct Ledger {
    node_id: NodeId,
    path: PathBuf,
}

impl Ledger {
    pub fn new(node_id: NodeId, state_dir: &Path) -> Self {
        Self {
            node_id,
            path: state_dir.join("desired-state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The held document, `None` when there has never been one.
    pub fn load(&self) -> Result<Option<DesiredState>, LedgerError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LedgerError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| LedgerError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    /// Decides on `offered` against `held`, persisting it when accepted.
    pub fn offer(
        &self,
        held: Option<&DesiredState>,
        offered: &DesiredState,
    ) -> Result<Verdict, LedgerError> {
        if offered.node_id != self.node_id {
            return Ok(Verdict::Rejected(format!(
                "document for node {}, this is {}",
                offered.node_id, self.node_id
            )));
        }
        if let Some(held) = held {
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
        self.write(offered)?;
        Ok(Verdict::Accepted)
    }

    fn write(&self, state: &DesiredState) -> Result<(), LedgerError> {
        let text = serde_json::to_vec_pretty(state).map_err(|source| LedgerError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        write_atomically(&self.path, &text).map_err(|source| LedgerError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never half of
/// one: a temporary file (mode 0600), fsync, rename, then fsync of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    File::open(dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
        }
    }

    #[test]
    fn only_newer_generations_are_accepted_and_persisted_privately() {
        let dir = tempfile::tempdir().unwrap();
        let node = NodeId::generate();
        let ledger = Ledger::new(node, dir.path());
        assert_eq!(ledger.load().unwrap(), None);
        assert_eq!(
            ledger.offer(None, &doc(node, 3)).unwrap(),
            Verdict::Accepted
        );
        let held = ledger.load().unwrap().unwrap();
        assert_eq!(held.generation, 3);
        let mode = fs::metadata(ledger.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        assert_eq!(
            ledger.offer(Some(&held), &doc(node, 3)).unwrap(),
            Verdict::Unchanged
        );
        assert!(matches!(
            ledger.offer(Some(&held), &doc(node, 2)).unwrap(),
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
            ledger.offer(Some(&held), &different).unwrap(),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            ledger
                .offer(Some(&held), &doc(NodeId::generate(), 9))
                .unwrap(),
            Verdict::Rejected(_)
        ));
        assert_eq!(
            ledger.load().unwrap().unwrap(),
            held,
            "refusals change nothing"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(NodeId::generate(), dir.path());
        fs::write(ledger.path(), "{ not json").unwrap();
        assert!(matches!(ledger.load(), Err(LedgerError::Corrupt { .. })));
    }
}
