//! A node's page's own form: a one-time join token and the command that enrols its agent.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{error_page, message};
use crate::AppState;
use crate::api::{audit_context, parse_id};
use crate::auth::Caller;

pub async fn join_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let host = headers.get("host").and_then(|h| h.to_str().ok());
    let issued = match parse_id(&id) {
        Ok(node) => {
            let ctx = audit_context(&caller, &headers);
            state.service().issue_join_token(&ctx, node, host).await
        }
        Err(error) => Err(error),
    };
    match issued {
        Ok(token) => message(
            &state,
            &headers,
            Some(&caller),
            StatusCode::CREATED,
            "title.join_token",
            &token.command,
        ),
        Err(error) => error_page(&state, &headers, Some(&caller), error),
    }
}
