//! The co-op's addresses through the API: pools of prefixes at providers, with what is free
//! and used, the addresses allocated from them to nodes and sites, and their moves.

use std::net::IpAddr;

use super::Path;
use alveole_model::{AddressMove, IpAllocation, NodeId, ProviderId, SiteId};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::addresses::{MoveRequest, PoolView, parse_address};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    pub provider_id: ProviderId,
    /// `192.0.2.0/24`, `2001:db8::/48`: host bits zero.
    pub prefix: String,
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

pub async fn pools(State(state): State<AppState>) -> ApiResult<Json<Vec<PoolView>>> {
    Ok(Json(state.service().address_pools().await?))
}

pub async fn create_pool(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewPool>,
) -> ApiResult<(StatusCode, Json<PoolView>)> {
    let ctx = audit_context(&caller, &headers);
    let pool = state
        .service()
        .create_address_pool(&ctx, request.provider_id, &request.prefix)
        .await?;
    Ok((StatusCode::CREATED, Json(pool)))
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

pub async fn move_address(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
    ApiJson(request): ApiJson<MoveRequest>,
) -> ApiResult<(StatusCode, Json<AddressMove>)> {
    let address = parse_address(&address)?;
    let ctx = audit_context(&caller, &headers);
    let moving = state
        .service()
        .start_address_move(&ctx, address, &request)
        .await?;
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
