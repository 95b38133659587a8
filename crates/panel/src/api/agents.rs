//! The routes between the panel and node agents: join tokens, enrolment (a one-time join token
//! and a signing request traded for a client certificate), renewal, revocation, the node's
//! desired state and its reports; and a node's status for people.

use super::{Path, Query};
use alveole_model::{DesiredState, NodeId, NodeReport};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ApiJson, audit_context, parse_id, request_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::service::agents::{JoinToken, MAX_WAIT_SECONDS, NodeStatusView};
use crate::tls::AgentCertificate;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub join_token: String,
    /// A PKCS#10 certificate signing request (PEM) for the key the agent made and keeps.
    pub csr_pem: String,
}

/// An agent's request for a fresh certificate for the key it already has.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr_pem: String,
}

/// How the agent asks: `after` the generation it holds, waiting up to `wait` seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredStateQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

/// The node an agent's certificate stands for.
fn calling_node(caller: &Caller, what: &'static str) -> ApiResult<NodeId> {
    caller.node.ok_or(ApiError::Forbidden(what))
}

pub async fn create_join_token(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<JoinToken>)> {
    let ctx = audit_context(&caller, &headers);
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let token = state
        .service()
        .issue_join_token(&ctx, parse_id(&id)?, host)
        .await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// Revokes the node's agent credential: its agent is refused from now on and keeps serving
/// from its last desired state until it enrols again.
pub async fn revoke(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let node: NodeId = parse_id(&id)?;
    state
        .store()
        .revoke_agent(&audit_context(&caller, &headers), node)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<AgentCertificate>)> {
    let certificate = state
        .service()
        .enroll(request_id(&headers), &request.join_token, &request.csr_pem)
        .await?;
    Ok((StatusCode::CREATED, Json(certificate)))
}

pub async fn renew(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RenewRequest>,
) -> ApiResult<(StatusCode, Json<AgentCertificate>)> {
    let node = calling_node(&caller, "agents only")?;
    let ctx = audit_context(&caller, &headers);
    let certificate = state.service().renew(&ctx, node, &request.csr_pem).await?;
    Ok((StatusCode::CREATED, Json(certificate)))
}

/// The calling node's desired state, secrets included: only its own agent gets it.
pub async fn desired_state(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(query): Query<DesiredStateQuery>,
) -> ApiResult<Json<DesiredState>> {
    let node = calling_node(&caller, "only a node's agent reads its desired state")?;
    let wait = std::time::Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let desired = state
        .service()
        .desired_state(node, query.after, wait)
        .await?;
    Ok(Json(desired))
}

pub async fn report(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(report): ApiJson<NodeReport>,
) -> ApiResult<StatusCode> {
    let node = calling_node(&caller, "only a node's agent reports its status")?;
    let ctx = audit_context(&caller, &headers);
    state.service().report(&ctx, node, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn node_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeStatusView>> {
    Ok(Json(state.service().node_status(parse_id(&id)?).await?))
}

/// The CA agents pin (its fingerprint is in their join command). 404 when the panel does not
/// serve agents over TLS.
pub async fn ca(State(state): State<AppState>) -> ApiResult<Json<crate::tls::AgentCa>> {
    state
        .config()
        .agent_tls
        .as_ref()
        .map(|tls| Json(tls.ca.clone()))
        .ok_or(ApiError::NotFound("agent CA"))
}
