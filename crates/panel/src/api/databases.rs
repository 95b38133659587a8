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

/// The dump, streamed as the node's agent sends it (`Access::OwnersData`: not auditors).
pub async fn dump(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<axum::response::Response> {
    let ctx = audit_context(&caller, &headers);
    let answer = state
        .service()
        .dump_database(&ctx, caller.limited_to(), parse_id(&id)?, &name)
        .await?;
    let disposition = format!("attachment; filename=\"{name}.sql\"");
    let mut response =
        axum::response::Response::new(axum::body::Body::from_stream(answer.bytes_stream()));
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/sql"),
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&disposition) {
        headers.insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The request's body, streamed to the node's agent as it comes.
pub async fn import(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: axum::body::Body,
) -> ApiResult<Json<Vec<SiteDatabase>>> {
    let ctx = audit_context(&caller, &headers);
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    Ok(Json(
        state
            .service()
            .import_database(&ctx, caller.limited_to(), parse_id(&id)?, &name, body)
            .await?,
    ))
}
