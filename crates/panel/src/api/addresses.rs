//! The co-op's addresses through the API: pools of prefixes at providers, with what is free
//! and used, and the addresses allocated from them to nodes and sites.

use std::net::IpAddr;

use alveole_model::{AddressMove, IpAllocation, IpPool, NodeId, Prefix, ProviderId, SiteId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    pub provider_id: ProviderId,
    /// `192.0.2.0/24`, `2001:db8::/48`: host bits zero.
    pub prefix: String,
}

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

pub(crate) fn view(pool: IpPool, used: u64) -> PoolView {
    let usable = u64::try_from(pool.prefix.usable().count()).unwrap_or(u64::MAX);
    PoolView {
        pool,
        usable,
        used,
        free: usable.saturating_sub(used),
    }
}

pub async fn pools(State(state): State<AppState>) -> ApiResult<Json<Vec<PoolView>>> {
    let pools = state.store().ip_pools().await?;
    Ok(Json(
        pools.into_iter().map(|(p, used)| view(p, used)).collect(),
    ))
}

pub async fn create_pool(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewPool>,
) -> ApiResult<(StatusCode, Json<PoolView>)> {
    let prefix = Prefix::parse(&request.prefix).map_err(|e| ApiError::Validation(e.into()))?;
    let pool = IpPool {
        id: uuid::Uuid::now_v7(),
        provider_id: request.provider_id,
        prefix,
        created_at: state.config().clock.now(),
    };
    state
        .store()
        .create_ip_pool(&audit_context(&caller, &headers), &pool)
        .await?;
    Ok((StatusCode::CREATED, Json(view(pool, 0))))
}

pub async fn delete_pool(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store()
        .delete_ip_pool(&audit_context(&caller, &headers), parse_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAllocation {
    pub node_id: NodeId,
    /// A site of that node the address is dedicated to.
    pub site_id: Option<SiteId>,
    /// This address of the pool; without it, the first free one.
    pub address: Option<IpAddr>,
}

pub async fn allocations(State(state): State<AppState>) -> ApiResult<Json<Vec<IpAllocation>>> {
    Ok(Json(state.store().ip_allocations().await?))
}

pub async fn allocate(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(pool): Path<String>,
    ApiJson(request): ApiJson<NewAllocation>,
) -> ApiResult<(StatusCode, Json<IpAllocation>)> {
    let allocation = state
        .store()
        .allocate_ip(
            &audit_context(&caller, &headers),
            parse_id(&pool)?,
            request.node_id,
            request.site_id,
            request.address,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(allocation)))
}

pub async fn release(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    let address = parse_address(&address)?;
    state
        .store()
        .release_ip(&audit_context(&caller, &headers), address)
        .await?;
    Ok(StatusCode::NO_CONTENT)
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

pub(crate) fn parse_address(text: &str) -> Result<IpAddr, ApiError> {
    text.parse()
        .map_err(|_| ApiError::field("address", "address.invalid", "an IP address"))
}

/// Starts moving an address; a forced move is finished at once. The move as it stands.
pub(crate) async fn start_move(
    state: &AppState,
    ctx: &alveole_store::AuditContext,
    address: IpAddr,
    request: &MoveRequest,
) -> ApiResult<AddressMove> {
    let moving = state
        .store()
        .start_address_move(ctx, address, request.to_node, request.force)
        .await?;
    if moving.forced {
        // The provider's refusal is kept on the move, which stays pending: not an error here.
        let _ = crate::failover::finish(state, ctx, &moving).await;
    }
    Ok(state
        .store()
        .address_moves()
        .await?
        .into_iter()
        .find(|m| m.address == address)
        .unwrap_or(moving))
}

pub async fn move_address(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
    ApiJson(request): ApiJson<MoveRequest>,
) -> ApiResult<(StatusCode, Json<AddressMove>)> {
    let address = parse_address(&address)?;
    let ctx = audit_context(&caller, &headers);
    let moving = start_move(&state, &ctx, address, &request).await?;
    Ok((StatusCode::ACCEPTED, Json(moving)))
}

/// Addresses on their way to another node: those not yet let go by their old node, or whose
/// provider has not routed them yet (with why).
pub async fn moves(State(state): State<AppState>) -> ApiResult<Json<Vec<AddressMove>>> {
    Ok(Json(state.store().address_moves().await?))
}

pub async fn cancel_move(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store()
        .cancel_address_move(&audit_context(&caller, &headers), parse_address(&address)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
