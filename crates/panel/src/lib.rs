//! alveole's panel: the rules (`service/`), the JSON API (`api/`) and the HTML pages
//! (`pages/`) over them, all served from one route table (`routes/`), with what every request
//! passes through (`middleware.rs`: who calls, the route's access rule, CSRF on page forms,
//! metrics) and the background tasks (`background/`).

pub mod acme;
pub mod api;
pub mod auth;
pub mod background;
pub mod certificates;
pub mod config;
pub mod error;
pub mod failover;
pub mod i18n;
pub mod inventory;
pub mod metrics;
mod middleware;
pub mod notary;
pub mod oidc;
pub mod openapi;
mod ops;
pub mod pages;
pub mod plots;
pub mod ratelimit;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod serving;
pub mod suffixes;
pub mod tls;
mod unread;

use std::sync::Arc;

use alveole_store::Store;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self as axum_middleware, Next};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub use config::{DEFAULT_MOVE_TIMING, PanelConfig};
pub use service::Service;

/// Sign-in attempts allowed per client address and minute.
pub const SIGN_IN_ATTEMPTS: u32 = 10;

/// What every handler can reach: the rules, and what the web faces need besides.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    service: Service,
    templates: tera::Tera,
    i18n: i18n::I18n,
    metrics: metrics::Metrics,
    openapi: serde_json::Value,
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
            service: Service::new(store, config),
            templates: pages::templates()?,
            i18n: i18n::I18n::load()?,
            metrics: metrics::Metrics::new(),
            sign_in_attempts: ratelimit::RateLimiter::new(
                SIGN_IN_ATTEMPTS,
                std::time::Duration::from_secs(60),
            ),
            openapi,
        })))
    }

    pub fn service(&self) -> &Service {
        &self.0.service
    }

    pub fn store(&self) -> &dyn Store {
        self.0.service.store()
    }

    pub fn config(&self) -> &PanelConfig {
        self.0.service.config()
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

    pub fn sign_in_attempts(&self) -> &ratelimit::RateLimiter {
        &self.0.sign_in_attempts
    }
}

/// The largest body an agent sends (a report of a node with thousands of sites).
const AGENT_MAX_BODY_BYTES: usize = 16 << 20;

/// The whole panel as an axum application.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes::routes() {
        let rule = middleware::Rule::of(&route);
        let mut handler = route.handler;
        if route.path.starts_with("/api/v1/agent/") {
            // A node's report lists every site it runs: larger than anything people send.
            handler = handler.layer(axum::extract::DefaultBodyLimit::max(AGENT_MAX_BODY_BYTES));
        }
        let guarded = handler.layer(axum_middleware::from_fn_with_state(
            state.clone(),
            move |state: State<AppState>, request: Request, next: Next| {
                middleware::guard(state, rule, request, next)
            },
        ));
        router = router.route(&route.path, guarded);
    }
    let request_id = HeaderName::from_static("x-request-id");
    let max_body_bytes = state.config().max_body_bytes;
    router
        .fallback(pages::not_found)
        .method_not_allowed_fallback(pages::method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum_middleware::from_fn_with_state(
            state.clone(),
            middleware::record_metrics,
        ))
        .layer(axum_middleware::from_fn(unread::close_when_unread))
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
