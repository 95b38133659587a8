//! A site's move from one node to another: the panel's record of it, the progress the source
//! agent reports, and what each of the two nodes' desired states says about it.
//!
//! The source agent drives the move: it copies the volume to the target agent directly, in
//! passes, then freezes the site briefly for the last pass and asks the panel to *switch* the
//! site to the target. That switch is the move's one point of no return: before it, any
//! failure leaves the site on the source; after it, the target owns the site and the source
//! forwards the site's requests there for a while.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::desired::SiteSpec;
use crate::hostname::Hostname;
use crate::ids::{NodeId, SiteId, SiteMoveId};

/// Where a move stands, as the panel records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovePhase {
    /// The source copies the volume and will freeze, then ask for the switch.
    Copying,
    /// Switched: the target owns the site; the source forwards its requests there until the
    /// forwarding period ends.
    Forwarding,
    /// Finished: the source has stopped forwarding and drops its copy.
    Done,
    /// Rolled back before the switch: the site stayed on the source.
    Failed,
    /// Cancelled by an admin before the switch: the site stayed on the source.
    Cancelled,
}

impl MovePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MovePhase::Copying => "copying",
            MovePhase::Forwarding => "forwarding",
            MovePhase::Done => "done",
            MovePhase::Failed => "failed",
            MovePhase::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            MovePhase::Copying,
            MovePhase::Forwarding,
            MovePhase::Done,
            MovePhase::Failed,
            MovePhase::Cancelled,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == text)
    }

    /// Copying or forwarding: the move still involves both nodes.
    pub fn is_active(self) -> bool {
        matches!(self, MovePhase::Copying | MovePhase::Forwarding)
    }
}

/// What the source agent is doing, as it reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoveStep {
    /// Not started by the source agent yet.
    #[default]
    Waiting,
    /// Shipping the site's image to the target (no registry needed).
    ShippingImage,
    /// Copying the volume while the site serves.
    Copying,
    /// The site's requests are held and its container paused for the last pass.
    Freezing,
    /// The target serves the site.
    Switched,
    /// The freeze failed or outlived its deadline: the source serves again.
    RolledBack,
}

/// One step of the freeze and when it ended, in milliseconds from the freeze's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FreezeStep {
    /// `hold`, `drain`, `pause`, `final_pass`, `target_started`, `switch`, `release`.
    pub step: String,
    pub at_ms: u64,
}

/// What the source agent reports about a move (telemetry, not audited by itself).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MoveProgress {
    pub step: MoveStep,
    /// Copy passes made so far (the freeze's last pass included).
    pub passes: u32,
    /// Tries so far: a copy that failed (the target was away, say) is tried again.
    #[serde(default)]
    pub attempts: u32,
    /// Bytes of file contents sent to the target so far, over every pass.
    pub bytes_sent: u64,
    /// Files sent so far, over every pass.
    pub files_sent: u64,
    /// The site's volume, in bytes, at the last scan: what the first pass has to send.
    pub volume_bytes: u64,
    /// Bytes the latest try's first pass found the target already had (a resumed copy).
    #[serde(default)]
    pub bytes_already_there: u64,
    /// How long the site's requests were held, once known.
    pub freeze_ms: Option<u64>,
    #[serde(default)]
    pub freeze_steps: Vec<FreezeStep>,
    /// Why the last attempt failed (the move goes on, or rolled back).
    pub last_error: Option<String>,
}

/// The panel's record of one move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteMove {
    pub id: SiteMoveId,
    pub site_id: SiteId,
    pub from_node: NodeId,
    pub to_node: NodeId,
    pub phase: MovePhase,
    pub started_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Until when the source forwards the site's requests to the target (once switched).
    pub forward_until: Option<DateTime<Utc>>,
    /// How long the forwarding lasts after the switch.
    pub forward_seconds: u64,
    /// How long the source may keep the site frozen before it rolls back by itself.
    pub freeze_deadline_ms: u64,
    pub progress: MoveProgress,
    /// Why the move failed, if it did.
    pub error: Option<String>,
}

/// A move in the source node's desired state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OutgoingMove {
    pub id: SiteMoveId,
    pub site_id: SiteId,
    pub to_node: NodeId,
    /// Copying (copy, freeze, ask for the switch) or forwarding (send the site's requests on).
    pub phase: MovePhase,
    /// The target agent's peer endpoint (mutual TLS), as it reported it.
    pub target_peer: SocketAddr,
    /// The target node's ingress, where forwarded requests go.
    pub target_ingress: SocketAddr,
    /// The site's names, so its requests are forwarded once the site left this node.
    pub hostnames: Vec<Hostname>,
    pub freeze_deadline_ms: u64,
    pub forward_until: Option<DateTime<Utc>>,
}

/// A move in the target node's desired state: the peer it may accept the site's data from,
/// and the site as it will run here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncomingMove {
    pub id: SiteMoveId,
    pub from_node: NodeId,
    pub site: SiteSpec,
}

/// Where an agent can be reached by other agents, as it reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentEndpoints {
    /// The peer endpoint (mutual TLS with the panel's CA), for moves.
    pub peer: Option<SocketAddr>,
    /// The node's ingress, for forwarded requests.
    pub ingress: Option<SocketAddr>,
}

/// How the source asks the panel to switch, or says it rolled back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveOutcome {
    pub progress: MoveProgress,
    /// Why the source rolled back (for a failure).
    #[serde(default)]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_back_from_their_names_and_only_two_are_active() {
        for phase in [
            MovePhase::Copying,
            MovePhase::Forwarding,
            MovePhase::Done,
            MovePhase::Failed,
            MovePhase::Cancelled,
        ] {
            assert_eq!(MovePhase::parse(phase.as_str()), Some(phase));
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                serde_json::json!(phase.as_str())
            );
        }
        assert_eq!(MovePhase::parse("moving"), None);
        assert!(MovePhase::Copying.is_active() && MovePhase::Forwarding.is_active());
        assert!(!MovePhase::Done.is_active() && !MovePhase::Failed.is_active());
    }
}
