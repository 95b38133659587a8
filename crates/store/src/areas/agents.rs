//! Node agents: enrolment, what each node must run (its desired state, read in one
//! transaction), and what nodes report.

use std::collections::BTreeMap;
use std::net::IpAddr;

use alveole_model::{
    AgentEndpoints, InputFilter, NodeId, NodeInventory, NodeReport, Site, SiteId, SiteMove,
    SitePhase, SiteSpec,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{AuditContext, StoreResult};

/// A node's last report, as kept.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub reported_at: DateTime<Utc>,
    pub report: NodeReport,
}

/// What the panel wants on one node, read in one transaction with its generation, so the
/// parts agree.
#[derive(Clone, Debug, Default)]
pub struct NodeDesired {
    pub generation: u64,
    pub sites: Vec<Site>,
    /// The addresses allocated to each site alone.
    pub dedicated: BTreeMap<SiteId, Vec<IpAddr>>,
    /// Every address the node answers on (its own and its sites'), none that is moving.
    pub addresses: Vec<IpAddr>,
    /// Its input filter, when opted in: its admins' networks and the other nodes' addresses.
    pub input_filter: Option<InputFilter>,
    /// Each site's latest move, when it is from or to the node, oldest first (an ended one
    /// says which copies the node may drop).
    pub moves: Vec<SiteMove>,
    /// The sites those moves carry, as they are now (a site moving in is not yet the node's).
    pub moving_sites: BTreeMap<SiteId, Site>,
    /// Where the other ends of this node's outgoing moves said agents reach them.
    pub endpoints: BTreeMap<NodeId, AgentEndpoints>,
    /// Sites whose volumes the node must remove (purged).
    pub purges: Vec<SiteId>,
    pub backups: NodeBackups,
    /// The certificates of its sites and of the sites moving to it (keys sealed as stored).
    pub certificates: BTreeMap<SiteId, crate::StoredCertificate>,
    /// Answers to the ACME challenges of those sites' orders.
    pub challenges: Vec<alveole_model::AcmeChallenge>,
    /// The admission keys of its sites and of the sites moving to it (sealed as stored).
    pub admission_keys: BTreeMap<SiteId, String>,
    /// The node was fenced (lost, its sites recovered elsewhere): it is given nothing to
    /// run, and only learns that.
    pub fenced: bool,
}

/// The backups part of a node's document.
#[derive(Clone, Debug, Default)]
pub struct NodeBackups {
    /// Every target the node's sites and restores name, as nodes reach it.
    pub targets: BTreeMap<alveole_model::BackupTargetId, alveole_model::backup::TargetEndpoint>,
    /// Repository keys of its sites and of its restores' sources: sealed as stored (the
    /// service opens them for the node's agent alone).
    pub keys: BTreeMap<SiteId, String>,
    /// Backups asked for now (by a member, after a move).
    pub requested: BTreeMap<SiteId, DateTime<Utc>>,
    /// The restores it carries out.
    pub restores: Vec<alveole_model::backup::Restore>,
    /// The drills it runs, each with the site drilled (as stored: its secrets sealed).
    pub drills: Vec<(alveole_model::backup::Drill, Site)>,
    /// When it is a vault: the repositories it keeps, and who writes them.
    pub vault: Option<alveole_model::backup::VaultSpec>,
}

impl NodeDesired {
    /// The sites as the node runs them, each with its dedicated addresses.
    pub fn specs(&self) -> Vec<SiteSpec> {
        self.sites
            .iter()
            .map(|site| {
                let mut spec = site.to_spec();
                spec.dedicated_addresses =
                    self.dedicated.get(&site.id).cloned().unwrap_or_default();
                spec
            })
            .collect()
    }
}

#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Everything the node's desired state is made of, read in one transaction.
    async fn desired_state(&self, node: NodeId) -> StoreResult<NodeDesired>;
    /// Stores a one-time join token (hashed) for the node's agent, audited.
    async fn create_join_token(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Consumes a valid join token and records the hash of the agent's public key, replacing
    /// any earlier one; returns the node. `NotFound` when the token is unknown or expired.
    async fn enroll_agent(
        &self,
        ctx: &AuditContext,
        join_hash: &str,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<NodeId>;
    /// Forgets the node's agent key (audited): its certificates stop working at once, and the
    /// agent must enrol again with a new join token. `NotFound` when the node does not exist.
    async fn revoke_agent(&self, ctx: &AuditContext, node: NodeId) -> StoreResult<()>;
    /// The node whose agent key has this hash.
    async fn node_for_agent_key(&self, key_hash: &str) -> StoreResult<Option<NodeId>>;
    /// Keeps the node's report (telemetry, not audited) and moves the phases of its sites as
    /// the report says (each move audited). Reports about sites not on this node are ignored.
    /// Returns the sites whose phase changed.
    async fn record_node_report(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        report: &NodeReport,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(SiteId, SitePhase)>>;
    /// Each node's inventory as its agent last sent it, and when.
    async fn node_inventories(&self) -> StoreResult<Vec<(NodeId, DateTime<Utc>, NodeInventory)>>;
    /// The last report of every node that has reported.
    async fn node_statuses(&self) -> StoreResult<Vec<NodeStatus>>;
    /// The last report of one node, if it has reported.
    async fn node_status(&self, node: NodeId) -> StoreResult<Option<NodeStatus>>;
    /// Forgets join tokens that expired before `now`; returns how many.
    async fn remove_expired_join_tokens(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}
