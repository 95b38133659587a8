//! The panel's error policy: every client error is `application/problem+json` (RFC 9457) with
//! the list of fields at fault; internal errors are logged with the request id and never shown.

use alveole_model::{FieldError, ValidationErrors};
use alveole_store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is invalid")]
    Validation(ValidationErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The route does not take this method (405).
    #[error("this method is not allowed here")]
    MethodNotAllowed,
    /// The body is larger than the listener reads (413).
    #[error("{0}")]
    TooLarge(&'static str),
    /// The body is not in a format the route reads (415).
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("{message}")]
    Conflict {
        message: String,
        errors: Vec<FieldError>,
    },
    /// The panel cannot do this as configured or right now (503).
    #[error("{0}")]
    Unavailable(&'static str),
    /// A service the panel relies on (a provider's API) refused (502).
    #[error("{0}")]
    Upstream(String),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

/// RFC 9457 problem details, with alveole's `errors` extension.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Which fields are at fault, with a stable code and an English message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(FieldError::new(field, code, message).into())
    }

    /// The field errors a form shows next to its inputs.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ApiError::Validation(errors) => errors.0.clone(),
            ApiError::Conflict { errors, .. } => errors.clone(),
            _ => vec![],
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (kind, errors) = match self {
            ApiError::Validation(errors) => ("validation", errors.0.clone()),
            ApiError::BadRequest(_) => ("bad-request", vec![]),
            ApiError::Unauthorized => ("unauthorized", vec![]),
            ApiError::Forbidden(_) => ("forbidden", vec![]),
            ApiError::NotFound(_) => ("not-found", vec![]),
            ApiError::MethodNotAllowed => ("method-not-allowed", vec![]),
            ApiError::TooLarge(_) => ("too-large", vec![]),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", vec![]),
            ApiError::Conflict { errors, .. } => ("conflict", errors.clone()),
            ApiError::Unavailable(_) => ("unavailable", vec![]),
            ApiError::Upstream(_) => ("upstream", vec![]),
            ApiError::Internal(_) => ("internal", vec![]),
        };
        let detail = match self {
            ApiError::Validation(errors) => errors.to_string(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:alveole:problem:{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { kind } => ApiError::NotFound(kind),
            StoreError::VersionMismatch { .. } => {
                let message = error.to_string();
                ApiError::Conflict {
                    errors: vec![FieldError::new("version", "version.stale", message.clone())],
                    message,
                }
            }
            StoreError::Conflict { message, errors } => ApiError::Conflict { message, errors },
            StoreError::Capacity(e) => ApiError::Conflict {
                message: e.to_string(),
                errors: vec![FieldError::new(
                    "limits",
                    "capacity.exceeded",
                    e.to_string(),
                )],
            },
            other => ApiError::Internal(other),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::Validation(errors)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(source) = &self {
            tracing::error!(error = %source, source = ?std::error::Error::source(source), "internal error");
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
