//! The audit record through the API: events with filters, exports for the board (JSON Lines,
//! CSV), a check of the whole chain, checkpoints and the public keys that sign them.

use std::collections::BTreeMap;

use alveole_audit::export::{self, ExportFilter};
use alveole_store::{AuditEvent, AuditRecord, AuditVerification, Checkpoint, PublishedKey, Store};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// A page of events, in chain order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventPage {
    pub items: Vec<AuditEvent>,
    /// Pass back as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// Reads the filter shared by the list, the exports and the report; unknown parameters are
/// refused (a typo must not silently widen an export).
pub fn parse_filter(params: &BTreeMap<String, String>, extra: &[&str]) -> ApiResult<ExportFilter> {
    let mut filter = ExportFilter::default();
    for (name, value) in params {
        let value = value.trim();
        let text = || (!value.is_empty()).then(|| value.to_owned());
        let instant = |field: &str| -> ApiResult<Option<DateTime<Utc>>> {
            if value.is_empty() {
                return Ok(None);
            }
            parse_instant(value).map(Some).ok_or_else(|| {
                ApiError::field(
                    field,
                    "instant.invalid",
                    "a date (2026-11-01) or an RFC 3339 instant (2026-11-01T08:00:00Z)",
                )
            })
        };
        match name.as_str() {
            "from" => filter.from = instant("from")?,
            "to" => filter.to = instant("to")?,
            "actor" => filter.actor = text(),
            "action" => filter.action = text(),
            "target_kind" => filter.target_kind = text(),
            "target_id" => filter.target_id = text(),
            other if extra.contains(&other) => {}
            other => {
                return Err(ApiError::field(
                    other,
                    "parameter.unknown",
                    "this parameter is not known here",
                ));
            }
        }
    }
    Ok(filter)
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 instant.
fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

fn number(params: &BTreeMap<String, String>, name: &str, default: u64) -> ApiResult<u64> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::field(name, "number.invalid", "a whole number")),
    }
}

/// A member sees the events about their own sites, and nothing else of the record.
async fn narrow_to_member(
    state: &AppState,
    caller: &Caller,
    filter: &mut ExportFilter,
) -> ApiResult<()> {
    let Some(member) = caller.limited_to() else {
        return Ok(());
    };
    let owned = alveole_store::SiteFilter {
        owner_id: Some(member),
        ..Default::default()
    };
    let owned = &owned;
    let store = state.store();
    let sites: Vec<String> =
        super::every(|page| Box::pin(async move { store.list_sites(owned, &page).await }))
            .await?
            .iter()
            .map(|s| s.id.to_string())
            .collect();
    filter.target_kind = Some("site".into());
    // No site: a target no event has, so that nothing matches.
    filter.target_ids = if sites.is_empty() {
        vec![String::new()]
    } else {
        sites
    };
    Ok(())
}

pub async fn events(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Json<EventPage>> {
    let mut filter = parse_filter(&params, &["after", "limit"])?;
    narrow_to_member(&state, &caller, &mut filter).await?;
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

/// Every record matching `filter`, page by page.
pub async fn all_records(
    store: &dyn Store,
    filter: &ExportFilter,
) -> alveole_store::StoreResult<Vec<AuditRecord>> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_records(filter, after, 1000).await?;
        let Some(last) = page.last().and_then(|r| r.event.chain_index) else {
            records.extend(page);
            return Ok(records);
        };
        after = last;
        let full = page.len() == 1000;
        records.extend(page);
        if !full {
            return Ok(records);
        }
    }
}

/// The export: `format=jsonl` (default; verifiable on its own) or `format=csv`.
pub async fn export(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let mut filter = parse_filter(&params, &["format"])?;
    narrow_to_member(&state, &caller, &mut filter).await?;
    let format = params.get("format").map_or("jsonl", String::as_str);
    let store = state.store();
    let records = all_records(store, &filter).await?;
    let links = records.iter().filter_map(|r| r.link.as_ref());
    let (body, content_type, extension) = match format {
        "jsonl" => {
            let keys: Vec<_> = store
                .audit_keys()
                .await?
                .into_iter()
                .map(|k| k.key)
                .collect();
            let mut body = export::header(&filter, &keys, Utc::now());
            for link in links {
                body.push_str(&export::event_line(link));
            }
            if let Some(latest) = store.checkpoints(1).await?.into_iter().next() {
                body.push_str(&export::checkpoint_line(&latest));
            }
            (body, "application/x-ndjson", "jsonl")
        }
        "csv" => {
            let mut body = export::CSV_HEADER.to_owned();
            for link in links {
                body.push_str(&export::csv_row(link));
            }
            (body, "text/csv; charset=utf-8", "csv")
        }
        _ => {
            return Err(ApiError::field("format", "format.unknown", "jsonl or csv"));
        }
    };
    let disposition = format!(
        "attachment; filename=\"alveole-audit-{}.{extension}\"",
        Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Checks the whole record: hashes, links, columns, head and checkpoints.
pub async fn verify(State(state): State<AppState>) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(
        alveole_store::verify_audit(state.store(), &[], None).await?,
    ))
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
    caller: axum::Extension<crate::auth::Caller>,
    headers: axum::http::HeaderMap,
) -> ApiResult<(StatusCode, Json<Checkpoint>)> {
    let notary = state
        .config()
        .notary
        .clone()
        .ok_or(ApiError::Unavailable("this panel has no audit signing key"))?;
    let ctx = super::audit_context(&caller, &headers);
    let checkpoint = notary.checkpoint(state.store(), &ctx).await?;
    Ok((StatusCode::CREATED, Json(checkpoint)))
}

/// The public keys that sign checkpoints: public, like the checkpoints.
pub async fn keys(State(state): State<AppState>) -> ApiResult<Json<Vec<PublishedKey>>> {
    Ok(Json(state.store().audit_keys().await?))
}
