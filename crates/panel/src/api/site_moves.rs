//! Site moves through the API: an admin starts, cancels or ends one; everyone who may read
//! the site sees its moves; the source node's agent reports progress, asks for the switch or
//! says it rolled back.

use super::Path;
use alveole_model::{MoveOutcome, MoveProgress, NodeId, SiteId, SiteMove, SiteMoveId};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The node the site moves to.
    pub to_node: NodeId,
}

pub async fn start(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<MoveRequest>,
) -> ApiResult<(StatusCode, Json<SiteMove>)> {
    let ctx = audit_context(&caller, &headers);
    let started = state
        .service()
        .start_site_move(&ctx, parse_id(&id)?, request.to_node)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// A site's moves, newest first: its history.
pub async fn of_site(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<SiteMove>>> {
    let site: SiteId = parse_id(&id)?;
    state.store().sites().get(site).await?;
    Ok(Json(state.store().site_moves(Some(site)).await?))
}

/// Every move, newest first.
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<SiteMove>>> {
    Ok(Json(state.store().site_moves(None).await?))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteMove>> {
    Ok(Json(state.store().get_site_move(parse_id(&id)?).await?))
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteMove>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .cancel_site_move(&ctx, parse_id(&id)?)
            .await?,
    ))
}

/// Ends a move's forwarding before its period is over.
pub async fn finish(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteMove>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .finish_site_move(&ctx, parse_id(&id)?)
            .await?,
    ))
}

/// The calling source node and the move of the path.
fn source_and_move(caller: &Caller, id: &str) -> ApiResult<(NodeId, SiteMoveId)> {
    let node = caller.node.ok_or(ApiError::Forbidden(
        "only the source node's agent reports on a move",
    ))?;
    Ok((node, parse_id(id)?))
}

pub async fn agent_progress(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(progress): ApiJson<MoveProgress>,
) -> ApiResult<StatusCode> {
    let (node, id) = source_and_move(&caller, &id)?;
    state
        .service()
        .note_move_progress(node, id, &progress)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The switch: answered 200 when the site is the target's (also when asked again).
pub async fn agent_switch(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(outcome): ApiJson<MoveOutcome>,
) -> ApiResult<Json<SiteMove>> {
    let (node, id) = source_and_move(&caller, &id)?;
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .switch_site_move(&ctx, node, id, &outcome.progress)
            .await?,
    ))
}

/// The source rolled back: the site is the source's (a switch it never heard is undone).
pub async fn agent_fail(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(outcome): ApiJson<MoveOutcome>,
) -> ApiResult<Json<SiteMove>> {
    let (node, id) = source_and_move(&caller, &id)?;
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .fail_site_move(&ctx, node, id, outcome.reason.as_deref(), &outcome.progress)
            .await?,
    ))
}
