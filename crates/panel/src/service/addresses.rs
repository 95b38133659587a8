//! The co-op's addresses: pools at providers, allocations to nodes and sites, and failover.
//! An address moves between nodes in an order that keeps the two from ever answering for it
//! at once: the old node lets it go (its report shows it gone, or at once for a forced move),
//! the provider is told to route it to the new node, and only then is the new node given it.
//! A failed step leaves the move pending, tried again at the old node's next report.

use std::net::IpAddr;

use alveole_model::{AddressMove, IpAllocation, IpPool, NodeId, NodeReport, Prefix, ProviderId};
use alveole_store::AuditContext;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Service;
use crate::error::{ApiError, ApiResult};

/// A pool with its use.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PoolView {
    #[serde(flatten)]
    pub pool: IpPool,
    /// Addresses nodes and sites may use (IPv4: without network and broadcast).
    pub usable: u64,
    pub used: u64,
    pub free: u64,
}

impl PoolView {
    pub fn of(pool: IpPool, used: u64) -> PoolView {
        let usable = u64::try_from(pool.prefix.usable().count()).unwrap_or(u64::MAX);
        PoolView {
            pool,
            usable,
            used,
            free: usable.saturating_sub(used),
        }
    }
}

/// Where an address goes, and whether without waiting for its old node.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    pub to_node: NodeId,
    /// Take the address over without waiting for the old node to let it go: only when that
    /// node is gone or cut off, since the provider's routing alone then keeps the two apart.
    #[serde(default)]
    pub force: bool,
}

/// An address as a client writes it.
pub fn parse_address(text: &str) -> ApiResult<IpAddr> {
    text.parse()
        .map_err(|_| ApiError::field("address", "address.invalid", "an IP address"))
}

impl Service {
    /// Every pool with its use.
    pub async fn address_pools(&self) -> ApiResult<Vec<PoolView>> {
        let pools = self.store().ip_pools().await?;
        Ok(pools
            .into_iter()
            .map(|(pool, used)| PoolView::of(pool, used))
            .collect())
    }

    /// A pool of addresses (`prefix`, host bits zero) at a provider.
    pub async fn create_address_pool(
        &self,
        ctx: &AuditContext,
        provider: ProviderId,
        prefix: &str,
    ) -> ApiResult<PoolView> {
        let prefix = Prefix::parse_pool(prefix).map_err(|e| ApiError::Validation(e.into()))?;
        let pool = IpPool {
            id: uuid::Uuid::now_v7(),
            provider_id: provider,
            prefix,
            created_at: self.now(),
        };
        self.store().create_ip_pool(ctx, &pool).await?;
        Ok(PoolView::of(pool, 0))
    }

    /// Starts moving an address; a forced move is finished at once. The move as it stands.
    pub async fn start_address_move(
        &self,
        ctx: &AuditContext,
        address: IpAddr,
        request: &MoveRequest,
    ) -> ApiResult<AddressMove> {
        let moving = self
            .store()
            .start_address_move(ctx, address, request.to_node, request.force)
            .await?;
        if moving.forced {
            // The provider's refusal is kept on the move, which stays pending: not an error
            // here.
            let _ = self.finish_address_move(ctx, &moving).await;
        }
        Ok(self
            .store()
            .address_moves()
            .await?
            .into_iter()
            .find(|m| m.address == address)
            .unwrap_or(moving))
    }

    /// Finishes a move whose old node has let the address go: the provider routes it to the
    /// new node, then the new node is given it. On failure the move stays pending with the
    /// reason.
    pub async fn finish_address_move(
        &self,
        ctx: &AuditContext,
        moving: &AddressMove,
    ) -> ApiResult<IpAllocation> {
        let store = self.store();
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
            let provider = store.providers().get(pool.provider_id).await?;
            let node = store.nodes().get(moving.to_node).await?;
            self.config()
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

    /// Finishes every move away from `node` that its report shows released, and retries
    /// forced moves whose provider refused (their old node, gone, sends no reports). Returns
    /// how many finished; a move that cannot finish yet stays pending.
    pub async fn advance_address_moves(&self, node: NodeId, report: &NodeReport) -> usize {
        let moves = match self.store().address_moves().await {
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
            if self.finish_address_move(&ctx, moving).await.is_ok() {
                finished += 1;
            }
        }
        finished
    }
}
