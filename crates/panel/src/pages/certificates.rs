//! HTTPS on a site's page: its certificate (issuer, names, expiry, renewal, last error), the
//! member's own put in place (pasted PEM) or removed.

use std::collections::BTreeMap;

use alveole_model::{Site, SiteId};
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::backups::back_to_site;
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::certificates::CertificateUpload;

/// The section's values: the API's view of the site's HTTPS.
pub(super) async fn section(
    state: &AppState,
    caller: &Caller,
    site: &Site,
) -> Result<Option<Value>, ApiError> {
    let view = state
        .service()
        .site_certificate(caller.limited_to(), site.id)
        .await?;
    Ok(Some(
        serde_json::to_value(view).map_err(|e| ApiError::BadRequest(e.to_string()))?,
    ))
}

/// The member's own certificate, pasted.
pub async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let field = |name: &str| form.get(name).cloned().unwrap_or_default();
        let upload = CertificateUpload {
            chain_pem: field("chain_pem"),
            key_pem: field("key_pem"),
        };
        let ctx = audit_context(&caller, &headers);
        state
            .service()
            .upload_certificate(&ctx, caller.limited_to(), site, upload)
            .await?;
        Ok::<_, ApiError>(site)
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let ctx = audit_context(&caller, &headers);
        state
            .service()
            .remove_certificate(&ctx, caller.limited_to(), site)
            .await?;
        Ok::<_, ApiError>(site)
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}
