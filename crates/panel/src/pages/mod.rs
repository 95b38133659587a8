//! HTML pages (tera templates under `templates/`, embedded at build time), one file per area.
//! Every string goes through the translation catalogues; every state-changing form carries
//! the session's CSRF token, which the middleware checks before any handler runs.

pub mod addresses;
pub mod audit;
pub mod backups;
pub mod certificates;
pub mod dashboard;
pub mod databases;
pub mod evacuations;
mod form;
pub mod nodes;
pub mod records;
mod resources;
pub mod sign_in;
pub mod site_moves;
pub mod traffic;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

pub use form::{Field, Kind, Options};
pub use resources::PageResource;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::i18n::{LANGUAGES, negotiate};

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
    (
        "signed_out.html",
        include_str!("../../../../templates/signed_out.html"),
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
        context.insert("role", caller.role.as_str());
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
pub(crate) fn error_page(
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
        other => other.problem().detail,
    };
    message(state, headers, caller, status, "title.error", &text)
}

/// A page the caller's role may not open or use, in their language.
pub(crate) fn refused_page(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    text_key: &str,
) -> Response {
    let text = state.i18n().text(
        negotiate(headers),
        text_key,
        "This page is not for your role.",
    );
    message(
        state,
        headers,
        Some(caller),
        StatusCode::FORBIDDEN,
        "title.forbidden",
        &text,
    )
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

/// A method the route does not take: a problem document under `/api/`, a page elsewhere.
pub async fn method_not_allowed(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/api/") {
        return ApiError::MethodNotAllowed.into_response();
    }
    message(
        &state,
        &headers,
        None,
        StatusCode::METHOD_NOT_ALLOWED,
        "title.error",
        "",
    )
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../../templates/alveole.css"),
    )
}
