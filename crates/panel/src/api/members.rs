//! Members' own routes: who the caller is, their API tokens, and offboarding.

use super::Path;
use alveole_model::{MemberId, Role};
use alveole_store::ApiToken;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::members::{CreatedToken, NewToken};

/// Who the caller is, as the panel sees them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    /// As recorded in audit events.
    pub actor: String,
    pub role: Role,
}

pub async fn me(axum::Extension(caller): axum::Extension<Caller>) -> Json<Me> {
    Json(Me {
        actor: caller.actor,
        role: caller.role,
    })
}

pub async fn create_token(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(request): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let ctx = audit_context(&caller, &headers);
    let created = state
        .service()
        .create_api_token(&ctx, parse_id(&member)?, &request)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn tokens(
    State(state): State<AppState>,
    Path(member): Path<String>,
) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(state.service().api_tokens(parse_id(&member)?).await?))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store()
        .revoke_api_token(&audit_context(&caller, &headers), parse_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disable {
    /// The member who takes over the sites; without it, the sites are stopped.
    pub hand_sites_to: Option<MemberId>,
}

pub async fn disable(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<Disable>,
) -> ApiResult<StatusCode> {
    let ctx = audit_context(&caller, &headers);
    state
        .service()
        .disable_member(&ctx, parse_id(&id)?, request.hand_sites_to)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn enable(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<alveole_model::Member>> {
    let ctx = audit_context(&caller, &headers);
    let member = state.service().enable_member(&ctx, parse_id(&id)?).await?;
    Ok(Json(member))
}
