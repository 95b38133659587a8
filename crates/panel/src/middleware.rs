//! What every request passes through, so that no handler has to remember it: who calls (a
//! bearer token for the API, an agent's client certificate on the agent listener, a session
//! cookie on pages), the route's access rule from the route table, the CSRF token of every
//! state-changing page form, waking agents after a change, and metrics.

use std::time::Instant;

use alveole_model::Role;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::routes::{Access, Route, Surface};
use crate::{AppState, metrics, pages, tls};

/// The largest page form the panel reads (the CSRF check reads it before the handler).
const FORM_LIMIT: usize = 1 << 20;

/// What the middleware needs of a route.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    access: Access,
    surface: Surface,
    mutates: bool,
}

impl Rule {
    pub(crate) fn of(route: &Route) -> Self {
        Self {
            access: route.access,
            surface: route.surface,
            mutates: route.mutates,
        }
    }

    /// A form of a signed-in page that changes state: it must carry the session's CSRF token.
    fn needs_csrf(self) -> bool {
        self.surface == Surface::Page && self.mutates && self.access != Access::Public
    }
}

/// Authorizes the request by the route's rule, checks page forms' CSRF token, runs the
/// handler, and wakes the agents waiting for their state after a change (any change may
/// concern a node).
pub(crate) async fn guard(
    State(state): State<AppState>,
    rule: Rule,
    request: Request,
    next: Next,
) -> Response {
    let response = authorize(&state, rule, request, next).await;
    if rule.mutates && (response.status().is_success() || response.status().is_redirection()) {
        state.service().tell_nodes();
    }
    response
}

/// Why a caller may not use a route: the API's words, and the page's catalogue key.
struct Refusal {
    api: &'static str,
    page_key: &'static str,
}

/// The route's access rule applied to a known caller: `None` when they may go on.
fn refusal(rule: Rule, caller: &Caller) -> Option<Refusal> {
    let refuse = |api, page_key| Some(Refusal { api, page_key });
    match rule.access {
        // Agents call agent routes only, and only agents call them.
        Access::Agent if caller.node.is_none() => {
            refuse("this route is for node agents", "forbidden.admins")
        }
        Access::Read | Access::Owner | Access::OwnersData | Access::Admin | Access::SignedIn
            if caller.node.is_some() =>
        {
            refuse(
                "an agent certificate is for agent routes only",
                "forbidden.admins",
            )
        }
        // What concerns only the caller (who am I, signing out) is open to every role.
        Access::SignedIn => None,
        _ if rule.mutates && caller.read_only => {
            refuse("this token is read-only", "forbidden.auditors")
        }
        _ if rule.mutates && caller.role == Role::Auditor => {
            refuse("auditors read; they change nothing", "forbidden.auditors")
        }
        Access::Admin if caller.role != Role::Admin => refuse("admins only", "forbidden.admins"),
        Access::OwnersData if caller.role == Role::Auditor => refuse(
            "a member's data is theirs and the admins': auditors read the record",
            "forbidden.auditors",
        ),
        Access::Read if caller.role == Role::Member => {
            refuse("admins and auditors only", "forbidden.readers")
        }
        _ => None,
    }
}

/// Finds the caller and applies the route's access rule: a problem document on the API, a
/// page in the caller's language on pages.
async fn authorize(state: &AppState, rule: Rule, mut request: Request, next: Next) -> Response {
    let agent = request.extensions().get::<tls::AgentPeer>().cloned();
    let caller = match identify(state, rule, request.headers(), agent).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let caller = match (caller, rule.access) {
        (Some(caller), _) => caller,
        (None, Access::Public) => return next.run(request).await,
        (None, _) if rule.surface == Surface::Page => {
            return Redirect::to("/login").into_response();
        }
        (None, _) => return ApiError::Unauthorized.into_response(),
    };
    if let Some(refused) = refusal(rule, &caller) {
        return match rule.surface {
            Surface::Page => {
                pages::refused_page(state, request.headers(), &caller, refused.page_key)
            }
            Surface::Api | Surface::Operations => ApiError::Forbidden(refused.api).into_response(),
        };
    }
    if rule.needs_csrf() {
        request = match checked_form(state, &caller, request).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// The request again, once its form carries the caller's CSRF token; else the error page
/// (nothing ran).
async fn checked_form(
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let refused = |error: ApiError| pages::error_page(state, &parts.headers, Some(caller), error);
    let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Err(refused(ApiError::BadRequest(
                "this form is too large or was cut off".into(),
            )));
        }
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let sent = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_str());
    if !auth::csrf_ok(caller, sent) {
        return Err(refused(ApiError::BadRequest(
            "this form has expired: reload the page and send it again".into(),
        )));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Who calls: a bearer token (people and automation), else the client certificate of an agent
/// on the agent listener, else a session cookie: on pages, and on the API for reads only (a
/// change through the API needs a token, so that no other site can make a browser send one).
async fn identify(
    state: &AppState,
    rule: Rule,
    headers: &HeaderMap,
    agent: Option<tls::AgentPeer>,
) -> Result<Option<Caller>, ApiError> {
    let store = state.store();
    let session = || async {
        match auth::cookie(headers, auth::session_cookie_name(state.config())) {
            Some(cookie) => auth::caller_from_session(store, state.config(), cookie).await,
            None => Ok(None),
        }
    };
    match rule.surface {
        Surface::Api => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match (bearer, agent) {
                (Some(token), _) => {
                    Ok(
                        auth::caller_from_bearer(store, token.trim(), state.service().now())
                            .await?,
                    )
                }
                (None, Some(agent)) => Ok(auth::caller_from_agent_key(store, &agent.0).await?),
                (None, None) if !rule.mutates => Ok(session().await?),
                (None, None) => Ok(None),
            }
        }
        Surface::Page => Ok(session().await?),
        Surface::Operations => Ok(None),
    }
}

pub(crate) async fn record_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            method,
            route: route.clone(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&metrics::RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
