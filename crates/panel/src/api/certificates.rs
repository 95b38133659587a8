//! A site's certificate through the API: what it is (issuer, names, expiry, renewal, last
//! error), the member's own put in place or removed, and a revocation.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use super::{ApiJson, Path, audit_context, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::service::certificates::{CertificateUpload, SiteCertificate};

pub async fn of_site(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteCertificate>> {
    Ok(Json(
        state
            .service()
            .site_certificate(caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}

pub async fn upload(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(upload): ApiJson<CertificateUpload>,
) -> ApiResult<Json<SiteCertificate>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .upload_certificate(&ctx, caller.limited_to(), parse_id(&id)?, upload)
            .await?,
    ))
}

pub async fn remove(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteCertificate>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .remove_certificate(&ctx, caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteCertificate>> {
    let ctx = audit_context(&caller, &headers);
    Ok(Json(
        state
            .service()
            .revoke_certificate(&ctx, caller.limited_to(), parse_id(&id)?)
            .await?,
    ))
}
