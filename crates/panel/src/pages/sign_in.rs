//! Signing in (the bootstrap token, the co-op's identity provider, a break-glass link) and
//! out, and the language.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{error_page, message, render};
use crate::AppState;
use crate::api::{audit_context, request_id};
use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::i18n::{LANG_COOKIE, LANGUAGES, negotiate};

/// Sends a browser back to a page of the panel only: `next` is a local path or nothing.
fn local_path(next: Option<&String>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.clone()
        }
        _ => "/".to_owned(),
    }
}

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
    match oidc.start(state.store(), state.service().now()).await {
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
    let request_id = request_id(&headers).to_owned();
    let now = state.service().now();
    let signed_in = match oidc
        .finish(
            state.store(),
            &request_id,
            query.get("code").map(String::as_str),
            query.get("state").map(String::as_str),
            now,
        )
        .await
    {
        Ok(signed_in) => signed_in,
        Err(error) => return oidc_failed(&state, &headers, &error),
    };
    // The ID token is kept sealed, for the hint at sign-out; without a key, no hint.
    let sealed_id_token = match state.config().secrets.seal(&signed_in.id_token) {
        Ok(sealed) => Some(sealed),
        Err(error) => {
            tracing::warn!(%error, "the ID token cannot be sealed: sign-out will send no hint");
            None
        }
    };
    let provider = alveole_store::ProviderSession {
        issuer: signed_in.issuer,
        subject: signed_in.subject,
        sid: signed_in.sid,
        sealed_id_token,
    };
    let member = signed_in.member;
    let ctx = alveole_store::AuditContext::new(format!("member:{member}"), request_id);
    match auth::open_member_session(state.store(), &ctx, member, now, Some(provider)).await {
        Ok(cookie) => (
            [(header::SET_COOKIE, session_cookie(&state, &cookie))],
            Redirect::to("/"),
        )
            .into_response(),
        Err(error) => error_page(&state, &headers, None, error.into()),
    }
}

/// The identity provider ends the sessions of an account or of one of its sessions
/// (OpenID Connect Back-Channel Logout 1.0): 200 once they are ended, 400 with the reason
/// for a token that does not check out.
pub async fn oidc_back_channel_logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let no_store = || [(header::CACHE_CONTROL, "no-store")];
    let Some(oidc) = state.config().oidc.clone() else {
        return (StatusCode::NOT_FOUND, no_store()).into_response();
    };
    let refused = |description: String| {
        (
            StatusCode::BAD_REQUEST,
            no_store(),
            axum::Json(serde_json::json!({
                "error": "invalid_request", "error_description": description,
            })),
        )
            .into_response()
    };
    let Some(token) = form.get("logout_token") else {
        return refused("no logout_token in the form".into());
    };
    match oidc
        .back_channel_logout(
            state.store(),
            request_id(&headers),
            token,
            state.service().now(),
        )
        .await
    {
        Ok(_) => (StatusCode::OK, no_store()).into_response(),
        Err(error) => {
            tracing::warn!(%error, "a back-channel logout was refused");
            refused(error.to_string())
        }
    }
}

fn oidc_failed(state: &AppState, headers: &HeaderMap, error: &crate::oidc::OidcError) -> Response {
    use crate::oidc::OidcError;
    let status = match error {
        OidcError::Incomplete | OidcError::UnknownLogin => StatusCode::BAD_REQUEST,
        OidcError::Rejected(_) => StatusCode::UNAUTHORIZED,
        OidcError::NoMember | OidcError::Disabled | OidcError::MissingClaim(_) => {
            StatusCode::FORBIDDEN
        }
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
    match auth::open_session(state.store(), &ctx, &caller.actor, state.service().now()).await {
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
    let ctx = alveole_store::AuditContext::new(auth::BREAK_GLASS_ACTOR, request_id(&headers));
    let lifetime = match state
        .store()
        .use_break_glass(&ctx, &auth::hash_token(token), state.service().now())
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
    let now = state.service().now();
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
) -> Response {
    let mut provider = None;
    if let Some(cookie) = auth::cookie(&headers, auth::session_cookie_name(state.config())) {
        let ctx = audit_context(&caller, &headers);
        match auth::close_session(state.store(), state.config(), &ctx, cookie).await {
            Ok(kept) => provider = kept,
            Err(error) => return error_page(&state, &headers, Some(&caller), error.into()),
        }
    }
    let expired = format!("{}; Max-Age=0", session_cookie(&state, ""));
    // A member signed in at the provider leaves its session too, where it offers that.
    let leave = match (&state.config().oidc, provider) {
        (Some(oidc), Some(provider)) => {
            let id_token = provider
                .sealed_id_token
                .and_then(|sealed| state.config().secrets.open(&sealed).ok());
            oidc.logout_url(id_token.as_deref()).await
        }
        _ => None,
    };
    let Some(leave) = leave else {
        return ([(header::SET_COOKIE, expired)], Redirect::to("/login")).into_response();
    };
    // The sign-out form may only lead back to the panel (`form-action 'self'`): the page
    // that answers it sends the browser on to the provider, as a navigation of its own.
    let mut context = tera::Context::new();
    context.insert("leave", &leave);
    let mut response = render(&state, &headers, None, "signed_out.html", context);
    if let Ok(expired) = header::HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, expired);
    }
    response
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
