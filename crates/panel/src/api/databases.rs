//! A site's databases through the API: where its site reaches them and how much they hold,
//! and a new password for one.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{Path, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::databases::SiteDatabase;

pub async fn of_site(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<SiteDatabase>>> {
    Ok(Json(
        state
            .service()
            .site_databases(caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}

pub async fn rotate_password(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<SiteDatabase>>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .rotate_database_password(&ctx, caller.limited_to(), parse_id(&id)?, &name)
            .await?,
    ))
}
