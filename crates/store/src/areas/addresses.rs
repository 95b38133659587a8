//! The co-op's addresses: pools of prefixes at providers, allocations to nodes and sites, and
//! addresses moving between nodes.

use std::net::IpAddr;

use alveole_model::{AddressMove, IpAllocation, IpPool, NodeId, SiteId};
use async_trait::async_trait;

use crate::{AuditContext, StoreResult};

#[async_trait]
pub trait AddressStore: Send + Sync {
    /// Adds a pool of addresses at a provider (audited); refused when it overlaps another.
    async fn create_ip_pool(&self, ctx: &AuditContext, pool: &IpPool) -> StoreResult<()>;
    /// Every pool, with how many of its addresses are allocated.
    async fn ip_pools(&self) -> StoreResult<Vec<(IpPool, u64)>>;
    /// Removes an empty pool (audited); refused while addresses are allocated from it.
    async fn delete_ip_pool(&self, ctx: &AuditContext, id: uuid::Uuid) -> StoreResult<()>;
    /// Allocates `address` (or the first free one) of the pool to a node, maybe dedicated to
    /// one of its sites (audited). An address is never allocated twice.
    async fn allocate_ip(
        &self,
        ctx: &AuditContext,
        pool: uuid::Uuid,
        node: NodeId,
        site: Option<SiteId>,
        address: Option<IpAddr>,
    ) -> StoreResult<IpAllocation>;
    async fn ip_allocations(&self) -> StoreResult<Vec<IpAllocation>>;
    /// Releases an address (audited).
    async fn release_ip(&self, ctx: &AuditContext, address: IpAddr) -> StoreResult<()>;
    /// Starts moving an allocated address to another node (audited): the old node's desired
    /// state loses it at once; the new node's gains it when
    /// [`AddressStore::complete_address_move`] runs. A site's dedicated address moves only to
    /// the node its site runs on.
    async fn start_address_move(
        &self,
        ctx: &AuditContext,
        address: IpAddr,
        to: NodeId,
        forced: bool,
    ) -> StoreResult<AddressMove>;
    async fn address_moves(&self) -> StoreResult<Vec<AddressMove>>;
    /// Gives the moving address to its new node (audited with how long the move took).
    async fn complete_address_move(
        &self,
        ctx: &AuditContext,
        address: IpAddr,
    ) -> StoreResult<IpAllocation>;
    /// Keeps why the last attempt to finish a move failed, for the page and the API.
    async fn note_address_move_error(&self, address: IpAddr, error: &str) -> StoreResult<()>;
    /// Gives a moving address back to its old node (audited).
    async fn cancel_address_move(&self, ctx: &AuditContext, address: IpAddr) -> StoreResult<()>;
}
