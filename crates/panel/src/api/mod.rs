//! The JSON API under `/api/v1`: thin handlers that read a request (bearer-authenticated by the
//! middleware), call the service, and answer JSON or a problem document. One file per area;
//! `records.rs` serves the five operations of every resource at once.

pub mod addresses;
pub mod agents;
pub mod audit;
pub mod backups;
pub mod certificates;
pub mod databases;
pub mod drills;
pub mod evacuations;
pub mod members;
pub mod records;
pub mod site_moves;
#[cfg(test)]
mod strict_tests;

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use alveole_store::{AuditContext, Page, PageRequest, StoreResult};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// What the store's (async-trait) methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// A JSON body, read strictly: a field the input does not have is refused at any depth, and
/// every error is a problem document naming its field (413 past the body limit, 415 when the
/// body is not JSON).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json",
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status(), rejection.body_text()))?;
        Ok(Self(alveole_model::strict::from_slice(&body)?))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// What reading a body failed with: too large (413), or cut short.
fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge("the body is larger than the panel reads (--max-body-bytes)")
    } else {
        ApiError::BadRequest(text)
    }
}

/// A path parameter, as text; ids are parsed by the handler ([`parse_id`]), so that every
/// refusal names its field. A parameter that is not UTF-8 once decoded is refused here,
/// under its own name.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => {
                use axum::extract::path::ErrorKind;
                use axum::extract::rejection::PathRejection;
                let field = match &rejection {
                    PathRejection::FailedToDeserializePathParams(error) => match error.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                        _ => "path".to_owned(),
                    },
                    _ => "path".to_owned(),
                };
                Err(ApiError::field(
                    &field,
                    "path.invalid",
                    rejection.body_text(),
                ))
            }
        }
    }
}

/// Query parameters; a query that cannot be decoded is refused as a problem document.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::field(
                "query",
                "parameter.invalid",
                rejection.body_text(),
            )),
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
