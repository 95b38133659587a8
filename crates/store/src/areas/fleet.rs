//! The co-op's fleet at a glance: what every node holds, and how many of everything there is.

use alveole_model::{NodeLoad, SitePhase, Slug};
use async_trait::async_trait;

use crate::StoreResult;

/// A node with what its sites reserve, for the dashboard and the placement planner.
#[derive(Clone, Debug)]
pub struct NodeUsage {
    pub name: Slug,
    pub load: NodeLoad,
    pub sites: i64,
}

/// Counts for the dashboard.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub providers: i64,
    pub nodes: i64,
    pub members: i64,
    pub sites: i64,
    /// Sites per phase, in [`SitePhase::ALL`] order.
    pub sites_by_phase: Vec<(SitePhase, i64)>,
}

#[async_trait]
pub trait FleetStore: Send + Sync {
    /// Every node with what its sites, and the sites on their way there, reserve.
    async fn node_usage(&self) -> StoreResult<Vec<NodeUsage>>;
    async fn counts(&self) -> StoreResult<Counts>;
}
