//! Address failover: an address moves between nodes in an order that keeps the two from ever
//! answering for it at once. Starting a move takes the address out of the old node's desired
//! state; each report of the old node may then finish it: once the report shows the address
//! gone (or at once, for a forced move), the provider is told to route the address to the new
//! node, and only then is the new node given it. A failed step leaves the move pending, to be
//! tried again at the old node's next report.

use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Mutex;

use alveole_model::{AddressMove, IpAllocation, Node, NodeId, NodeReport, Provider};
use alveole_store::AuditContext;
use async_trait::async_trait;

use crate::AppState;
use crate::error::ApiError;

/// Why a provider did not route an address.
#[derive(Debug, thiserror::Error)]
#[error("the provider did not route {address} to {node}: {reason}")]
pub struct RouteRefused {
    pub address: IpAddr,
    pub node: String,
    pub reason: String,
}

/// Telling a provider to deliver an address to a node (a failover-address API call, say).
#[async_trait]
pub trait ProviderRouting: Send + Sync + Debug {
    async fn route(
        &self,
        provider: &Provider,
        address: IpAddr,
        node: &Node,
    ) -> Result<(), RouteRefused>;
}

/// A provider that delivers an address to whichever node answers ARP or neighbour discovery
/// for it on a shared segment: there is nothing to call, the new node's announcement moves
/// the traffic. The default until a provider's API is configured.
#[derive(Debug, Default)]
pub struct SharedSegment;

#[async_trait]
impl ProviderRouting for SharedSegment {
    async fn route(&self, _: &Provider, _: IpAddr, _: &Node) -> Result<(), RouteRefused> {
        Ok(())
    }
}

/// One call a [`RecordingProvider`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteCall {
    pub provider: String,
    pub address: IpAddr,
    pub node: NodeId,
}

/// A provider that records each call and refuses while told to: stands in for a provider's
/// API in tests.
#[derive(Debug, Default)]
pub struct RecordingProvider {
    calls: Mutex<Vec<RouteCall>>,
    refusal: Mutex<Option<String>>,
}

impl RecordingProvider {
    pub fn calls(&self) -> Vec<RouteCall> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Refuses every call with `reason` until called with `None`.
    pub fn refuse(&self, reason: Option<&str>) {
        *self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason.map(str::to_owned);
    }
}

#[async_trait]
impl ProviderRouting for RecordingProvider {
    async fn route(
        &self,
        provider: &Provider,
        address: IpAddr,
        node: &Node,
    ) -> Result<(), RouteRefused> {
        let refusal = self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(reason) = refusal {
            return Err(RouteRefused {
                address,
                node: node.name.to_string(),
                reason,
            });
        }
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(RouteCall {
                provider: provider.name.to_string(),
                address,
                node: node.id,
            });
        Ok(())
    }
}

/// Finishes a move whose old node has let the address go: the provider routes it to the new
/// node, then the new node is given it. On failure the move stays pending with the reason.
pub async fn finish(
    state: &AppState,
    ctx: &AuditContext,
    moving: &AddressMove,
) -> Result<IpAllocation, ApiError> {
    let store = state.store();
    let attempt = async {
        let allocation = store
            .ip_allocations()
            .await?
            .into_iter()
            .find(|a| a.address == moving.address)
            .ok_or(ApiError::NotFound("ip allocation"))?;
        let pool = store
            .ip_pools()
            .await?
            .into_iter()
            .map(|(pool, _)| pool)
            .find(|p| p.id == allocation.pool_id)
            .ok_or(ApiError::NotFound("ip pool"))?;
        let provider = store.get_provider(pool.provider_id).await?;
        let node = store.get_node(moving.to_node).await?;
        state
            .config()
            .provider_routing
            .route(&provider, moving.address, &node)
            .await
            .map_err(|refused| ApiError::Upstream(refused.to_string()))?;
        Ok::<_, ApiError>(store.complete_address_move(ctx, moving.address).await?)
    };
    match attempt.await {
        Ok(allocation) => {
            tracing::info!(address = %moving.address, to = %moving.to_node, "address moved");
            Ok(allocation)
        }
        Err(error) => {
            tracing::warn!(address = %moving.address, %error, "address move not finished yet");
            if let Err(note) = store
                .note_address_move_error(moving.address, &error.to_string())
                .await
            {
                tracing::warn!(%note, "could not keep why the move failed");
            }
            Err(error)
        }
    }
}

/// Finishes every move away from `node` that its report shows released, and retries forced
/// moves whose provider refused (their old node, gone, sends no reports). Returns how many
/// finished; a move that cannot finish yet stays pending.
pub async fn advance(state: &AppState, node: NodeId, report: &NodeReport) -> usize {
    let moves = match state.store().address_moves().await {
        Ok(moves) => moves,
        Err(error) => {
            tracing::warn!(%error, "cannot read the address moves");
            return 0;
        }
    };
    let ctx = AuditContext::new("system:failover", format!("report:{node}"));
    let mut finished = 0;
    for moving in moves
        .iter()
        .filter(|m| (m.forced || m.from_node == node) && m.released_by(report))
    {
        if finish(state, &ctx, moving).await.is_ok() {
            finished += 1;
        }
    }
    finished
}
