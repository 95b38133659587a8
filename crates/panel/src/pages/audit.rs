//! The pages for the board: the audit record with filters, exports and the chain's state; the
//! report for the general assembly; the platform inventory. The last two are made to be
//! printed.

use std::collections::BTreeMap;

use alveole_audit::report::Report;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;

use super::{error_page, render};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::audit::{all_records, parse_filter};

/// How many events the record page shows (the exports hold them all).
const SHOWN: u32 = 200;

#[derive(Serialize)]
struct Row {
    index: Option<u64>,
    at: String,
    actor: String,
    action: String,
    target: String,
    hash: String,
}

/// The filter's query string, for the export links.
fn query_of(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub async fn record(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let filter = parse_filter(&params, &[])?;
        let store = state.store();
        // The newest events and how many match: the page's cost does not grow with the chain.
        let records = store.newest_audit_records(&filter, SHOWN).await?;
        let total = store.count_audit_records(&filter).await?;
        let rows: Vec<Row> = records
            .iter()
            .map(|r| Row {
                index: r.event.chain_index,
                at: r.event.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                actor: r.event.actor.clone(),
                action: r.event.action.clone(),
                target: format!("{} {}", r.event.target_kind, r.event.target_id),
                hash: r
                    .event
                    .hash
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(16)
                    .collect(),
            })
            .collect();
        let checked = state.service().last_audit_verification().await?;
        let latest = store.checkpoints(1).await?.into_iter().next();
        let mut context = tera::Context::new();
        context.insert("rows", &rows);
        context.insert("total", &total);
        context.insert("shown", &rows.len());
        context.insert("filter", &params);
        context.insert("query", &query_of(&params));
        context.insert("verification", &checked.verification);
        context.insert(
            "checked_at",
            &checked.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        context.insert("checkpoint", &latest);
        context.insert("can_sign", &state.config().notary.is_some());
        Ok::<_, ApiError>(context)
    }
    .await;
    match result {
        Ok(context) => render(&state, &headers, Some(&caller), "audit.html", context),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

pub async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let filter = parse_filter(&params, &[])?;
        let store = state.store();
        let records = all_records(store, &filter).await?;
        let report = Report::of(
            records
                .iter()
                .filter_map(|r| r.link.as_ref())
                .filter_map(|l| alveole_audit::chain::parse(&l.canonical))
                .map(|p| p.fields)
                .collect::<Vec<_>>()
                .iter(),
        );
        let checked = state.service().last_audit_verification().await?;
        // The newest checkpoint covers the whole period: it signs everything before it.
        let checkpoint = store.checkpoints(1).await?.into_iter().next();
        let mut context = tera::Context::new();
        context.insert("report", &report);
        context.insert("filter", &params);
        context.insert("verification", &checked.verification);
        context.insert(
            "checked_at",
            &checked.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        context.insert("checkpoint", &checkpoint);
        context.insert(
            "generated_at",
            &state
                .service()
                .now()
                .format("%Y-%m-%d %H:%M UTC")
                .to_string(),
        );
        Ok::<_, ApiError>(context)
    }
    .await;
    match result {
        Ok(context) => render(
            &state,
            &headers,
            Some(&caller),
            "audit_report.html",
            context,
        ),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

/// The "sign a checkpoint now" button.
pub async fn sign_checkpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let ctx = crate::api::audit_context(&caller, &headers);
    let result = state.service().sign_checkpoint(&ctx).await;
    match result {
        Ok(_) => (StatusCode::SEE_OTHER, Redirect::to("/audit")).into_response(),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

/// The platform inventory, made to be printed.
pub async fn inventory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    match crate::inventory::collect(state.store(), state.service().now()).await {
        Ok(inventory) => {
            let mut context = tera::Context::new();
            context.insert(
                "generated_at",
                &inventory
                    .generated_at
                    .format("%Y-%m-%d %H:%M UTC")
                    .to_string(),
            );
            context.insert("inventory", &inventory);
            render(&state, &headers, Some(&caller), "inventory.html", context)
        }
        Err(error) => error_page(&state, &headers, Some(&caller), error.into()),
    }
}
