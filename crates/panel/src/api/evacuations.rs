//! Evacuations through the API: the plan, and running it as a durable job (pause, resume,
//! cancel).

use super::{Path, Query};
use alveole_model::evacuation::{Evacuation, EvacuationPlan, JobState};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::evacuations::{ExitReadiness, PlanQuery};

pub async fn plan(
    State(state): State<AppState>,
    Query(query): Query<PlanQuery>,
) -> ApiResult<Json<EvacuationPlan>> {
    Ok(Json(state.service().plan_evacuation(&query).await?))
}

pub async fn start(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PlanQuery>,
) -> ApiResult<(StatusCode, Json<Evacuation>)> {
    let ctx = audit_context(&caller, &headers);
    let evacuation = state.service().start_evacuation(&ctx, &request).await?;
    Ok((StatusCode::ACCEPTED, Json(evacuation)))
}

pub async fn recover(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PlanQuery>,
) -> ApiResult<(StatusCode, Json<Evacuation>)> {
    let ctx = audit_context(&caller, &headers);
    let recovery = state.service().start_recovery(&ctx, &request).await?;
    Ok((StatusCode::ACCEPTED, Json(recovery)))
}

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<Evacuation>>> {
    Ok(Json(state.service().evacuations().await?))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    Ok(Json(state.service().evacuation(parse_id(&id)?).await?))
}

pub async fn readiness(State(state): State<AppState>) -> ApiResult<Json<ExitReadiness>> {
    Ok(Json(state.service().exit_readiness().await?))
}

async fn set_state(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    to: JobState,
) -> ApiResult<Json<Evacuation>> {
    let ctx = audit_context(caller, headers);
    Ok(Json(
        state
            .service()
            .set_evacuation_state(&ctx, parse_id(id)?, to)
            .await?,
    ))
}

pub async fn pause(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    set_state(&state, &caller, &headers, &id, JobState::Paused).await
}

pub async fn resume(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    set_state(&state, &caller, &headers, &id, JobState::Running).await
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Evacuation>> {
    set_state(&state, &caller, &headers, &id, JobState::Cancelled).await
}
