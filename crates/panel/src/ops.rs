//! Routes for machines: health, metrics, the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::AppState;
use crate::error::ApiResult;
use crate::metrics::PhaseLabels;

/// 200 when the database answers.
pub async fn healthz(State(state): State<AppState>) -> ApiResult<&'static str> {
    state.store().counts().await?;
    Ok("ok\n")
}

pub async fn metrics(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = state.store().counts().await?;
    for (phase, count) in counts.sites_by_phase {
        state
            .metrics()
            .sites
            .get_or_create(&PhaseLabels {
                phase: phase.as_str().to_owned(),
            })
            .set(count);
    }
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    ))
}

pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi().clone())
}
