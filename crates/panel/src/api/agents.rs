//! The routes between the panel and node agents: enrolment (a one-time join token traded for a
//! credential) and the node's desired state.

use alveole_model::{DesiredState, NodeId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiJson, audit_context, parse_id};
use crate::AppState;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};

const JOIN_TOKEN_LIFETIME_HOURS: i64 = 24;

/// A one-time token to enrol a node's agent, and the command to run on the node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JoinToken {
    pub join_token: String,
    pub expires_at: chrono::DateTime<Utc>,
    pub command: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub join_token: String,
}

/// What an enrolled agent keeps: its node, and the credential it presents from now on.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Enrollment {
    pub node_id: NodeId,
    pub credential: String,
}

pub async fn create_join_token(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<JoinToken>)> {
    let node: NodeId = parse_id(&id)?;
    let token = auth::new_token("alj_");
    let expires_at = Utc::now() + Duration::hours(JOIN_TOKEN_LIFETIME_HOURS);
    let ctx = audit_context(&caller, &headers);
    state
        .store()
        .create_join_token(&ctx, node, &auth::hash_token(&token), expires_at)
        .await?;
    let panel = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("PANEL");
    let command = format!(
        "alveole agent --panel-url https://{panel} --join-token {token} --state-dir /var/lib/alveole"
    );
    Ok((
        StatusCode::CREATED,
        Json(JoinToken {
            join_token: token,
            expires_at,
            command,
        }),
    ))
}

pub async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<Enrollment>)> {
    let credential = auth::new_token("aln_");
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let ctx = alveole_store::AuditContext::new("agent:enrolment", request_id);
    let join_hash = auth::hash_token(request.join_token.trim());
    let node = state
        .store()
        .enroll_agent(&ctx, &join_hash, &auth::hash_token(&credential), Utc::now())
        .await
        .map_err(|e| match e {
            alveole_store::StoreError::NotFound { .. } => ApiError::Unauthorized,
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(Enrollment {
            node_id: node,
            credential,
        }),
    ))
}

/// The calling node's desired state, secrets included: only its own agent gets it.
pub async fn desired_state(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
) -> ApiResult<Json<DesiredState>> {
    let node = caller.node.ok_or(ApiError::Forbidden(
        "only a node's agent reads its desired state",
    ))?;
    let (generation, sites) = state.store().desired_state(node).await?;
    let sites = sites.iter().map(alveole_model::Site::to_spec).collect();
    Ok(Json(DesiredState {
        node_id: node,
        generation,
        sites,
    }))
}
