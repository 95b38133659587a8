//! alveole's panel: the JSON API, the HTML pages, OpenAPI and metrics, all served from one
//! route table (`routes.rs`). Handlers are thin: they validate with the model crate and write
//! through the store, whose every write is audited.

pub mod api;
pub mod audit;
pub mod auth;
pub mod error;
pub mod failover;
pub mod i18n;
pub mod inventory;
pub mod jobs;
pub mod metrics;
pub mod oidc;
pub mod openapi;
mod ops;
pub mod pages;
pub mod ratelimit;
pub mod routes;
pub mod site_moves;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use alveole_model::Role;
use alveole_store::Store;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::{Access, Surface};

/// Settings of the panel that do not come from the database.
#[derive(Clone, Debug)]
pub struct PanelConfig {
    /// Mark cookies `Secure` (the panel is served over HTTPS).
    pub secure_cookies: bool,
    /// A node silent for longer is shown unreachable.
    pub node_unreachable_after: std::time::Duration,
    /// How agents reach the panel (`https://panel.example.org:8443`), for join commands.
    pub agent_url: Option<String>,
    /// The CA agents pin and the issuer of their certificates, when the panel serves agents
    /// (over TLS, on a listener of its own).
    pub agent_tls: Option<tls::PanelTls>,
    /// Signs audit checkpoints; without it the panel records the chain but signs nothing.
    pub notary: Option<audit::Notary>,
    /// A session unused for this long ends (it ends 12 hours after sign-in in any case).
    pub session_idle: std::time::Duration,
    /// What "now" is for sessions and sign-in links (tests move it).
    pub clock: std::sync::Arc<dyn Clock>,
    /// The co-op's identity provider, when members sign in through one.
    pub oidc: Option<std::sync::Arc<oidc::Oidc>>,
    /// Tells providers where to deliver a failover address.
    pub provider_routing: std::sync::Arc<dyn failover::ProviderRouting>,
    /// How long a move may freeze a site, and how long its old node forwards afterwards.
    pub moves: alveole_store::MoveTiming,
    /// Whether and how this process runs durable jobs.
    pub jobs: jobs::JobsConfig,
}

/// A move's source forwards for 10 minutes (twice a 5-minute DNS TTL), and gives up a freeze
/// after 10 seconds.
pub const DEFAULT_MOVE_TIMING: alveole_store::MoveTiming = alveole_store::MoveTiming {
    forward_seconds: 600,
    freeze_deadline_ms: 10_000,
};

/// The time, behind a trait so tests can move it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
}

/// The system's clock.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// A clock that follows the system's, shifted by what `advance` added (tests).
#[derive(Debug, Default)]
pub struct ShiftedClock {
    shift: std::sync::Mutex<chrono::Duration>,
}

impl ShiftedClock {
    pub fn advance(&self, by: chrono::Duration) {
        let mut shift = self
            .shift
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *shift += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let shift = *self
            .shift
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        chrono::Utc::now() + shift
    }
}

impl Default for PanelConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            node_unreachable_after: std::time::Duration::from_secs(60),
            agent_url: None,
            agent_tls: None,
            notary: None,
            session_idle: std::time::Duration::from_secs(2 * 3600),
            clock: std::sync::Arc::new(SystemClock),
            oidc: None,
            provider_routing: std::sync::Arc::new(failover::SharedSegment),
            moves: DEFAULT_MOVE_TIMING,
            jobs: jobs::JobsConfig::default(),
        }
    }
}

/// Sign-in attempts allowed per client address and minute.
pub const SIGN_IN_ATTEMPTS: u32 = 10;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    templates: tera::Tera,
    i18n: i18n::I18n,
    metrics: metrics::Metrics,
    openapi: serde_json::Value,
    config: PanelConfig,
    /// Woken after every successful change, for agents waiting on their desired state.
    changed: tokio::sync::Notify,
    /// Sign-in attempts per client address (token login, break-glass).
    sign_in_attempts: ratelimit::RateLimiter,
}

/// Why the panel could not start.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("a template does not parse")]
    Templates(#[from] tera::Error),
    #[error("a translation catalogue does not parse")]
    Catalog(#[from] serde_json::Error),
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, config: PanelConfig) -> Result<Self, PanelError> {
        let openapi = openapi::document(&routes::routes());
        Ok(Self(Arc::new(Inner {
            store,
            templates: pages::templates()?,
            i18n: i18n::I18n::load()?,
            metrics: metrics::Metrics::new(),
            changed: tokio::sync::Notify::new(),
            sign_in_attempts: ratelimit::RateLimiter::new(
                SIGN_IN_ATTEMPTS,
                std::time::Duration::from_secs(60),
            ),
            openapi,
            config,
        })))
    }

    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    pub fn templates(&self) -> &tera::Tera {
        &self.0.templates
    }

    pub fn i18n(&self) -> &i18n::I18n {
        &self.0.i18n
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }

    pub fn openapi(&self) -> &serde_json::Value {
        &self.0.openapi
    }

    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.0.changed
    }

    pub fn config(&self) -> &PanelConfig {
        &self.0.config
    }

    pub fn sign_in_attempts(&self) -> &ratelimit::RateLimiter {
        &self.0.sign_in_attempts
    }
}

/// The whole panel as an axum application.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes::routes() {
        let (access, surface, mutates) = (route.access, route.surface, route.mutates);
        let guarded = route.handler.layer(middleware::from_fn_with_state(
            state.clone(),
            move |state: State<AppState>, request: Request, next: Next| async move {
                let changes = state.clone();
                let response = authorize(state, access, surface, mutates, request, next).await;
                // Any change may concern a node: wake the agents waiting for their state.
                if mutates && (response.status().is_success() || response.status().is_redirection())
                {
                    changes.changed().notify_waiters();
                }
                response
            },
        ));
        router = router.route(&route.path, guarded);
    }
    let request_id = HeaderName::from_static("x-request-id");
    router
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Finds the caller (bearer token for the API, session cookie for pages) and applies the
/// route's access rule.
async fn authorize(
    State(state): State<AppState>,
    access: Access,
    surface: Surface,
    mutates: bool,
    mut request: Request,
    next: Next,
) -> Response {
    let agent = request.extensions().get::<tls::AgentPeer>().cloned();
    let caller = match identify(&state, surface, request.headers(), agent).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    match (caller, access) {
        // Agents call agent routes only, and only agents call them.
        (Some(caller), Access::Agent) if caller.node.is_none() => {
            ApiError::Forbidden("this route is for node agents").into_response()
        }
        (Some(caller), Access::Read | Access::Owner | Access::Admin | Access::SignedIn)
            if caller.node.is_some() =>
        {
            ApiError::Forbidden("an agent certificate is for agent routes only").into_response()
        }
        // What concerns only the caller (who am I, signing out) is open to every role.
        (Some(caller), Access::SignedIn) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        (Some(caller), _) if mutates && caller.read_only => {
            ApiError::Forbidden("this token is read-only").into_response()
        }
        (Some(caller), _) if mutates && caller.role == Role::Auditor => {
            ApiError::Forbidden("auditors read; they change nothing").into_response()
        }
        (Some(caller), Access::Admin) if caller.role != Role::Admin => {
            ApiError::Forbidden("admins only").into_response()
        }
        (Some(caller), Access::Read) if caller.role == Role::Member => {
            ApiError::Forbidden("admins and auditors only").into_response()
        }
        (Some(caller), _) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        (None, Access::Public) => next.run(request).await,
        (None, _) if surface == Surface::Page => Redirect::to("/login").into_response(),
        (None, _) => ApiError::Unauthorized.into_response(),
    }
}

/// Who calls: a bearer token (people and automation), else the client certificate of an agent
/// on the agent listener, else a session cookie on pages.
async fn identify(
    state: &AppState,
    surface: Surface,
    headers: &axum::http::HeaderMap,
    agent: Option<tls::AgentPeer>,
) -> Result<Option<Caller>, ApiError> {
    let store = state.store();
    match surface {
        Surface::Api => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            match (bearer, agent) {
                (Some(token), _) => {
                    Ok(
                        auth::caller_from_bearer(store, token.trim(), state.config().clock.now())
                            .await?,
                    )
                }
                (None, Some(agent)) => Ok(auth::caller_from_agent_key(store, &agent.0).await?),
                (None, None) => Ok(None),
            }
        }
        Surface::Page => match auth::cookie(headers, auth::session_cookie_name(state.config())) {
            Some(cookie) => Ok(auth::caller_from_session(store, state.config(), cookie).await?),
            None => Ok(None),
        },
        Surface::Operations => Ok(None),
    }
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
