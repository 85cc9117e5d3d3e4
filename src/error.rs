//! The one error type of the HTTP API.
//!
//! Every error answers `{"error": {"code": "snake_case_code", "message": "…"}}` with a fitting
//! status. Internal errors are logged here and answered with a generic message: their text may
//! name tables, hosts or other internals that a caller has no business seeing.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer (SPEC §3).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code to branch on and a message for a person.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// snake_case, e.g. `bad_request`, `not_found`, `graph_rejected`.
    #[schema(example = "not_found")]
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    /// An error body with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// An error answered to an HTTP caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a field is invalid.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no or a wrong bearer key.
    #[error("missing or invalid API key")]
    Unauthorized,
    /// 403: the request may not be served as sent (e.g. a non-loopback `Host` without a key).
    #[error("{0}")]
    Forbidden(String),
    /// 404: the named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 408: the request took longer than the route allows (body upload included).
    #[error("the request took too long")]
    Timeout,
    /// 409: the request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the route accepts.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// 415: the body has a content type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed, but cannot be processed (e.g. a broken document).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// 502: an upstream (Graph, token endpoint) answered with an error.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    /// 503: the service cannot take the request now; the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything else. The text is logged, never answered.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 with the code `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            code: "bad_request",
            message: message.into(),
        }
    }

    /// A 422 with the given code.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Unprocessable {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Timeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Upstream { code, .. } => (StatusCode::BAD_GATEWAY, code),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        (status, Json(ErrorBody::new(code, message))).into_response()
    }
}

/// The result of an HTTP handler.
pub type ApiResult<T> = Result<T, ApiError>;
