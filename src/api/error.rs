//! Errors of the SpaceONE REST surface: SpaceONE's code and message, rendered the way SpaceONE's
//! REST gateway renders them (`{"detail": {"code", "message"}}`, the message after a space, the
//! HTTP status mapped from the gRPC status).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub status: StatusCode,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>, status: StatusCode) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    pub fn invalid_parameter(key: &str, reason: &str) -> Self {
        Self::new(
            "ERROR_INVALID_PARAMETER",
            format!("Parameter is invalid. (key = {key}, reason = {reason})"),
            StatusCode::BAD_REQUEST,
        )
    }

    pub fn job_state(state: &str) -> Self {
        Self::new(
            "ERROR_JOB_STATE",
            format!("Only running jobs can be canceled. (job_state = {state})"),
            StatusCode::INTERNAL_SERVER_ERROR,
        )
    }

    pub fn permission_denied() -> Self {
        Self::new(
            "ERROR_PERMISSION_DENIED",
            "Permission denied.",
            StatusCode::FORBIDDEN,
        )
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new("ERROR_UNKNOWN", message, StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<spaceone_query::Error> for ApiError {
    fn from(e: spaceone_query::Error) -> Self {
        let status =
            StatusCode::from_u16(e.grpc.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            code: e.code.to_string(),
            message: e.message.clone(),
            status,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => ApiError::new(
                "ERROR_AUTHENTICATE_FAILURE",
                format!("Authenticate failure. (message = {m})"),
                StatusCode::UNAUTHORIZED,
            ),
            AuthError::Forbidden(_) => ApiError::permission_denied(),
            AuthError::Unavailable(m) => ApiError::new(
                "ERROR_UNKNOWN",
                format!("authentication is unavailable: {m}"),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // SpaceONE's gateway splits "CODE: message" at the first colon and keeps the space.
        let body = json!({"detail": {"code": self.code, "message": format!(" {}", self.message)}});
        (self.status, Json(body)).into_response()
    }
}
