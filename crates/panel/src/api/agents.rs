//! The routes between the panel and node agents: enrolment (a one-time join token and a
//! signing request traded for a client certificate), renewal, and the node's desired state.

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
use crate::tls::AgentCertificate;

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
    /// A PKCS#10 certificate signing request (PEM) for the key the agent made and keeps.
    pub csr_pem: String,
}

/// An agent's request for a fresh certificate for the key it already has.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr_pem: String,
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
    let command = join_command(&state, &headers, &token);
    Ok((
        StatusCode::CREATED,
        Json(JoinToken {
            join_token: token,
            expires_at,
            command,
        }),
    ))
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

/// The issuer of agents' certificates: without an agent listener, the panel enrols nobody.
fn agent_issuer(state: &AppState) -> ApiResult<std::sync::Arc<crate::tls::AgentIssuer>> {
    state
        .config()
        .agent_tls
        .as_ref()
        .map(|tls| tls.issuer.clone())
        .ok_or(ApiError::Unavailable(
            "this panel serves no agents: start it with --agent-listen",
        ))
}

fn signing_request(pem: &str) -> ApiResult<crate::tls::SigningRequest> {
    crate::tls::SigningRequest::parse(pem)
        .map_err(|e| ApiError::field("csr_pem", "certificate_request", e.to_string()))
}

fn issue(
    issuer: &crate::tls::AgentIssuer,
    node: NodeId,
    request: &crate::tls::SigningRequest,
) -> ApiResult<AgentCertificate> {
    issuer.issue(node, request).map_err(|error| {
        tracing::error!(%error, %node, "could not sign an agent certificate");
        ApiError::Unavailable("the panel could not sign the certificate")
    })
}

/// Trades a join token and a signing request for the node's first certificate.
pub async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<AgentCertificate>)> {
    let issuer = agent_issuer(&state)?;
    let signing = signing_request(&request.csr_pem)?;
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let ctx = alveole_store::AuditContext::new("agent:enrolment", request_id);
    let join_hash = auth::hash_token(request.join_token.trim());
    let node = state
        .store()
        .enroll_agent(&ctx, &join_hash, signing.key_hash(), Utc::now())
        .await
        .map_err(|e| match e {
            alveole_store::StoreError::NotFound { .. } => ApiError::Unauthorized,
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(issue(&issuer, node, &signing)?)))
}

/// A fresh certificate for the calling agent's key (the one on record): agents renew before
/// theirs expires. A new key means a new enrolment, so that a stolen certificate cannot be
/// turned into a lasting credential for another key.
pub async fn renew(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RenewRequest>,
) -> ApiResult<(StatusCode, Json<AgentCertificate>)> {
    let node = caller.node.ok_or(ApiError::Forbidden("agents only"))?;
    let issuer = agent_issuer(&state)?;
    let signing = signing_request(&request.csr_pem)?;
    if state.store().node_for_agent_key(signing.key_hash()).await? != Some(node) {
        return Err(ApiError::field(
            "csr_pem",
            "other_key",
            "the request is for another key than this node's: enrol again to change keys",
        ));
    }
    let certificate = issue(&issuer, node, &signing)?;
    let change = alveole_store::Change {
        action: "node.certificate_renew",
        target_kind: "node",
        target_id: node.to_string(),
        before: None,
        after: Some(serde_json::json!({"not_after": certificate.not_after})),
    };
    state
        .store()
        .record_action(&audit_context(&caller, &headers), change)
        .await?;
    Ok((StatusCode::CREATED, Json(certificate)))
}

/// The calling node's desired state, secrets included: only its own agent gets it.
/// How the agent asks: `after` the generation it holds, waiting up to `wait` seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredStateQuery {
    after: Option<u64>,
    wait: Option<u64>,
}

/// The longest an agent may wait for a newer desired state.
const MAX_WAIT_SECONDS: u64 = 60;

/// The calling node's desired state, secrets included: only its own agent gets it. With
/// `after`, answers as soon as the generation is newer, or after `wait` seconds (long poll).
/// Changes made through this panel wake the wait at once; others (another panel process, the
/// command line on the database) are seen within a second.
pub async fn desired_state(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    axum::extract::Query(query): axum::extract::Query<DesiredStateQuery>,
) -> ApiResult<Json<DesiredState>> {
    let node = caller.node.ok_or(ApiError::Forbidden(
        "only a node's agent reads its desired state",
    ))?;
    let wait = std::time::Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    let desired = loop {
        let changed = state.changed().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let desired = state.store().desired_state(node).await?;
        let newer = query.after.is_none_or(|after| desired.generation > after);
        if newer || tokio::time::Instant::now() >= deadline {
            break desired;
        }
        let recheck =
            (tokio::time::Instant::now() + std::time::Duration::from_secs(1)).min(deadline);
        let _ = tokio::time::timeout_at(recheck, changed).await;
    };
    let mut purge_volumes = state.store().volume_purges(node).await?;
    let moves = crate::site_moves::for_node(&state, node, &desired).await?;
    purge_volumes.extend(moves.drop_volumes);
    purge_volumes.sort();
    purge_volumes.dedup();
    Ok(Json(DesiredState {
        node_id: node,
        generation: desired.generation,
        sites: desired.specs(),
        purge_volumes,
        addresses: desired.addresses,
        input_filter: desired.input_filter,
        moves_out: moves.outgoing,
        moves_in: moves.incoming,
    }))
}

/// A node's report after a pass. Site phases move as it says (audited); the rest is kept as
/// the node's last status.
pub async fn report(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(report): ApiJson<alveole_model::NodeReport>,
) -> ApiResult<StatusCode> {
    let node = caller.node.ok_or(ApiError::Forbidden(
        "only a node's agent reports its status",
    ))?;
    let ctx = audit_context(&caller, &headers);
    state
        .store()
        .record_node_report(&ctx, node, &report, Utc::now())
        .await?;
    // An address this node was told to let go may now go to its new node.
    crate::failover::advance(&state, node, &report).await;
    // Forwarding periods end on the clock; reports come every few seconds.
    crate::site_moves::finish_expired(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A node as its agent last described it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeStatusView {
    /// False once the last report is older than the panel's `node-unreachable-after` delay.
    pub reachable: bool,
    pub last_seen: Option<chrono::DateTime<Utc>>,
    pub report: Option<alveole_model::NodeReport>,
    /// What needs someone's attention (a volume over its quota, ...).
    pub alerts: Vec<Alert>,
}

/// Something about a site that needs attention.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Alert {
    pub site_id: alveole_model::SiteId,
    /// `volume_over_quota`.
    pub kind: String,
    pub message: String,
}

/// Sites of the report whose measured volume exceeds their quota.
pub fn volume_alerts(
    report: &alveole_model::NodeReport,
    sites: &[alveole_model::Site],
) -> Vec<Alert> {
    report
        .sites
        .iter()
        .filter_map(|observed| {
            let used = observed.volume_bytes?;
            let site = sites.iter().find(|s| s.id == observed.site_id)?;
            (used > site.volume.quota_bytes).then(|| Alert {
                site_id: site.id,
                kind: "volume_over_quota".into(),
                message: format!(
                    "{} uses {} of its {} volume",
                    site.primary_domain,
                    alveole_model::quantity::format_bytes(used),
                    alveole_model::quantity::format_bytes(site.volume.quota_bytes)
                ),
            })
        })
        .collect()
}

/// Whether a node last seen at `last_seen` still counts as reachable at `now`.
pub fn reachable(
    last_seen: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
    after: std::time::Duration,
) -> bool {
    let after = Duration::from_std(after).unwrap_or(Duration::MAX);
    last_seen.is_some_and(|seen| now.signed_duration_since(seen) <= after)
}

pub async fn node_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeStatusView>> {
    let node: NodeId = parse_id(&id)?;
    state.store().get_node(node).await?;
    let status = state
        .store()
        .node_statuses()
        .await?
        .into_iter()
        .find(|s| s.node_id == node);
    let last_seen = status.as_ref().map(|s| s.reported_at);
    let alerts = match &status {
        Some(status) => volume_alerts(
            &status.report,
            &state.store().desired_state(node).await?.sites,
        ),
        None => vec![],
    };
    Ok(Json(NodeStatusView {
        reachable: reachable(last_seen, Utc::now(), state.config().node_unreachable_after),
        last_seen,
        report: status.map(|s| s.report),
        alerts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_unreachable_once_silent_longer_than_the_delay() {
        let now = Utc::now();
        let minute = std::time::Duration::from_secs(60);
        assert!(reachable(Some(now - Duration::seconds(59)), now, minute));
        assert!(!reachable(Some(now - Duration::seconds(61)), now, minute));
        assert!(!reachable(None, now, minute), "never seen");
    }
}

/// Deletes a site and its volume (`DELETE` keeps the volume, so that a deletion can be undone).
pub async fn purge_site(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<PurgeQuery>,
) -> ApiResult<StatusCode> {
    let site: alveole_model::SiteId = parse_id(&id)?;
    if let Some(member) = caller.limited_to()
        && state.store().get_site(site).await?.owner_id != member
    {
        return Err(ApiError::NotFound("site"));
    }
    state
        .store()
        .purge_site(&audit_context(&caller, &headers), site, query.version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeQuery {
    version: Option<i64>,
}

/// The command an admin runs on a node to enrol its agent with `token`: the agents' address
/// and, when the panel serves agents over TLS, the fingerprint of the CA to pin.
pub fn join_command(state: &AppState, headers: &HeaderMap, token: &str) -> String {
    let config = state.config();
    let url = config.agent_url.clone().unwrap_or_else(|| {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("PANEL");
        format!("https://{host}")
    });
    let pin = config
        .agent_tls
        .as_ref()
        .map(|tls| format!(" --panel-ca-sha256 {}", tls.ca.fingerprint))
        .unwrap_or_default();
    format!(
        "alveole agent --panel-url {url}{pin} --join-token {token} --state-dir /var/lib/alveole"
    )
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
