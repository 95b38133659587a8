//! The agent's outbox: what it did on its own (drift repaired, a new desired state applied),
//! kept on disk until the panel has acknowledged it, so that events made while the panel is
//! away reach the audit record later, in order, across agent restarts too.

use std::path::PathBuf;
use std::sync::Arc;

use alveole_model::backup::BackupOutcome;
use alveole_model::{AgentEvent, AgentEventKind, SiteId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::files::StateFiles;

const FILE: &str = "outbox.json";

/// Events kept at most; beyond, the oldest go and an `events_lost` event says how many.
const CAPACITY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
#[error("cannot keep the agent's outbox in {path}")]
pub struct OutboxError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Contents {
    next_seq: u64,
    pending: Vec<AgentEvent>,
}

/// Numbered events not yet acknowledged, in `outbox.json` of the state directory.
#[derive(Debug)]
pub struct Outbox {
    files: Arc<dyn StateFiles>,
    contents: Contents,
}

impl Outbox {
    /// The outbox in `files`; an unreadable one is set aside (and said), not fatal: the
    /// agent's work matters more than its account of it.
    pub fn open(files: Arc<dyn StateFiles>) -> Self {
        let contents = match files.read(FILE) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::error!(%error, path = %files.locate(FILE).display(), "the outbox is unreadable; starting a new one");
                let _ = files.set_aside(FILE, "outbox.json.unreadable");
                Contents::default()
            }),
            Ok(None) | Err(_) => Contents::default(),
        };
        Self { files, contents }
    }

    /// Adds events, numbered after the last one, and keeps them on disk.
    pub fn push(
        &mut self,
        events: impl IntoIterator<Item = (AgentEventKind, Option<SiteId>, String)>,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let before = self.contents.pending.len();
        for (kind, site_id, detail) in events {
            self.contents.next_seq += 1;
            self.contents.pending.push(AgentEvent {
                seq: self.contents.next_seq,
                at,
                kind,
                site_id,
                detail,
                backup: None,
                damage: None,
            });
        }
        if self.contents.pending.len() > CAPACITY {
            let dropped = self.contents.pending.len() - CAPACITY + 1;
            self.contents.pending.drain(..dropped);
            self.contents.next_seq += 1;
            self.contents.pending.push(AgentEvent {
                seq: self.contents.next_seq,
                at,
                kind: AgentEventKind::EventsLost,
                site_id: None,
                detail: format!("{dropped} older events were dropped: the outbox was full"),
                backup: None,
                damage: None,
            });
        }
        if self.contents.pending.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// Adds a backup's outcome at one target, and keeps it on disk.
    pub fn push_backup(
        &mut self,
        site: SiteId,
        outcome: BackupOutcome,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let (kind, detail) = match &outcome.error {
            None => (
                AgentEventKind::BackupCompleted,
                format!(
                    "backed up: snapshot {}",
                    outcome.snapshot_id.as_deref().unwrap_or("?")
                ),
            ),
            Some(error) => (
                AgentEventKind::BackupFailed,
                format!("backup failed: {error}"),
            ),
        };
        self.push([(kind, Some(site), detail)], at)?;
        if let Some(last) = self.contents.pending.last_mut()
            && last.kind == kind
        {
            last.backup = Some(outcome);
        }
        self.save()
    }

    /// Adds what a vault's check of a site's repository found damaged, and keeps it on disk.
    pub fn push_damage(
        &mut self,
        site: Option<SiteId>,
        detail: String,
        damage: alveole_model::backup::RepositoryDamage,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let kind = AgentEventKind::VaultDamaged;
        self.push([(kind, site, detail)], at)?;
        if let Some(last) = self.contents.pending.last_mut()
            && last.kind == kind
        {
            last.damage = Some(damage);
        }
        self.save()
    }

    /// What to send with the next report.
    pub fn pending(&self) -> &[AgentEvent] {
        &self.contents.pending
    }

    /// The panel recorded everything up to `seq`.
    pub fn acknowledge(&mut self, seq: u64) -> Result<(), OutboxError> {
        let before = self.contents.pending.len();
        self.contents.pending.retain(|e| e.seq > seq);
        if self.contents.pending.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// Replaces the file whole: a crash leaves the old outbox or the new.
    fn save(&self) -> Result<(), OutboxError> {
        let text = serde_json::to_vec(&self.contents).unwrap_or_default();
        self.files.write(FILE, &text).map_err(|source| OutboxError {
            path: self.files.locate(FILE),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::files::MemoryFiles;

    #[test]
    fn events_are_numbered_kept_across_restarts_and_dropped_once_acknowledged() {
        let files = Arc::new(MemoryFiles::default());
        let mut outbox = Outbox::open(files.clone());
        let drift = |n: u32| (AgentEventKind::DriftRepaired, None, format!("repair {n}"));
        outbox.push([drift(1), drift(2)], Utc::now()).unwrap();
        let reopened = Outbox::open(files.clone());
        let seqs: Vec<u64> = reopened.pending().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);
        let mut outbox = reopened;
        outbox.acknowledge(1).unwrap();
        outbox.push([drift(3)], Utc::now()).unwrap();
        let seqs: Vec<u64> = Outbox::open(files)
            .pending()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [2, 3], "numbers go on after an acknowledgement");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_says_so() {
        let mut outbox = Outbox::open(Arc::new(MemoryFiles::default()));
        let events = (0..CAPACITY + 5).map(|n| (AgentEventKind::Applied, None, n.to_string()));
        outbox.push(events, Utc::now()).unwrap();
        assert_eq!(outbox.pending().len(), CAPACITY);
        let last = outbox.pending().last().unwrap();
        assert_eq!(last.kind, AgentEventKind::EventsLost);
        assert!(last.detail.starts_with("6 older events"), "{}", last.detail);
    }

    #[test]
    fn an_unreadable_outbox_is_set_aside() {
        let files = Arc::new(MemoryFiles::default());
        files.write(FILE, b"{not json").unwrap();
        assert!(Outbox::open(files.clone()).pending().is_empty());
        assert!(files.contents("outbox.json.unreadable").is_some());
    }
}
