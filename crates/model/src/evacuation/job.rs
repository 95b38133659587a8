//! An evacuation as a durable job: what it was asked, its sites in plan order, where each
//! stands, and at the end the truth about what is left.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::plan::Unplaced;
use crate::ids::{JobId, NodeId, ProviderId, SiteId, SiteMoveId};

/// After how long a failed site is tried again: three more tries, then it stays failed.
pub const RETRY_AFTER_SECONDS: [i64; 3] = [30, 120, 480];

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// No new move starts; those under way finish.
    Paused,
    /// Stopped for good: no new move starts; those under way finish (then `finished_at` is
    /// set, and it stays cancelled).
    Cancelled,
    /// Ended with every site of the nodes being emptied moved away.
    Done,
    /// Ended with sites still on the nodes being emptied: `remaining` names each and why.
    Incomplete,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Cancelled => "cancelled",
            JobState::Done => "done",
            JobState::Incomplete => "incomplete",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            JobState::Running,
            JobState::Paused,
            JobState::Cancelled,
            JobState::Done,
            JobState::Incomplete,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Where one site of an evacuation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Not started yet; or waiting for the site's own move to end, or for its next try
    /// (`retry_at`).
    Pending,
    /// Its move is under way.
    Moving,
    /// Switched to its new node.
    Done,
    /// Its move did not happen after every try (the reason says why); the site stayed where
    /// it was.
    Failed,
    /// Not moved: the evacuation was cancelled first.
    Skipped,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Moving => "moving",
            ItemState::Done => "done",
            ItemState::Failed => "failed",
            ItemState::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            ItemState::Pending,
            ItemState::Moving,
            ItemState::Done,
            ItemState::Failed,
            ItemState::Skipped,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// What an evacuation was asked to do, and what its plan said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvacuationSpec {
    pub node_id: Option<NodeId>,
    pub provider_id: Option<ProviderId>,
    pub deadline: Option<DateTime<Utc>>,
    pub parallelism: u32,
    pub predicted_seconds: u64,
    pub statement: String,
    /// Sites the plan found no place for: not moved.
    pub unplaced: Vec<Unplaced>,
    /// Set when the nodes are lost rather than left: each site is restored elsewhere from
    /// its newest backup instead of moved, and the nodes are fenced.
    #[serde(default)]
    pub recovery: Option<RecoverySpec>,
}

/// A recovery: the nodes lost, each with when it was last heard from (what a site loses is
/// what it wrote between its newest backup and then).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecoverySpec {
    pub lost: Vec<LostNode>,
    /// The lost node each site was on: what it lost runs to that node's last report.
    #[serde(default)]
    pub homes: std::collections::BTreeMap<SiteId, NodeId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LostNode {
    pub node_id: NodeId,
    /// Its agent's last report (the recovery's start when it never reported).
    pub last_heard: DateTime<Utc>,
}

/// One site of an evacuation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvacuationItem {
    pub site_id: SiteId,
    pub position: u32,
    pub to_node: NodeId,
    pub state: ItemState,
    pub move_id: Option<SiteMoveId>,
    /// Why its last try failed (kept while it waits for the next one).
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Tries that failed so far.
    pub attempts: u32,
    /// A pending item whose try failed starts again no earlier than this.
    pub retry_at: Option<DateTime<Utc>>,
    /// A recovery's restore of the site on its new node.
    #[serde(default)]
    pub restore_id: Option<crate::ids::RestoreId>,
    /// A recovery's site, restored: how much it lost, in seconds (from its restored
    /// snapshot to when its node was last heard from).
    #[serde(default)]
    pub data_loss_seconds: Option<i64>,
}

/// A site still on a node being emptied when its evacuation ended, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Remaining {
    pub site_id: SiteId,
    pub name: String,
    pub node_id: NodeId,
    pub reason: String,
}

/// The evacuation's expected end, redone from what is left as moves finish.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Estimate {
    /// Seconds from now until the last site is expected to have switched.
    pub remaining_seconds: u64,
    pub finishes_at: DateTime<Utc>,
    /// What the move durations are based on ("measured from 12 moves …", "assumed …").
    pub basis: String,
}

/// An evacuation as a durable job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evacuation {
    pub id: JobId,
    pub state: JobState,
    pub spec: EvacuationSpec,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The panel process running it now, if any.
    pub lease_owner: Option<String>,
    pub items: Vec<EvacuationItem>,
    /// Once ended: the sites still on the nodes being emptied, and why (empty when done).
    pub remaining: Vec<Remaining>,
    /// While it runs: when it is expected to end.
    pub estimate: Option<Estimate>,
}

impl Evacuation {
    /// Items in each state, in [`ItemState`] order.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for item in &self.items {
            *counts.entry(item.state.as_str()).or_default() += 1;
        }
        counts
    }

    /// Whether it has ended (done, incomplete, or cancelled with its last moves over).
    pub fn ended(&self) -> bool {
        self.finished_at.is_some()
    }
}

/// When a site whose try number `attempts` (1, 2, 3…) just failed may be tried again; `None`
/// once every retry is spent.
pub fn retry_after(attempts: u32) -> Option<chrono::Duration> {
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    RETRY_AFTER_SECONDS
        .get(index)
        .map(|seconds| chrono::Duration::seconds(*seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_site_is_tried_three_more_times_after_30_s_2_min_and_8_min() {
        let waits: Vec<_> = (1..=4).map(retry_after).collect();
        assert_eq!(
            waits,
            vec![
                Some(chrono::Duration::seconds(30)),
                Some(chrono::Duration::minutes(2)),
                Some(chrono::Duration::minutes(8)),
                None
            ]
        );
        assert_eq!(retry_after(0), None);
    }

    #[test]
    fn states_read_back_as_written() {
        for state in [
            JobState::Running,
            JobState::Paused,
            JobState::Cancelled,
            JobState::Done,
            JobState::Incomplete,
        ] {
            assert_eq!(JobState::parse(state.as_str()), Some(state));
        }
        assert_eq!(JobState::parse("finished"), None);
    }
}
