//! Site moves: started by an admin or an evacuation, driven by the source node's agent, which
//! reports progress and asks for the switch; ended when its forwarding period is over.

use alveole_model::{MoveProgress, NodeId, SiteId, SiteMove, SiteMoveId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{AuditContext, StoreResult};

/// How long a move's switch may keep a site frozen, and how long its source forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoveTiming {
    pub forward_seconds: u64,
    pub freeze_deadline_ms: u64,
}

#[async_trait]
pub trait MoveStore: Send + Sync {
    /// Starts moving `site` to the node `to`: checks the target's room (its sites and the
    /// sites already moving there), records the move (`copying`) and tells both nodes.
    async fn start_site_move(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        to: NodeId,
        timing: MoveTiming,
    ) -> StoreResult<SiteMove>;
    async fn get_site_move(&self, id: SiteMoveId) -> StoreResult<SiteMove>;
    /// Moves, newest first: of one site (its history), or all.
    async fn site_moves(&self, site: Option<SiteId>) -> StoreResult<Vec<SiteMove>>;
    /// Moves still forwarding whose forwarding period is over at `now`.
    async fn forwardings_over(&self, now: DateTime<Utc>) -> StoreResult<Vec<SiteMove>>;
    /// Keeps what the source agent reports (telemetry: not audited).
    async fn note_site_move_progress(
        &self,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> StoreResult<()>;
    /// The point of no return: the site becomes the target's, the source forwards its
    /// requests until `forward_until`. Asking again answers the same (the source may not have
    /// heard the first answer); a move no longer copying is refused.
    async fn switch_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> StoreResult<SiteMove>;
    /// The source rolled back: the site stays (or is again) on the source. A switch the
    /// source never heard of is undone: nothing was sent to the target yet.
    async fn fail_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
        reason: &str,
        progress: &MoveProgress,
    ) -> StoreResult<SiteMove>;
    /// An admin stops a move before its switch.
    async fn cancel_site_move(&self, ctx: &AuditContext, id: SiteMoveId) -> StoreResult<SiteMove>;
    /// Ends the forwarding (its period is over, or an admin ends it early): the source drops
    /// its copy.
    async fn finish_site_move(&self, ctx: &AuditContext, id: SiteMoveId) -> StoreResult<SiteMove>;
}
