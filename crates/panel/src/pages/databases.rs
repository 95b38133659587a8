//! A site's databases on its page: where the site reaches each, under which variables, how
//! much each holds against its quota, a link to download a dump (the API's, which a session
//! may read), and a new password. Imports go through the API or the command line (a dump is
//! too large for a form).

use alveole_model::{Site, SiteId};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::backups::back_to_site;
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;

/// The section's values: the API's view of the site's databases, sizes written in units.
pub(super) async fn section(
    state: &AppState,
    caller: &Caller,
    site: &Site,
) -> Result<Option<Value>, ApiError> {
    if site.databases.is_empty() {
        return Ok(None);
    }
    let listed = state
        .service()
        .site_databases(caller.limited_to(), site.id)
        .await?;
    let format = alveole_model::quantity::format_bytes;
    let rows: Vec<Value> = listed
        .iter()
        .map(|db| {
            json!({
                "name": db.name,
                "engine": db.engine.as_str(),
                "version": db.version,
                "address": format!("{}:{}", db.host, db.port),
                "user": db.user,
                "variables": db.variables,
                "used": db.used_bytes.map(format),
                "quota": format(db.quota_bytes),
                "over_quota": db.used_bytes.is_some_and(|used| used > db.quota_bytes),
                "dump": format!("/api/v1/sites/{}/databases/{}/dump", site.id, db.name),
            })
        })
        .collect();
    Ok(Some(json!({ "items": rows })))
}

/// A new password for one of the site's databases.
pub async fn rotate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let ctx = audit_context(&caller, &headers);
        state
            .service()
            .rotate_database_password(&ctx, caller.limited_to(), site, &name)
            .await?;
        Ok::<_, ApiError>(site)
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}
