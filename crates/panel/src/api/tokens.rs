//! API tokens for members: for the CLI and automation, scoped (read-only or full), expiring,
//! revocable, shown once and stored hashed. A token acts with its member's role.

use alveole_model::MemberId;
use alveole_store::{ApiToken, TokenScope};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};

const DEFAULT_DAYS: u32 = 90;
const MAX_DAYS: u32 = 366;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token is for (`laptop`, `deploy from CI`).
    pub name: String,
    pub scope: TokenScope,
    /// Days until it expires: 1 to 366 (90 by default).
    pub expires_in_days: Option<u32>,
}

/// A new token: `token` is shown here only, never again.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub details: ApiToken,
}

pub async fn create(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(request): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let member: MemberId = parse_id(&member)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::field(
            "name",
            "name.length",
            "a name of 1 to 100 characters",
        ));
    }
    let days = request.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::field(
            "expires_in_days",
            "days.range",
            "from 1 to 366 days",
        ));
    }
    let now = state.config().clock.now();
    let details = ApiToken {
        id: uuid::Uuid::now_v7(),
        member_id: member,
        name: name.to_owned(),
        scope: request.scope,
        created_at: now,
        expires_at: now + chrono::Duration::days(i64::from(days)),
        revoked_at: None,
    };
    let token = auth::new_token("alt_");
    state
        .store()
        .create_api_token(
            &audit_context(&caller, &headers),
            &details,
            &auth::hash_token(&token),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, details })))
}

pub async fn list(
    State(state): State<AppState>,
    Path(member): Path<String>,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let member: MemberId = parse_id(&member)?;
    state.store().get_member(member).await?;
    Ok(Json(state.store().api_tokens_of(member).await?))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: uuid::Uuid = parse_id(&id)?;
    state
        .store()
        .revoke_api_token(&audit_context(&caller, &headers), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
