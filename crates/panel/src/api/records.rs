//! The five operations of every resource (providers, nodes, members, sites), written once:
//! list with keyset paging and filters, get, create, change by merge patch, delete.

use std::collections::BTreeMap;

use super::{Path, Query};
use alveole_model::{SiteId, ValidationErrors};
use alveole_store::{Page, PageRequest};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiJson, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::service::Resource;

fn invalid(field: &str, code: &str, message: impl Into<String>) -> alveole_model::FieldError {
    alveole_model::FieldError::new(field, code, message)
}

/// Splits `cursor` and `limit` from the filters, refusing unknown parameters.
pub fn page_request(
    params: &BTreeMap<String, String>,
    filters: &[(&str, &str)],
) -> Result<PageRequest, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let after = match params.get("cursor") {
        Some(raw) => errors.check(
            "cursor",
            raw.parse().map_err(|_| {
                invalid(
                    "cursor",
                    "cursor.invalid",
                    "use the next_cursor of a previous page",
                )
            }),
        ),
        None => None,
    };
    let limit = match params.get("limit") {
        Some(raw) => errors
            .check(
                "limit",
                raw.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            "limit",
                            "limit.range",
                            format!("between 1 and {MAX_PAGE_SIZE}"),
                        )
                    }),
            )
            .unwrap_or(DEFAULT_PAGE_SIZE),
        None => DEFAULT_PAGE_SIZE,
    };
    for key in params.keys() {
        if key != "cursor" && key != "limit" && !filters.iter().any(|(name, _)| name == key) {
            errors.push(invalid(key, "parameter.unknown", "unknown query parameter"));
        }
    }
    errors.finish(|| Some(PageRequest { after, limit }))
}

pub async fn list<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Json<Page<R>>> {
    let page = page_request(&params, R::FILTERS)?;
    let filter = R::parse_filter(&params)?;
    let items = state
        .service()
        .list::<R>(caller.limited_to(), filter, &page)
        .await?;
    Ok(Json(items))
}

pub async fn get<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<R>> {
    let item = state
        .service()
        .get::<R>(caller.limited_to(), parse_id(&id)?)
        .await?;
    Ok(Json(item))
}

pub async fn create<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<R::Input>,
) -> ApiResult<impl IntoResponse> {
    let ctx = audit_context(&caller, &headers);
    let item = state
        .service()
        .create::<R>(&ctx, caller.limited_to(), input)
        .await?;
    let location = format!("/api/v1/{}/{}", R::PLURAL, item.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(item),
    ))
}

/// Applies a JSON Merge Patch carrying the `version` the client read.
pub async fn update<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> ApiResult<Json<R>> {
    let ctx = audit_context(&caller, &headers);
    let item = state
        .service()
        .update::<R>(&ctx, caller.limited_to(), parse_id(&id)?, patch)
        .await?;
    Ok(Json(item))
}

/// The query of a deletion: only `version` (refuse it if the item changed since); any other
/// parameter is named in the error.
fn version_query(params: &BTreeMap<String, String>) -> ApiResult<Option<i64>> {
    if let Some(unknown) = params.keys().find(|k| *k != "version") {
        return Err(ApiError::field(
            unknown,
            "parameter.unknown",
            "unknown query parameter",
        ));
    }
    params
        .get("version")
        .map(|raw| {
            raw.parse()
                .map_err(|_| ApiError::field("version", "version.invalid", "a whole number"))
        })
        .transpose()
}

pub async fn delete<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<StatusCode> {
    let version = version_query(&params)?;
    let ctx = audit_context(&caller, &headers);
    state
        .service()
        .delete::<R>(&ctx, caller.limited_to(), parse_id(&id)?, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a site and its volume (`DELETE` keeps the volume, so that a deletion can be undone).
pub async fn purge_site(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<StatusCode> {
    let version = version_query(&params)?;
    let site: SiteId = parse_id(&id)?;
    let ctx = audit_context(&caller, &headers);
    state
        .service()
        .purge_site(&ctx, caller.limited_to(), site, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
