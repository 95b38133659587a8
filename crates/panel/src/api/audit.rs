//! The audit record through the API: events with filters, exports for the board (JSON Lines,
//! CSV), a check of the whole chain, checkpoints and the public keys that sign them, and the
//! platform inventory.

use std::collections::BTreeMap;

use super::Query;
use alveole_store::{AuditEvent, AuditVerification, Checkpoint, PublishedKey};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use super::audit_context;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::service::audit::parse_filter;

/// A page of events, in chain order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventPage {
    pub items: Vec<AuditEvent>,
    /// Pass back as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

fn number(params: &BTreeMap<String, String>, name: &str, default: u64) -> ApiResult<u64> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::field(name, "number.invalid", "a whole number")),
    }
}

pub async fn events(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Json<EventPage>> {
    let mut filter = parse_filter(&params, &["after", "limit"])?;
    state
        .service()
        .narrow_audit_filter(caller.limited_to(), &mut filter)
        .await?;
    let after = number(&params, "after", 0)?;
    let limit = number(&params, "limit", 100)?.clamp(1, 1000);
    let limit = u32::try_from(limit).unwrap_or(1000);
    let records = state.store().audit_records(&filter, after, limit).await?;
    let next_after = (records.len() == limit as usize)
        .then(|| records.last().and_then(|r| r.event.chain_index))
        .flatten();
    Ok(Json(EventPage {
        items: records.into_iter().map(|r| r.event).collect(),
        next_after,
    }))
}

/// The export: `format=jsonl` (default; verifiable on its own) or `format=csv`.
pub async fn export(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let mut filter = parse_filter(&params, &["format"])?;
    state
        .service()
        .narrow_audit_filter(caller.limited_to(), &mut filter)
        .await?;
    let format = params.get("format").map_or("jsonl", String::as_str);
    let export = state.service().export_audit(&filter, format).await?;
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    Ok((
        [
            (header::CONTENT_TYPE, export.content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        export.body,
    )
        .into_response())
}

/// Checks the whole record now: hashes, links, columns, head and checkpoints (and keeps the
/// result as the last check).
pub async fn verify(State(state): State<AppState>) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(state.service().verify_audit(true).await?.verification))
}

pub async fn checkpoints(State(state): State<AppState>) -> ApiResult<Json<Vec<Checkpoint>>> {
    Ok(Json(state.store().checkpoints(100).await?))
}

/// The newest checkpoint: public, so that anyone can keep copies outside the panel.
pub async fn latest_checkpoint(State(state): State<AppState>) -> ApiResult<Json<Checkpoint>> {
    state
        .store()
        .checkpoints(1)
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or(ApiError::NotFound("checkpoint"))
}

/// Signs a checkpoint now.
pub async fn create_checkpoint(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<Checkpoint>)> {
    let ctx = audit_context(&caller, &headers);
    let checkpoint = state.service().sign_checkpoint(&ctx).await?;
    Ok((StatusCode::CREATED, Json(checkpoint)))
}

/// The public keys that sign checkpoints: public, like the checkpoints.
pub async fn keys(State(state): State<AppState>) -> ApiResult<Json<Vec<PublishedKey>>> {
    Ok(Json(state.store().audit_keys().await?))
}

/// The platform inventory (`inventory.rs`), as JSON.
pub async fn inventory(
    State(state): State<AppState>,
) -> ApiResult<Json<crate::inventory::Inventory>> {
    Ok(Json(
        crate::inventory::collect(state.store(), state.service().now()).await?,
    ))
}
