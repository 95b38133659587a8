//! The panel's side of site moves: what each node's desired state says about them, and the end
//! of forwarding periods. The source agent drives a move (copy, freeze, switch); the panel
//! records its phases and tells both nodes.

use std::collections::BTreeMap;

use alveole_model::{
    AgentEndpoints, IncomingMove, MovePhase, NodeId, OutgoingMove, SiteId, SiteMove,
};
use alveole_store::{NodeDesired, StoreError};

use crate::AppState;

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
pub async fn for_node(
    state: &AppState,
    node: NodeId,
    desired: &NodeDesired,
) -> Result<NodeMoves, StoreError> {
    let mut parts = NodeMoves::default();
    // The latest move of each site decides what this node keeps of it.
    let mut latest: BTreeMap<SiteId, &SiteMove> = BTreeMap::new();
    for movement in &desired.moves {
        latest.insert(movement.site_id, movement);
    }
    // Only a move under way needs the nodes' endpoints (read from their last reports).
    let endpoints: BTreeMap<NodeId, AgentEndpoints> = if latest
        .values()
        .any(|m| m.phase.is_active() && m.from_node == node)
    {
        state
            .store()
            .node_statuses()
            .await?
            .into_iter()
            .filter_map(|s| Some((s.node_id, s.report.endpoints?)))
            .collect()
    } else {
        BTreeMap::new()
    };
    let here: std::collections::BTreeSet<SiteId> = desired.sites.iter().map(|s| s.id).collect();
    for movement in latest.values() {
        let outgoing = movement.from_node == node;
        match movement.phase {
            MovePhase::Copying | MovePhase::Forwarding if outgoing => {
                let target = endpoints.get(&movement.to_node);
                let (Some(peer), Some(ingress)) =
                    (target.and_then(|e| e.peer), target.and_then(|e| e.ingress))
                else {
                    continue;
                };
                let site = state.store().get_site(movement.site_id).await?;
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
            MovePhase::Copying => {
                let site = state.store().get_site(movement.site_id).await?;
                parts.incoming.push(IncomingMove {
                    id: movement.id,
                    from_node: movement.from_node,
                    site: site.to_spec(),
                });
            }
            MovePhase::Done if outgoing && !here.contains(&movement.site_id) => {
                parts.drop_volumes.push(movement.site_id);
            }
            MovePhase::Failed | MovePhase::Cancelled
                if !outgoing && !here.contains(&movement.site_id) =>
            {
                parts.drop_volumes.push(movement.site_id);
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// Ends the forwarding of moves whose period is over (called on agents' reports, which come
/// every few seconds). Failures are logged: the next report tries again.
pub async fn finish_expired(state: &AppState) {
    let now = state.config().clock.now();
    let expired = match state.store().forwardings_over(now).await {
        Ok(moves) => moves,
        Err(error) => {
            tracing::warn!(%error, "could not read the site moves");
            return;
        }
    };
    for movement in &expired {
        let ctx = alveole_store::AuditContext::new("system:moves", "-");
        match finish(state, &ctx, movement.id).await {
            Ok(_) => state.changed().notify_waiters(),
            Err(error) => tracing::warn!(%error, id = %movement.id, "could not end a forwarding"),
        }
    }
}

/// Ends a move's forwarding; the site's dedicated addresses, still on the old node, then move
/// to the new one as any address does (the old node lets them go, the provider routes them,
/// the new node takes them). A refused address move is logged and shown on the addresses
/// page; the site's move is done anyway.
pub async fn finish(
    state: &AppState,
    ctx: &alveole_store::AuditContext,
    id: alveole_model::SiteMoveId,
) -> Result<SiteMove, crate::error::ApiError> {
    let finished = state.store().finish_site_move(ctx, id).await?;
    let dedicated: Vec<_> = state
        .store()
        .ip_allocations()
        .await?
        .into_iter()
        .filter(|a| a.site_id == Some(finished.site_id) && a.node_id == finished.from_node)
        .collect();
    for allocation in dedicated {
        let request = crate::api::addresses::MoveRequest {
            to_node: finished.to_node,
            force: false,
        };
        if let Err(error) =
            crate::api::addresses::start_move(state, ctx, allocation.address, &request).await
        {
            tracing::warn!(%error, address = %allocation.address, "a moved site's address did not follow it");
        }
    }
    Ok(finished)
}
