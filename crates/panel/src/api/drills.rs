//! A site's restore drills through the API: the latest ones, one now, and one with its
//! progress.

use alveole_model::backup::Drill;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{Path, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;

pub async fn of_site(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Drill>>> {
    Ok(Json(
        state
            .service()
            .site_drills(caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}

pub async fn start(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Drill>)> {
    let ctx = audit_context(&caller, &headers);
    let drill = state
        .service()
        .start_drill(&ctx, caller.limited_to(), parse_id(&id)?)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(drill)))
}

pub async fn get(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Drill>> {
    Ok(Json(
        state
            .service()
            .get_drill(caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}
