//! What a node's agent reports after each pass, and how a report moves a site's phase.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::SiteId;
use crate::phase::SitePhase;

/// A node's report: which desired state it applied, how its sites are, what it has left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// The generation of the desired state the agent holds, if any.
    pub generation: Option<u64>,
    pub sites: Vec<SiteReport>,
    pub resources: NodeResources,
    pub agent_version: String,
    /// Problems of the node itself (its isolation from the host cannot be put in place, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What the agent did on its own since its last acknowledged report, oldest first, from
    /// its outbox: events made while the panel was away arrive later, in order.
    #[serde(default)]
    pub events: Vec<AgentEvent>,
    /// What the node is made of, sent at the agent's start and then hourly (not every pass).
    #[serde(default)]
    pub inventory: Option<NodeInventory>,
    /// The public addresses the node answers on now, as its uplink shows them; absent when
    /// the agent does not manage addresses (no uplink configured).
    #[serde(default)]
    pub addresses: Option<Vec<std::net::IpAddr>>,
    /// Where other agents reach this one (moves), when it listens for them.
    #[serde(default)]
    pub endpoints: Option<crate::site_move::AgentEndpoints>,
    /// The restores the desired state asks for, as far as they are.
    #[serde(default)]
    pub restores: Vec<crate::backup::RestoreProgress>,
    /// The drills the desired state asks for, as far as they are.
    #[serde(default)]
    pub drills: Vec<crate::backup::DrillProgress>,
}

/// A node's software, for the platform inventory an outside audit asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInventory {
    /// `PRETTY_NAME` of /etc/os-release.
    pub os: String,
    pub kernel: String,
    /// The container engine's version, when one answers.
    #[serde(default)]
    pub engine_version: Option<String>,
    /// The operating system's packages (dpkg or rpm), sorted by name.
    #[serde(default)]
    pub packages: Vec<Package>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
}

/// Something an agent did that the audit record must show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    /// Numbered by the agent from 1 (again from 1 after a new enrolment); the panel records
    /// each number once.
    pub seq: u64,
    /// When it happened, by the node's clock.
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: AgentEventKind,
    /// The site it concerns, if one.
    #[serde(default)]
    pub site_id: Option<SiteId>,
    pub detail: String,
    /// A backup's outcome, for the backup events.
    #[serde(default)]
    pub backup: Option<crate::backup::BackupOutcome>,
    /// What a vault's check found damaged, for `vault.damaged`.
    #[serde(default)]
    pub damage: Option<crate::backup::RepositoryDamage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentEventKind {
    /// The agent applied a new desired state.
    Applied,
    /// The node had drifted from its desired state (a container crashed, stopped or removed
    /// by hand, a stray container) and the agent put it back.
    DriftRepaired,
    /// Events were dropped because the outbox was full (the panel was away too long).
    EventsLost,
    /// A new input filter went back to the previous one: the panel was not reached in time
    /// after it was applied (commit-confirmed).
    InputFilterRolledBack,
    /// A site was backed up to one of its targets.
    BackupCompleted,
    /// A site's backup to one of its targets failed (the reason is in the detail).
    BackupFailed,
    /// A vault forgot the snapshots its retention no longer keeps, and their data.
    VaultPruned,
    /// A vault reread its daily share of a repository's packs and found them intact.
    VaultChecked,
    /// A vault's check found damage in a repository (named in the detail).
    VaultDamaged,
    /// A site's waiting room opened: visitors above its admission limits wait in line.
    WaitingRoomOpened,
    /// A site's waiting room closed: nobody waits any more.
    WaitingRoomClosed,
}

impl AgentEventKind {
    /// The audit action recorded for it.
    pub fn action(self) -> &'static str {
        match self {
            AgentEventKind::Applied => "agent.applied",
            AgentEventKind::DriftRepaired => "agent.drift_repaired",
            AgentEventKind::EventsLost => "agent.events_lost",
            AgentEventKind::InputFilterRolledBack => "agent.input_filter_rolled_back",
            AgentEventKind::BackupCompleted => "backup.completed",
            AgentEventKind::BackupFailed => "backup.failed",
            AgentEventKind::VaultPruned => "vault.pruned",
            AgentEventKind::VaultChecked => "vault.checked",
            AgentEventKind::VaultDamaged => "vault.damaged",
            AgentEventKind::WaitingRoomOpened => "site.waiting_room_opened",
            AgentEventKind::WaitingRoomClosed => "site.waiting_room_closed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteReport {
    pub site_id: SiteId,
    pub state: SiteState,
    /// Why a failing site fails (`image missing: …`, `not answering on port 8080`, …).
    #[serde(default)]
    pub reason: Option<String>,
    /// Bytes its volume uses, when measured (the agent measures at most once a minute).
    #[serde(default)]
    pub volume_bytes: Option<u64>,
    /// Bytes each of its databases' volumes uses, when measured.
    #[serde(default)]
    pub database_bytes: std::collections::BTreeMap<String, u64>,
    /// Its traffic through the node's ingress, when it has had any.
    #[serde(default)]
    pub traffic: Option<SiteTraffic>,
}

/// A site's traffic as its node's ingress counts it: counters since the agent started, and
/// its waiting room now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteTraffic {
    /// Requests answered (by the site or the ingress), since the agent started.
    pub requests: u64,
    /// Visitors waiting in line, and admitted and active, now.
    pub waiting: u64,
    pub active: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    Running,
    Stopped,
    Failing,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeResources {
    pub cpus: u32,
    pub load_1m: f64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
}

impl SitePhase {
    /// The phase a site takes when its node reports `state`. What the site's owner asked for
    /// wins: a site asked to stop stays `stopped`, one being deleted stays `deleting`.
    pub fn observed(self, state: SiteState) -> SitePhase {
        match (self, state) {
            (SitePhase::Stopped | SitePhase::Deleting, _) => self,
            (_, SiteState::Running) => SitePhase::Running,
            (_, SiteState::Failing) => SitePhase::Failed,
            // Asked to run but found stopped: the agent is starting it; nothing to say yet.
            (_, SiteState::Stopped) => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_move_phases_but_never_override_what_was_asked() {
        assert_eq!(
            SitePhase::Pending.observed(SiteState::Running),
            SitePhase::Running
        );
        assert_eq!(
            SitePhase::Running.observed(SiteState::Failing),
            SitePhase::Failed
        );
        assert_eq!(
            SitePhase::Failed.observed(SiteState::Running),
            SitePhase::Running
        );
        assert_eq!(
            SitePhase::Stopped.observed(SiteState::Running),
            SitePhase::Stopped
        );
        assert_eq!(
            SitePhase::Deleting.observed(SiteState::Failing),
            SitePhase::Deleting
        );
        assert_eq!(
            SitePhase::Pending.observed(SiteState::Stopped),
            SitePhase::Pending
        );
    }
}
