//! HTML pages (tera templates under `templates/`, embedded at build time). Every string goes
//! through the translation catalogues; every state-changing form carries the CSRF token.

pub mod addresses;
pub mod audit;
pub mod evacuations;
mod form;
mod resources;
pub mod site_moves;

use std::collections::BTreeMap;

use alveole_model::FieldError;
use alveole_model::quantity::format_bytes;
use alveole_store::PageRequest;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Value, json};

pub use form::{Field, Kind, Options};
pub use resources::PageResource;

use crate::AppState;
use crate::api::{self, Resource, audit_context, parse_id};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::i18n::{LANG_COOKIE, LANGUAGES, negotiate};

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../../templates/base.html")),
    (
        "audit.html",
        include_str!("../../../../templates/audit.html"),
    ),
    (
        "addresses.html",
        include_str!("../../../../templates/addresses.html"),
    ),
    (
        "evacuations.html",
        include_str!("../../../../templates/evacuations.html"),
    ),
    (
        "inventory.html",
        include_str!("../../../../templates/inventory.html"),
    ),
    (
        "audit_report.html",
        include_str!("../../../../templates/audit_report.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../../../templates/dashboard.html"),
    ),
    (
        "login.html",
        include_str!("../../../../templates/login.html"),
    ),
    (
        "break_glass.html",
        include_str!("../../../../templates/break_glass.html"),
    ),
    ("list.html", include_str!("../../../../templates/list.html")),
    (
        "detail.html",
        include_str!("../../../../templates/detail.html"),
    ),
    ("form.html", include_str!("../../../../templates/form.html")),
    (
        "message.html",
        include_str!("../../../../templates/message.html"),
    ),
];

pub fn templates() -> Result<tera::Tera, tera::Error> {
    let mut tera = tera::Tera::default();
    tera.add_raw_templates(TEMPLATES.iter().copied())?;
    Ok(tera)
}

/// Renders `template` in the request's language. `t` holds the catalogue, `lang` the language.
fn render(
    state: &AppState,
    headers: &HeaderMap,
    caller: Option<&Caller>,
    template: &str,
    mut context: tera::Context,
) -> Response {
    let lang = negotiate(headers);
    context.insert("t", state.i18n().catalog(lang));
    context.insert("lang", lang);
    context.insert("languages", &LANGUAGES);
    context.insert("signed_in", &caller.is_some());
    if let Some(caller) = caller {
        context.insert("who", &caller.actor);
        context.insert("role_key", &format!("role.{}", caller.role.as_str()));
    }
    context.insert(
        "csrf",
        &caller
            .and_then(|c| c.csrf_token.clone())
            .unwrap_or_default(),
    );
    match state.templates().render(template, &context) {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(template, error = ?error, "template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A page with a title and a message (errors, not found).
fn message(
    state: &AppState,
    headers: &HeaderMap,
    caller: Option<&Caller>,
    status: StatusCode,
    title_key: &str,
    text: &str,
) -> Response {
    let mut context = tera::Context::new();
    context.insert("title_key", title_key);
    context.insert("text", text);
    let mut response = render(state, headers, caller, "message.html", context);
    *response.status_mut() = status;
    response
}

/// A failed page action, shown as a page (internal details only in the log).
fn error_page(
    state: &AppState,
    headers: &HeaderMap,
    caller: Option<&Caller>,
    error: ApiError,
) -> Response {
    let status = error.status();
    if let ApiError::Internal(source) = &error {
        tracing::error!(error = %source, "internal error");
    }
    let text = match &error {
        ApiError::Internal(_) => String::new(),
        other => translate_message(state, headers, &other.problem().detail, None),
    };
    message(state, headers, caller, status, "title.error", &text)
}

fn translate_message(
    state: &AppState,
    headers: &HeaderMap,
    fallback: &str,
    code: Option<&str>,
) -> String {
    match code {
        Some(code) => state
            .i18n()
            .text(negotiate(headers), &format!("error.{code}"), fallback),
        None => fallback.to_owned(),
    }
}

pub async fn not_found(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::NotFound("route").into_response();
    }
    message(
        &state,
        &headers,
        None,
        StatusCode::NOT_FOUND,
        "title.not_found",
        uri.path(),
    )
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../../templates/alveole.css"),
    )
}

fn csrf_checked(caller: &Caller, form: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if auth::csrf_ok(caller, form.get("csrf").map(String::as_str)) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "this form has expired: reload the page and send it again".into(),
        ))
    }
}

/// Sends a browser back to a page of the panel only: `next` is a local path or nothing.
fn local_path(next: Option<&String>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.clone()
        }
        _ => "/".to_owned(),
    }
}

// --- sign-in, language, dashboard ----------------------------------------------------------

pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut context = tera::Context::new();
    context.insert("error", "");
    context.insert("oidc", &state.config().oidc.is_some());
    render(&state, &headers, None, "login.html", context)
}

/// Sends the browser to the identity provider.
pub async fn oidc_start(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(oidc) = state.config().oidc.clone() else {
        return error_page(
            &state,
            &headers,
            None,
            ApiError::NotFound("identity provider"),
        );
    };
    match oidc.start(state.store(), state.config().clock.now()).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => oidc_failed(&state, &headers, &error),
    }
}

/// The identity provider sends the browser back here: a member's session, or why not.
pub async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(oidc) = state.config().oidc.clone() else {
        return error_page(
            &state,
            &headers,
            None,
            ApiError::NotFound("identity provider"),
        );
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let now = state.config().clock.now();
    let member = match oidc
        .finish(
            state.store(),
            &request_id,
            query.get("code").map(String::as_str),
            query.get("state").map(String::as_str),
            now,
        )
        .await
    {
        Ok(member) => member,
        Err(error) => return oidc_failed(&state, &headers, &error),
    };
    let ctx = alveole_store::AuditContext::new(format!("member:{member}"), request_id);
    match auth::open_member_session(state.store(), &ctx, member, now).await {
        Ok(cookie) => (
            [(header::SET_COOKIE, session_cookie(&state, &cookie))],
            Redirect::to("/"),
        )
            .into_response(),
        Err(error) => error_page(&state, &headers, None, error.into()),
    }
}

fn oidc_failed(state: &AppState, headers: &HeaderMap, error: &crate::oidc::OidcError) -> Response {
    use crate::oidc::OidcError;
    let status = match error {
        OidcError::Incomplete | OidcError::UnknownLogin => StatusCode::BAD_REQUEST,
        OidcError::Rejected(_) => StatusCode::UNAUTHORIZED,
        OidcError::NoMember | OidcError::Disabled => StatusCode::FORBIDDEN,
        OidcError::Provider(_) => StatusCode::BAD_GATEWAY,
        OidcError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::warn!(%error, "a sign-in through the identity provider failed");
    message(
        state,
        headers,
        None,
        status,
        "title.login",
        &error.to_string(),
    )
}

/// The client's address, as the server saw the connection (a reverse proxy in front of the
/// panel makes it the proxy's: every client then shares one allowance).
fn client_address(
    connection: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
) -> std::net::IpAddr {
    connection.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip())
}

/// 429 with Retry-After when this client has tried signing in too often.
fn too_many_attempts(
    state: &AppState,
    headers: &HeaderMap,
    client: std::net::IpAddr,
) -> Option<Response> {
    let wait = state
        .sign_in_attempts()
        .check(client, std::time::Instant::now())
        .err()?;
    tracing::warn!(%client, wait, "too many sign-in attempts");
    let text = state.i18n().text(
        negotiate(headers),
        "login.too_many",
        "Too many attempts: wait a minute.",
    );
    let mut response = message(
        state,
        headers,
        None,
        StatusCode::TOO_MANY_REQUESTS,
        "title.login",
        &text,
    );
    if let Ok(value) = header::HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(response)
}

/// The session cookie for `cookie`: `__Host-`-like rules (HttpOnly, SameSite=Lax, Path=/).
fn session_cookie(state: &AppState, cookie: &str) -> String {
    let secure = if state.config().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={cookie}; Path=/; HttpOnly; SameSite=Lax{secure}",
        auth::session_cookie_name(state.config())
    )
}

pub async fn login(
    State(state): State<AppState>,
    connection: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if let Some(refused) = too_many_attempts(&state, &headers, client_address(connection)) {
        return refused;
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    // Pages sign in the bootstrap admin; members sign in through the identity provider.
    let caller = match auth::caller_from_bootstrap(state.store(), token).await {
        Ok(caller) => caller,
        Err(error) => return error_page(&state, &headers, None, error.into()),
    };
    let Some(caller) = caller else {
        let mut context = tera::Context::new();
        context.insert(
            "error",
            &state
                .i18n()
                .text(negotiate(&headers), "login.wrong_token", "wrong token"),
        );
        let mut response = render(&state, &headers, None, "login.html", context);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    };
    let ctx = audit_context(&caller, &headers);
    match auth::open_session(
        state.store(),
        &ctx,
        &caller.actor,
        state.config().clock.now(),
    )
    .await
    {
        Ok(cookie) => (
            [(header::SET_COOKIE, session_cookie(&state, &cookie))],
            Redirect::to("/"),
        )
            .into_response(),
        Err(error) => error_page(&state, &headers, None, error.into()),
    }
}

/// The page a break-glass link opens: one button, so that a link preview or prefetch does not
/// use the one-time link.
pub async fn break_glass_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let mut context = tera::Context::new();
    context.insert("token", query.get("token").map_or("", String::as_str));
    render(&state, &headers, None, "break_glass.html", context)
}

/// Uses a break-glass link: an admin session for the life the link grants, clearly recorded.
pub async fn break_glass(
    State(state): State<AppState>,
    connection: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let client = client_address(connection);
    if let Some(refused) = too_many_attempts(&state, &headers, client) {
        return refused;
    }
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let ctx = alveole_store::AuditContext::new(auth::BREAK_GLASS_ACTOR, request_id);
    let lifetime = match state
        .store()
        .use_break_glass(&ctx, &auth::hash_token(token), state.config().clock.now())
        .await
    {
        Ok(Some(seconds)) => chrono::Duration::seconds(seconds),
        Ok(None) => {
            let text = state.i18n().text(
                negotiate(&headers),
                "break_glass.invalid",
                "This link is unknown, used or expired.",
            );
            return message(
                &state,
                &headers,
                None,
                StatusCode::FORBIDDEN,
                "title.break_glass",
                &text,
            );
        }
        Err(error) => return error_page(&state, &headers, None, error.into()),
    };
    tracing::warn!(%client, seconds = lifetime.num_seconds(), "a break-glass link was used: admin session opened");
    let now = state.config().clock.now();
    match auth::open_session_for(state.store(), &ctx, auth::BREAK_GLASS_ACTOR, now, lifetime).await
    {
        Ok(cookie) => (
            [(header::SET_COOKIE, session_cookie(&state, &cookie))],
            Redirect::to("/"),
        )
            .into_response(),
        Err(error) => error_page(&state, &headers, None, error.into()),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if let Err(error) = csrf_checked(&caller, &form) {
        return error_page(&state, &headers, Some(&caller), error);
    }
    if let Some(cookie) = auth::cookie(&headers, auth::session_cookie_name(state.config()))
        && let Err(error) =
            auth::close_session(state.store(), &audit_context(&caller, &headers), cookie).await
    {
        return error_page(&state, &headers, Some(&caller), error.into());
    }
    let expired = format!("{}; Max-Age=0", session_cookie(&state, ""));
    // A member signed in at the provider leaves its session too, where it offers that.
    let next = match (&state.config().oidc, caller.member) {
        (Some(oidc), Some(_)) => oidc.logout_url().await,
        _ => None,
    };
    let next = next.unwrap_or_else(|| "/login".to_owned());
    ([(header::SET_COOKIE, expired)], Redirect::to(&next)).into_response()
}

pub async fn language(
    Path(lang): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let next = local_path(query.get("next"));
    match LANGUAGES.iter().find(|l| **l == lang) {
        Some(lang) => {
            let cookie = format!("{LANG_COOKIE}={lang}; Path=/; SameSite=Lax; Max-Age=31536000");
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        None => (StatusCode::NOT_FOUND, "unknown language").into_response(),
    }
}

pub async fn dashboard(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    // The dashboard is the platform's: a member's home is their sites.
    if caller.limited_to().is_some() {
        return Redirect::to("/sites").into_response();
    }
    let store = state.store();
    let (counts, usage, statuses) =
        match tokio::try_join!(store.counts(), store.node_usage(), store.node_statuses()) {
            Ok(all) => all,
            Err(error) => return error_page(&state, &headers, Some(&caller), error.into()),
        };
    let now = chrono::Utc::now();
    let percent = |used: u64, total: f64| {
        if total > 0.0 {
            ((used as f64 / total) * 100.0).round() as u64
        } else {
            0
        }
    };
    let nodes: Vec<Value> = usage
        .iter()
        .map(|u| {
            let l = &u.load;
            let cpu_total = f64::from(l.capacity.cpu_millis) * l.overcommit.cpu;
            let mem_total = l.capacity.memory_bytes as f64 * l.overcommit.memory;
            json!({
                "id": l.node_id.to_string(),
                "name": u.name.as_str(),
                "sites": u.sites,
                "cpu_percent": percent(l.reserved.cpu_millis, cpu_total),
                "memory_percent": percent(l.reserved.memory_bytes, mem_total),
                "disk_percent": percent(l.reserved.disk_bytes, l.capacity.disk_bytes as f64),
                "memory": format!("{} / {}", format_bytes(l.reserved.memory_bytes), format_bytes(mem_total as u64)),
                "state_key": node_state_key(&statuses, l.node_id, now, state.config().node_unreachable_after),
                "last_seen": statuses.iter().find(|s| s.node_id == l.node_id).map(|s| s.reported_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            })
        })
        .collect();
    let phases: Vec<Value> = counts
        .sites_by_phase
        .iter()
        .map(|(p, n)| json!({"phase": p.as_str(), "label_key": format!("phase.{}", p.as_str()), "count": n}))
        .collect();
    let mut context = tera::Context::new();
    context.insert("counts", &counts);
    context.insert("phases", &phases);
    context.insert("nodes", &nodes);
    render(&state, &headers, Some(&caller), "dashboard.html", context)
}

/// Makes a one-time join token for the node and shows the command that enrols its agent.
pub async fn node_join_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        csrf_checked(&caller, &form)?;
        let node: alveole_model::NodeId = parse_id(&id)?;
        let token = auth::new_token("alj_");
        let expires_at = chrono::Utc::now() + chrono::Duration::hours(24);
        state
            .store()
            .create_join_token(
                &audit_context(&caller, &headers),
                node,
                &auth::hash_token(&token),
                expires_at,
            )
            .await?;
        Ok::<_, ApiError>(crate::api::agents::join_command(&state, &headers, &token))
    }
    .await;
    match result {
        Ok(command) => message(
            &state,
            &headers,
            Some(&caller),
            StatusCode::CREATED,
            "title.join_token",
            &command,
        ),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

/// `node.reachable`, `node.unreachable` or `node.never_seen`, for the dashboard.
fn node_state_key(
    statuses: &[alveole_store::NodeStatus],
    node: alveole_model::NodeId,
    now: chrono::DateTime<chrono::Utc>,
    after: std::time::Duration,
) -> &'static str {
    match statuses.iter().find(|s| s.node_id == node) {
        None => "node.never_seen",
        Some(s) if crate::api::agents::reachable(Some(s.reported_at), now, after) => {
            "node.reachable"
        }
        Some(_) => "node.unreachable",
    }
}

// --- the pages of a resource ---------------------------------------------------------------

pub async fn list<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let page = match params.get("cursor").map(|c| c.parse()) {
        Some(Err(_)) => {
            return error_page(
                &state,
                &headers,
                Some(&caller),
                ApiError::BadRequest("bad cursor".into()),
            );
        }
        Some(Ok(after)) => PageRequest {
            after: Some(after),
            limit: api::DEFAULT_PAGE_SIZE,
        },
        None => PageRequest {
            after: None,
            limit: api::DEFAULT_PAGE_SIZE,
        },
    };
    let mut filter = R::Filter::default();
    if let Some(member) = caller.limited_to() {
        R::only_owned_by(&mut filter, member);
    }
    let page = match R::list(state.store(), &filter, &page).await {
        Ok(page) => page,
        Err(error) => return error_page(&state, &headers, Some(&caller), error.into()),
    };
    let rows: Vec<Value> = page
        .items
        .iter()
        .map(|item| json!({"id": R::id_of(item).to_string(), "cells": R::cells(item)}))
        .collect();
    let mut context = tera::Context::new();
    context.insert("plural", R::PLURAL);
    context.insert("title_key", &format!("nav.{}", R::PLURAL));
    context.insert("new_key", &format!("action.new.{}", R::PLURAL));
    context.insert(
        "column_keys",
        &R::COLUMNS
            .iter()
            .map(|c| format!("field.{c}"))
            .collect::<Vec<_>>(),
    );
    context.insert("rows", &rows);
    context.insert("next_cursor", &page.next_cursor);
    render(&state, &headers, Some(&caller), "list.html", context)
}

pub async fn show<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let item = match load::<R>(&state, &caller, &id).await {
        Ok(item) => item,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let mut rows = Vec::new();
    flatten(
        "",
        &serde_json::to_value(&item).unwrap_or(Value::Null),
        &mut rows,
    );
    match R::status_rows(&state, &item).await {
        Ok(status) => rows.extend(status),
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    }
    let moves = match R::moves(&state, &caller, &item).await {
        Ok(moves) => moves,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let actions: Vec<Value> = R::actions(&item)
        .into_iter()
        .map(|(url, label)| json!({"url": url, "label_key": label}))
        .collect();
    let mut context = tera::Context::new();
    context.insert("actions", &actions);
    if let Some(moves) = &moves {
        context.insert("moves", moves);
    }
    context.insert("plural", R::PLURAL);
    context.insert("id", &id);
    context.insert("title", &R::title(&item));
    context.insert("rows", &rows);
    context.insert(
        "version",
        &serde_json::to_value(&item)
            .ok()
            .and_then(|v| v["version"].as_i64()),
    );
    render(&state, &headers, Some(&caller), "detail.html", context)
}

/// `{"limits": {"pids": 5}}` → `[("limits.pids", "5")]`, for the detail page.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, value, out);
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
            let text: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect();
            out.push((prefix.to_owned(), text.join(", ")));
        }
        Value::Array(items) => {
            let text: Vec<String> = items
                .iter()
                .map(|i| match (i["name"].as_str(), i["secret"].as_bool()) {
                    (Some(name), Some(true)) => format!("{name}=••••••"),
                    (Some(name), _) => format!("{name}={}", i["value"].as_str().unwrap_or("")),
                    _ => i.to_string(),
                })
                .collect();
            out.push((prefix.to_owned(), text.join("\n")));
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => out.push((prefix.to_owned(), "—".to_owned())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// The item, if this caller may reach it (another member's answers 404).
async fn load<R: Resource>(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<R::Item, ApiError> {
    let item = R::get(state.store(), parse_id(id)?).await?;
    api::reachable::<R>(item, caller.limited_to())
}

pub async fn new_form<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let values = form::to_text(R::FIELDS, &R::blank_input());
    render_form::<R>(
        &state,
        &headers,
        &caller,
        FormPage {
            id: None,
            version: None,
            values,
            errors: vec![],
        },
    )
    .await
}

pub async fn edit_form<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let item = match load::<R>(&state, &caller, &id).await {
        Ok(item) => item,
        Err(error) => return error_page(&state, &headers, Some(&caller), error),
    };
    let input = serde_json::to_value(R::to_input(&item)).unwrap_or(Value::Null);
    let version = serde_json::to_value(&item)
        .ok()
        .and_then(|v| v["version"].as_i64());
    let values = form::to_text(R::FIELDS, &input);
    render_form::<R>(
        &state,
        &headers,
        &caller,
        FormPage {
            id: Some(id),
            version,
            values,
            errors: vec![],
        },
    )
    .await
}

pub async fn create<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Form(submitted): Form<BTreeMap<String, String>>,
) -> Response {
    let ctx = audit_context(&caller, &headers);
    let result = async {
        csrf_checked(&caller, &submitted)?;
        let json = form::to_json(R::FIELDS, &submitted)?;
        let input: R::Input = serde_path_to_error::deserialize(json)
            .map_err(|e| ApiError::field(&e.path().to_string(), "type", e.inner().to_string()))?;
        api::own_input::<R>(&input, caller.limited_to())?;
        let new = R::validate(input, None)?;
        Ok::<_, ApiError>(R::create(state.store(), &ctx, new).await?)
    }
    .await;
    after_submit::<R>(&state, &headers, &caller, submitted, None, result).await
}

pub async fn update<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(submitted): Form<BTreeMap<String, String>>,
) -> Response {
    let ctx = audit_context(&caller, &headers);
    let result = async {
        csrf_checked(&caller, &submitted)?;
        let mut json = form::to_json(R::FIELDS, &submitted)?;
        let version: i64 = submitted
            .get("version")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ApiError::field("version", "version.required", "send the version you read")
            })?;
        json["version"] = json!(version);
        api::update_with::<R>(&state, &ctx, caller.limited_to(), parse_id(&id)?, json).await
    }
    .await;
    after_submit::<R>(&state, &headers, &caller, submitted, Some(id), result).await
}

/// Redirects to the saved resource, or shows the form again with the input kept and each
/// message next to its field.
async fn after_submit<R: PageResource>(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    submitted: BTreeMap<String, String>,
    id: Option<String>,
    result: Result<R::Item, ApiError>,
) -> Response {
    match result {
        Ok(item) => Redirect::to(&format!("/{}/{}", R::PLURAL, R::id_of(&item))).into_response(),
        Err(
            error @ (ApiError::Validation(_) | ApiError::Conflict { .. } | ApiError::BadRequest(_)),
        ) => {
            let mut errors = error.field_errors();
            if errors.is_empty() {
                errors.push(FieldError::new("", "", error.problem().detail));
            }
            let version = submitted.get("version").and_then(|v| v.parse().ok());
            let page = FormPage {
                id,
                version,
                values: submitted,
                errors,
            };
            let mut response = render_form::<R>(state, headers, caller, page).await;
            *response.status_mut() = error.status();
            response
        }
        Err(error) => error_page(state, headers, Some(caller), error),
    }
}

pub async fn delete<R: PageResource>(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(submitted): Form<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        csrf_checked(&caller, &submitted)?;
        let version = submitted.get("version").and_then(|v| v.parse().ok());
        load::<R>(&state, &caller, &id).await?;
        Ok::<_, ApiError>(
            R::delete(
                state.store(),
                &audit_context(&caller, &headers),
                parse_id(&id)?,
                version,
            )
            .await?,
        )
    }
    .await;
    match result {
        Ok(()) => Redirect::to(&format!("/{}", R::PLURAL)).into_response(),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}

struct FormPage {
    id: Option<String>,
    version: Option<i64>,
    values: BTreeMap<String, String>,
    errors: Vec<FieldError>,
}

async fn render_form<R: PageResource>(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    page: FormPage,
) -> Response {
    let lang = negotiate(headers);
    let options = match resources::select_options(state, R::FIELDS, caller.limited_to()).await {
        Ok(options) => options,
        Err(error) => return error_page(state, headers, Some(caller), error),
    };
    let message_of = |e: &FieldError| {
        state
            .i18n()
            .text(lang, &format!("error.{}", e.code), &e.message)
    };
    let mut general: Vec<String> = Vec::new();
    let mut by_input: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for error in &page.errors {
        match form::input_for_error(R::FIELDS, &error.field) {
            Some(input) => by_input.entry(input).or_default().push(message_of(error)),
            None => general.push(message_of(error)),
        }
    }
    let fields: Vec<Value> = R::FIELDS
        .iter()
        .map(|field| {
            let name = field.input_name();
            let value = page.values.get(name).cloned().unwrap_or_default();
            let kind = match field.kind {
                Kind::Textarea | Kind::Lines | Kind::Env { .. } | Kind::Ports => "textarea",
                Kind::Select(_) => "select",
                Kind::Email => "email",
                Kind::Checkbox => "checkbox",
                Kind::Date => "date",
                _ => "text",
            };
            let choices: Vec<Value> = match field.kind {
                Kind::Select(source) => options
                    .get(&source)
                    .map(|list| {
                        list.iter()
                            .map(|(v, label)| json!({"value": v, "label": label, "selected": *v == value}))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => vec![],
            };
            json!({
                "name": name,
                "label_key": format!("field.{name}"),
                "help_key": format!("help.{name}"),
                "kind": kind,
                "value": value,
                "options": choices,
                "errors": by_input.get(name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let action = match &page.id {
        Some(id) => format!("/{}/{id}/edit", R::PLURAL),
        None => format!("/{}/new", R::PLURAL),
    };
    let mut context = tera::Context::new();
    context.insert("plural", R::PLURAL);
    context.insert("new_key", &format!("action.new.{}", R::PLURAL));
    context.insert("editing", &page.id.is_some());
    context.insert("action", &action);
    context.insert("version", &page.version);
    context.insert("fields", &fields);
    context.insert("general_errors", &general);
    render(state, headers, Some(caller), "form.html", context)
}
