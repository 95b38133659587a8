//! The JSON API under `/api/v1`: the same five operations for every resource, written once
//! over the [`Resource`] trait (`resources.rs` says what differs per resource).

pub mod addresses;
pub mod agents;
pub mod audit;
pub mod evacuations;
pub mod offboarding;
mod resources;
pub mod site_moves;
pub mod tokens;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use alveole_model::{MemberId, ValidationErrors, merge_patch};
use alveole_store::{AuditContext, Page, PageRequest, Store, StoreResult};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use resources::{Members, Nodes, Providers, Sites};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// What the store's (async-trait) methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// What differs between providers, nodes, members and sites as the API sees them.
pub trait Resource: Send + Sync + 'static {
    /// Singular, lowercase (`site`); also the audit target kind.
    const KIND: &'static str;
    /// The path segment (`sites`).
    const PLURAL: &'static str;
    /// Query parameters that filter the list: name and description.
    const FILTERS: &'static [(&'static str, &'static str)];

    type Id: FromStr + Copy + Display + Send + Sync + 'static;
    type Item: Serialize + JsonSchema + Send + Sync + 'static;
    type Input: DeserializeOwned + Serialize + JsonSchema + Send + 'static;
    type New: Send + 'static;
    type Filter: Default + Send + Sync + 'static;

    fn parse_filter(params: &BTreeMap<String, String>) -> Result<Self::Filter, ValidationErrors>;
    /// Validates an input; `previous` is the stored resource when it is an edit.
    fn validate(
        input: Self::Input,
        previous: Option<&Self::Item>,
    ) -> Result<Self::New, ValidationErrors>;
    fn to_input(item: &Self::Item) -> Self::Input;
    fn id_of(item: &Self::Item) -> Self::Id;

    fn list<'a>(
        store: &'a dyn Store,
        filter: &'a Self::Filter,
        page: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Self::Item>>>;
    fn get<'a>(store: &'a dyn Store, id: Self::Id) -> BoxFuture<'a, StoreResult<Self::Item>>;
    fn create<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        new: Self::New,
    ) -> BoxFuture<'a, StoreResult<Self::Item>>;
    fn update<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: Self::Id,
        version: i64,
        new: Self::New,
    ) -> BoxFuture<'a, StoreResult<Self::Item>>;
    fn delete<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: Self::Id,
        version: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The member who owns an item: a member reaches only what they own. `None` for kinds no
    /// member owns (their routes are for admins and auditors).
    fn owner(_item: &Self::Item) -> Option<MemberId> {
        None
    }
    /// Narrows a list to one member's items.
    fn only_owned_by(_filter: &mut Self::Filter, _member: MemberId) {}
    /// The owner an input names.
    fn input_owner(_input: &Self::Input) -> Option<MemberId> {
        None
    }
}

/// An item that `limited_to` (a member) may not reach answers 404, as if it did not exist:
/// another member's site is not even confirmed to exist.
pub(crate) fn reachable<R: Resource>(
    item: R::Item,
    limited_to: Option<MemberId>,
) -> ApiResult<R::Item> {
    match limited_to {
        Some(member) if R::owner(&item) != Some(member) => Err(ApiError::NotFound(R::KIND)),
        _ => Ok(item),
    }
}

/// A member creates or keeps items in their own name only.
pub(crate) fn own_input<R: Resource>(
    input: &R::Input,
    limited_to: Option<MemberId>,
) -> ApiResult<()> {
    match limited_to {
        Some(member) if R::input_owner(input) != Some(member) => Err(ApiError::field(
            "owner_id",
            "owner.not_you",
            "a member's sites are their own: owner_id must be your member id",
        )),
        _ => Ok(()),
    }
}

/// A JSON body whose rejections are problem documents like every other error.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "send the body as application/json".into(),
            )),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// The audit context of a request: its caller and its request id.
pub fn audit_context(caller: &Caller, headers: &HeaderMap) -> AuditContext {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    AuditContext::new(caller.actor.clone(), request_id)
}

pub fn parse_id<I: FromStr>(raw: &str) -> ApiResult<I> {
    raw.parse()
        .map_err(|_| ApiError::field("id", "id.invalid", "not a valid id"))
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

pub fn invalid(field: &str, code: &str, message: impl Into<String>) -> alveole_model::FieldError {
    alveole_model::FieldError::new(field, code, message)
}

// --- the five operations -------------------------------------------------------------------

pub async fn list<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<Json<Page<R::Item>>> {
    let page = page_request(&params, R::FILTERS)?;
    let mut filter = R::parse_filter(&params)?;
    if let Some(member) = caller.limited_to() {
        R::only_owned_by(&mut filter, member);
    }
    Ok(Json(R::list(state.store(), &filter, &page).await?))
}

pub async fn get<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<R::Item>> {
    let item = R::get(state.store(), parse_id(&id)?).await?;
    Ok(Json(reachable::<R>(item, caller.limited_to())?))
}

pub async fn create<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<R::Input>,
) -> ApiResult<impl IntoResponse> {
    own_input::<R>(&input, caller.limited_to())?;
    let new = R::validate(input, None)?;
    let item = R::create(state.store(), &audit_context(&caller, &headers), new).await?;
    let location = format!("/api/v1/{}/{}", R::PLURAL, R::id_of(&item));
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
) -> ApiResult<Json<R::Item>> {
    let id = parse_id::<R::Id>(&id)?;
    let ctx = audit_context(&caller, &headers);
    let item = update_with::<R>(&state, &ctx, caller.limited_to(), id, patch).await?;
    Ok(Json(item))
}

/// The edit path shared by the API and the pages; `limited_to` a member, only their items,
/// kept in their name.
pub async fn update_with<R: Resource>(
    state: &AppState,
    ctx: &AuditContext,
    limited_to: Option<MemberId>,
    id: R::Id,
    mut patch: serde_json::Value,
) -> ApiResult<R::Item> {
    let Some(object) = patch.as_object_mut() else {
        return Err(ApiError::BadRequest("send a JSON object".into()));
    };
    let version = object
        .remove("version")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| {
            ApiError::field("version", "version.required", "send the version you read")
        })?;
    let current = reachable::<R>(R::get(state.store(), id).await?, limited_to)?;
    let mut merged = serde_json::to_value(R::to_input(&current))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    merge_patch(&mut merged, &patch);
    let input: R::Input = serde_path_to_error::deserialize(merged)
        .map_err(|e| ApiError::field(&e.path().to_string(), "type", e.inner().to_string()))?;
    own_input::<R>(&input, limited_to)?;
    let new = R::validate(input, Some(&current))?;
    Ok(R::update(state.store(), ctx, id, version, new).await?)
}

pub async fn delete<R: Resource>(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> ApiResult<StatusCode> {
    let version = match params.get("version") {
        Some(raw) => Some(
            raw.parse()
                .map_err(|_| ApiError::field("version", "version.invalid", "a whole number"))?,
        ),
        None => None,
    };
    if let Some(unknown) = params.keys().find(|k| *k != "version") {
        return Err(ApiError::field(
            unknown,
            "parameter.unknown",
            "unknown query parameter",
        ));
    }
    let id = parse_id(&id)?;
    if let Some(member) = caller.limited_to() {
        reachable::<R>(R::get(state.store(), id).await?, Some(member))?;
    }
    R::delete(
        state.store(),
        &audit_context(&caller, &headers),
        id,
        version,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every item of a keyset-paginated list, following `next_cursor` page by page.
pub async fn every<'a, T>(
    mut page: impl FnMut(PageRequest) -> BoxFuture<'a, StoreResult<Page<T>>>,
) -> StoreResult<Vec<T>> {
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let next = page(PageRequest {
            after,
            limit: MAX_PAGE_SIZE,
        })
        .await?;
        items.extend(next.items);
        match next.next_cursor.and_then(|c| c.parse().ok()) {
            Some(cursor) => after = Some(cursor),
            None => return Ok(items),
        }
    }
}

/// The platform inventory (`inventory.rs`), as JSON.
pub async fn inventory(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> ApiResult<Json<crate::inventory::Inventory>> {
    Ok(Json(crate::inventory::collect(state.store()).await?))
}

/// Who the caller is, as the panel sees them.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    /// As recorded in audit events.
    pub actor: String,
    pub role: alveole_model::Role,
}

pub async fn me(axum::Extension(caller): axum::Extension<Caller>) -> Json<Me> {
    Json(Me {
        actor: caller.actor,
        role: caller.role,
    })
}
