//! The site page's move forms: move the site, cancel a move before its switch, end a
//! forwarding. Each goes back to the site's page, where the move's progress shows.

use std::collections::BTreeMap;

use alveole_model::{NodeId, SiteId, SiteMove, SiteMoveId};
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};

use super::error_page;
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;

pub async fn move_site(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let site: SiteId = parse_id(&id)?;
        let to: NodeId = parse_id(form.get("to_node").map_or("", String::as_str))?;
        let ctx = audit_context(&caller, &headers);
        state.service().start_site_move(&ctx, site, to).await
    }
    .await;
    back_to_site(&state, &headers, &caller, result)
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    on_move(&state, &caller, &headers, &id, |ctx, id| {
        let state = state.clone();
        async move { state.service().cancel_site_move(&ctx, id).await }
    })
    .await
}

pub async fn finish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    on_move(&state, &caller, &headers, &id, |ctx, id| {
        let state = state.clone();
        async move { state.service().finish_site_move(&ctx, id).await }
    })
    .await
}

/// A form's action on the move of the path, done with the caller's audit context, then back
/// to the site's page (or the error).
async fn on_move<F, Fut>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    id: &str,
    action: F,
) -> Response
where
    F: FnOnce(alveole_store::AuditContext, SiteMoveId) -> Fut,
    Fut: std::future::Future<Output = Result<SiteMove, ApiError>>,
{
    let result = async {
        let id: SiteMoveId = parse_id(id)?;
        action(audit_context(caller, headers), id).await
    }
    .await;
    back_to_site(state, headers, caller, result)
}

fn back_to_site(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    result: Result<SiteMove, ApiError>,
) -> Response {
    match result {
        Ok(movement) => Redirect::to(&format!("/sites/{}", movement.site_id)).into_response(),
        Err(error) => error_page(state, headers, Some(caller), error),
    }
}
