//! A site's backups through the API: what they are (targets, newest snapshots, the data-loss
//! window, the latest runs and restores), a backup now, and restores with their progress.

use super::Path;
use alveole_model::backup::{Restore, RestoreInput};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::backups::SiteBackups;

pub async fn of_site(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteBackups>> {
    Ok(Json(
        state
            .service()
            .site_backups(caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BackupRequested {
    /// The site's node backs it up at its next pass after this time.
    pub requested_at: DateTime<Utc>,
}

pub async fn back_up_now(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<BackupRequested>)> {
    let ctx = audit_context(&caller, &headers);
    let requested_at = state
        .service()
        .request_backup(&ctx, caller.limited_to(), parse_id(&id)?)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(BackupRequested { requested_at })))
}

pub async fn restore(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<RestoreInput>,
) -> ApiResult<(StatusCode, Json<Restore>)> {
    let ctx = audit_context(&caller, &headers);
    let restore = state
        .service()
        .start_restore(&ctx, caller.limited_to(), parse_id(&id)?, input)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(restore)))
}

pub async fn get_restore(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Restore>> {
    Ok(Json(
        state
            .service()
            .get_restore(caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}
