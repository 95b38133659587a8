//! Site moves: the panel checks and records them, and tells both nodes through their desired
//! states; the source agent drives a move (copy, freeze, switch) and reports on it; a
//! forwarding period ends on the clock or by an admin, and the site's addresses follow it.

use std::collections::BTreeMap;

use alveole_model::{
    IncomingMove, MovePhase, MoveProgress, NodeId, OutgoingMove, SiteId, SiteMove, SiteMoveId,
};
use alveole_store::{AuditContext, NodeDesired};

use super::Service;
use super::addresses::MoveRequest;
use crate::error::{ApiError, ApiResult};

/// The moves part of one node's desired state.
#[derive(Debug, Default)]
pub struct NodeMoves {
    pub outgoing: Vec<OutgoingMove>,
    pub incoming: Vec<IncomingMove>,
    /// Copies this node may drop: a site that moved away (forwarding over), or a copy of a
    /// move that did not switch.
    pub drop_volumes: Vec<SiteId>,
}

/// What `node`'s desired state says about the moves in `desired`. A move whose target has not
/// reported where other agents reach it waits (it is left out).
pub fn moves_for(node: NodeId, desired: &NodeDesired) -> NodeMoves {
    let mut parts = NodeMoves::default();
    // The latest move of each site decides what this node keeps of it.
    let mut latest: BTreeMap<SiteId, &SiteMove> = BTreeMap::new();
    for movement in &desired.moves {
        latest.insert(movement.site_id, movement);
    }
    let here: std::collections::BTreeSet<SiteId> = desired.sites.iter().map(|s| s.id).collect();
    for movement in latest.values() {
        let outgoing = movement.from_node == node;
        let site = desired.moving_sites.get(&movement.site_id);
        match (movement.phase, site) {
            (MovePhase::Copying | MovePhase::Forwarding, Some(site)) if outgoing => {
                // A site that moved on again since: forward straight to where it is now.
                let now_on = match (movement.phase, site.node_id) {
                    (MovePhase::Forwarding, Some(now_on))
                        if now_on != node && desired.endpoints.contains_key(&now_on) =>
                    {
                        now_on
                    }
                    _ => movement.to_node,
                };
                let target = desired.endpoints.get(&now_on);
                let (Some(peer), Some(ingress)) =
                    (target.and_then(|e| e.peer), target.and_then(|e| e.ingress))
                else {
                    continue;
                };
                parts.outgoing.push(OutgoingMove {
                    id: movement.id,
                    site_id: movement.site_id,
                    to_node: movement.to_node,
                    phase: movement.phase,
                    target_peer: peer,
                    target_ingress: ingress,
                    hostnames: site.to_spec().hostnames,
                    freeze_deadline_ms: movement.freeze_deadline_ms,
                    forward_until: movement.forward_until,
                });
            }
            (MovePhase::Copying, Some(site)) if !outgoing => {
                parts.incoming.push(IncomingMove {
                    id: movement.id,
                    from_node: movement.from_node,
                    site: site.to_spec(),
                });
            }
            (MovePhase::Done, _) if outgoing && !here.contains(&movement.site_id) => {
                parts.drop_volumes.push(movement.site_id);
            }
            (MovePhase::Failed | MovePhase::Cancelled, _)
                if !outgoing && !here.contains(&movement.site_id) =>
            {
                parts.drop_volumes.push(movement.site_id);
            }
            _ => {}
        }
    }
    parts
}

impl Service {
    /// Starts moving `site` to `to`. The target must have said where other agents reach it
    /// (its agent runs with `--peer-listen`), and have room for the site.
    pub async fn start_site_move(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        to: NodeId,
    ) -> ApiResult<SiteMove> {
        self.check_move_target(to).await?;
        let started = self
            .store()
            .start_site_move(ctx, site, to, self.config().moves)
            .await?;
        Ok(started)
    }

    /// A node can receive a site while its agent reports and has said where other agents
    /// reach it (`--peer-listen`).
    pub async fn check_move_target(&self, to: NodeId) -> ApiResult<()> {
        self.store().nodes().get(to).await?;
        let statuses = self.store().node_statuses().await?;
        let status = statuses.iter().find(|s| s.node_id == to);
        let why_not = super::evacuations::cannot_receive(
            status,
            self.now(),
            self.config().node_unreachable_after,
        );
        match why_not {
            Some(why_not) => Err(ApiError::field(
                "to_node",
                "move.target_unreachable",
                format!("the target node cannot receive the site: {why_not}"),
            )),
            None => Ok(()),
        }
    }

    /// Stops a move before its switch: the site stays where it is.
    pub async fn cancel_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
    ) -> ApiResult<SiteMove> {
        Ok(self.store().cancel_site_move(ctx, id).await?)
    }

    /// Ends a move's forwarding; the site's dedicated addresses, still on the old node, then
    /// move to the new one as any address does (the old node lets them go, the provider
    /// routes them, the new node takes them). A refused address move is logged and shown on
    /// the addresses page; the site's move is done anyway.
    pub async fn finish_site_move(
        &self,
        ctx: &AuditContext,
        id: SiteMoveId,
    ) -> ApiResult<SiteMove> {
        let finished = self.store().finish_site_move(ctx, id).await?;
        // The addresses go where the site is now (it may have moved on again since).
        let now_on = self
            .store()
            .sites()
            .get(finished.site_id)
            .await
            .ok()
            .and_then(|site| site.node_id)
            .unwrap_or(finished.to_node);
        let dedicated: Vec<_> = self
            .store()
            .ip_allocations()
            .await?
            .into_iter()
            .filter(|a| a.site_id == Some(finished.site_id) && a.node_id == finished.from_node)
            .collect();
        for allocation in dedicated {
            let request = MoveRequest {
                to_node: now_on,
                force: false,
            };
            if let Err(error) = self
                .start_address_move(ctx, allocation.address, &request)
                .await
            {
                tracing::warn!(%error, address = %allocation.address, "a moved site's address did not follow it");
            }
        }
        Ok(finished)
    }

    /// Ends the forwarding of every move whose period is over; returns how many ended. A
    /// failure is logged, and the next run tries again.
    pub async fn finish_expired_forwardings(&self) -> ApiResult<usize> {
        let expired = self.store().forwardings_over(self.now()).await?;
        let ctx = AuditContext::new("system:moves", "-");
        let mut ended = 0;
        for movement in &expired {
            match self.finish_site_move(&ctx, movement.id).await {
                Ok(_) => {
                    ended += 1;
                    self.tell_nodes();
                }
                Err(error) => {
                    tracing::warn!(%error, id = %movement.id, "could not end a forwarding");
                }
            }
        }
        Ok(ended)
    }

    /// The move `id`, if the calling node is its source: only it reports on a move.
    async fn move_of_source(&self, node: NodeId, id: SiteMoveId) -> ApiResult<SiteMove> {
        let movement = self.store().get_site_move(id).await?;
        if movement.from_node != node {
            return Err(ApiError::Forbidden(
                "only the source node's agent reports on a move",
            ));
        }
        Ok(movement)
    }

    /// Keeps the source's progress (telemetry).
    pub async fn note_move_progress(
        &self,
        node: NodeId,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> ApiResult<()> {
        let movement = self.move_of_source(node, id).await?;
        Ok(self
            .store()
            .note_site_move_progress(movement.id, progress)
            .await?)
    }

    /// The switch the source asks for: the site becomes the target's (asked again, the same
    /// answer).
    pub async fn switch_site_move(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        id: SiteMoveId,
        progress: &MoveProgress,
    ) -> ApiResult<SiteMove> {
        let movement = self.move_of_source(node, id).await?;
        Ok(self
            .store()
            .switch_site_move(ctx, movement.id, progress)
            .await?)
    }

    /// The source rolled back: the site is the source's (a switch it never heard is undone).
    pub async fn fail_site_move(
        &self,
        ctx: &AuditContext,
        node: NodeId,
        id: SiteMoveId,
        reason: Option<&str>,
        progress: &MoveProgress,
    ) -> ApiResult<SiteMove> {
        let movement = self.move_of_source(node, id).await?;
        let reason = reason.unwrap_or("the source rolled back");
        Ok(self
            .store()
            .fail_site_move(ctx, movement.id, reason, progress)
            .await?)
    }
}
