//! The addresses page: pools with what is used and free, the allocated addresses, and (for
//! admins) the forms that add a pool, allocate an address and release one.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::{error_page, render};
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::addresses::{MoveRequest, parse_address};

pub async fn page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let store = state.store();
        let pools = state.service().address_pools().await?;
        let moves = store.address_moves().await?;
        // Each allocation with its move, if it is moving.
        let allocations: Vec<_> = store
            .ip_allocations()
            .await?
            .into_iter()
            .map(|a| {
                let moving = moves.iter().find(|m| m.address == a.address);
                json!({"allocation": a, "moving": moving})
            })
            .collect();
        let all = alveole_store::PageRequest {
            after: None,
            limit: 500,
        };
        let providers: Vec<_> = store
            .providers()
            .list(&Default::default(), &all)
            .await?
            .items
            .into_iter()
            .map(|p| json!({"id": p.id, "name": p.name}))
            .collect();
        let nodes: Vec<_> = store
            .nodes()
            .list(&Default::default(), &all)
            .await?
            .items
            .into_iter()
            .map(|n| json!({"id": n.id, "name": n.name}))
            .collect();
        let node_names: serde_json::Map<String, serde_json::Value> = nodes
            .iter()
            .filter_map(|n| Some((n["id"].as_str()?.to_owned(), n["name"].clone())))
            .collect();
        let mut context = tera::Context::new();
        context.insert("node_names", &node_names);
        context.insert("pools", &pools);
        context.insert("allocations", &allocations);
        context.insert("providers", &providers);
        context.insert("nodes", &nodes);
        context.insert("admin", &(caller.role == alveole_model::Role::Admin));
        Ok::<_, ApiError>(context)
    }
    .await;
    match result {
        Ok(context) => render(&state, &headers, Some(&caller), "addresses.html", context),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

fn field<'a>(form: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

pub async fn create_pool(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let provider = parse_id(field(&form, "provider_id").unwrap_or(""))?;
        let prefix = field(&form, "prefix").unwrap_or("");
        let ctx = audit_context(&caller, &headers);
        state
            .service()
            .create_address_pool(&ctx, provider, prefix)
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    done(&state, &headers, &caller, result)
}

pub async fn allocate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let pool = parse_id(field(&form, "pool_id").unwrap_or(""))?;
        let node = parse_id(field(&form, "node_id").unwrap_or(""))?;
        let site = field(&form, "site_id").map(parse_id).transpose()?;
        let address = field(&form, "address").map(parse_address).transpose()?;
        state
            .store()
            .allocate_ip(&audit_context(&caller, &headers), pool, node, site, address)
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    done(&state, &headers, &caller, result)
}

pub async fn release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    on_address(&state, &caller, &headers, &address, |ctx, address| {
        let state = state.clone();
        async move { Ok(state.store().release_ip(&ctx, address).await?) }
    })
    .await
}

pub async fn move_address(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let request = parse_id(field(&form, "to_node").unwrap_or("")).map(|to_node| MoveRequest {
        to_node,
        force: field(&form, "force").is_some(),
    });
    on_address(&state, &caller, &headers, &address, |ctx, address| {
        let state = state.clone();
        async move {
            state
                .service()
                .start_address_move(&ctx, address, &request?)
                .await?;
            Ok(())
        }
    })
    .await
}

pub async fn cancel_move(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(address): Path<String>,
) -> Response {
    on_address(&state, &caller, &headers, &address, |ctx, address| {
        let state = state.clone();
        async move { Ok(state.store().cancel_address_move(&ctx, address).await?) }
    })
    .await
}

/// A form's action on the address of the path, done with the caller's audit context, then
/// back to the page (or the error).
async fn on_address<F, Fut>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    address: &str,
    action: F,
) -> Response
where
    F: FnOnce(alveole_store::AuditContext, std::net::IpAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let result = async {
        let address = parse_address(address)?;
        action(audit_context(caller, headers), address).await
    }
    .await;
    done(state, headers, caller, result)
}

fn done(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    result: Result<(), ApiError>,
) -> Response {
    match result {
        Ok(()) => Redirect::to("/addresses").into_response(),
        Err(error) => error_page(state, headers, Some(caller), error),
    }
}
