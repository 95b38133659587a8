//! Site moves through the API: an admin starts, cancels or ends one; everyone who may read
//! the site sees its moves; the source node's agent reports progress, asks for the switch or
//! says it rolled back.

use alveole_model::{MoveOutcome, MoveProgress, NodeId, SiteId, SiteMove, SiteMoveId};
use axum::Json;
use axum::extract::{Path, State};
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

/// Starts moving a site. Its target must have reported where other agents reach it (its
/// agent runs with `--peer-listen`), and have room for the site.
pub async fn start(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<MoveRequest>,
) -> ApiResult<(StatusCode, Json<SiteMove>)> {
    let ctx = audit_context(&caller, &headers);
    let started = start_move(&state, &ctx, parse_id(&id)?, request.to_node).await?;
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// Starts moving `site` to `to` (the API and the site's page).
pub(crate) async fn start_move(
    state: &AppState,
    ctx: &alveole_store::AuditContext,
    site: SiteId,
    to: NodeId,
) -> ApiResult<SiteMove> {
    check_target(state, to).await?;
    Ok(state
        .store()
        .start_site_move(ctx, site, to, state.config().moves)
        .await?)
}

/// A node can receive a site once its agent has said where other agents reach it.
pub(crate) async fn check_target(state: &AppState, to: NodeId) -> ApiResult<()> {
    state.store().get_node(to).await?;
    let reachable = state
        .store()
        .node_statuses()
        .await?
        .into_iter()
        .find(|s| s.node_id == to)
        .and_then(|s| s.report.endpoints)
        .is_some_and(|e| e.peer.is_some() && e.ingress.is_some());
    if !reachable {
        return Err(ApiError::field(
            "to_node",
            "move.target_unreachable",
            "the target node's agent has not said where other agents reach it: run it with --peer-listen",
        ));
    }
    Ok(())
}

/// A site's moves, newest first: its history.
pub async fn of_site(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<SiteMove>>> {
    let site: SiteId = parse_id(&id)?;
    state.store().get_site(site).await?;
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

/// Stops a move before its switch: the site stays where it is.
pub async fn cancel(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteMove>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state.store().cancel_site_move(&ctx, parse_id(&id)?).await?,
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
        crate::site_moves::finish(&state, &ctx, parse_id(&id)?).await?,
    ))
}

/// The move `id`, if the calling agent is its source.
async fn move_of_source(state: &AppState, caller: &Caller, id: &str) -> ApiResult<SiteMove> {
    let node = caller.node.ok_or(ApiError::Forbidden(
        "only the source node's agent reports on a move",
    ))?;
    let movement = state
        .store()
        .get_site_move(parse_id::<SiteMoveId>(id)?)
        .await?;
    if movement.from_node != node {
        return Err(ApiError::Forbidden(
            "only the source node's agent reports on a move",
        ));
    }
    Ok(movement)
}

pub async fn agent_progress(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(progress): ApiJson<MoveProgress>,
) -> ApiResult<StatusCode> {
    let movement = move_of_source(&state, &caller, &id).await?;
    state
        .store()
        .note_site_move_progress(movement.id, &progress)
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
    let movement = move_of_source(&state, &caller, &id).await?;
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .store()
            .switch_site_move(&ctx, movement.id, &outcome.progress)
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
    let movement = move_of_source(&state, &caller, &id).await?;
    let ctx = audit_context(&caller, &headers);
    let reason = outcome
        .reason
        .as_deref()
        .unwrap_or("the source rolled back");
    Ok(Json(
        state
            .store()
            .fail_site_move(&ctx, movement.id, reason, &outcome.progress)
            .await?,
    ))
}
