//! The JSON API under `/api/v1`: thin handlers that read a request (bearer-authenticated by the
//! middleware), call the service, and answer JSON or a problem document. One file per area;
//! `records.rs` serves the five operations of every resource at once.

pub mod addresses;
pub mod agents;
pub mod audit;
pub mod evacuations;
pub mod members;
pub mod records;
pub mod site_moves;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use alveole_store::{AuditContext, Page, PageRequest, StoreResult};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// What the store's (async-trait) methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

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

/// The request id the middleware gave a request (`-` when none).
pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

/// The audit context of a request: its caller and its request id.
pub fn audit_context(caller: &Caller, headers: &HeaderMap) -> AuditContext {
    AuditContext::new(caller.actor.clone(), request_id(headers))
}

pub fn parse_id<I: FromStr>(raw: &str) -> ApiResult<I> {
    raw.parse()
        .map_err(|_| ApiError::field("id", "id.invalid", "not a valid id"))
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
