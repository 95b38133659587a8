//! Offboarding a member: disabled in one audited step, their tokens stop at once, and their
//! sites are handed to another member or else stopped (their data is kept).

use alveole_model::MemberId;
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
    let member: MemberId = parse_id(&id)?;
    if request.hand_sites_to == Some(member) {
        return Err(ApiError::field(
            "hand_sites_to",
            "member.same",
            "hand the sites to another member",
        ));
    }
    state
        .store()
        .disable_member(
            &audit_context(&caller, &headers),
            member,
            request.hand_sites_to,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
