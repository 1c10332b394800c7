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

    /// SpaceONE core's error for a server that cannot take the call now (gRPC UNAVAILABLE); the
    /// code is spelled as SpaceONE spells it.
    pub fn unavailable(reason: &str) -> Self {
        Self::new(
            "ERROR_UNAVAILAVBLE",
            format!("Server is unavailable. (reason = {reason})"),
            StatusCode::SERVICE_UNAVAILABLE,
        )
    }
}

impl From<super::pool::PoolError> for ApiError {
    fn from(e: super::pool::PoolError) -> Self {
        match e {
            super::pool::PoolError::Busy => {
                ApiError::unavailable("too many queries at once; try again")
            }
            super::pool::PoolError::Panicked => ApiError::unknown("internal error"),
        }
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
            AuthError::Unavailable(m) => {
                ApiError::unavailable(&format!("authentication is unavailable: {m}"))
            }
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

/// A failure caught outside any handler, before it knew its surface.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    Internal,
    TimedOut(std::time::Duration),
}

/// `failure` as the surface answers it: a Kubernetes `Status` for the aggregated API, SpaceONE's
/// error body for the REST API.
pub fn surface_error(kubernetes: bool, failure: Failure) -> Response {
    let (status, reason, message) = match failure {
        Failure::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "internal error".to_string(),
        ),
        Failure::TimedOut(d) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("the request took longer than {}s", d.as_secs()),
        ),
    };
    if kubernetes {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason,
            "code": status.as_u16(),
        });
        return (status, Json(body)).into_response();
    }
    match failure {
        Failure::Internal => ApiError::unknown(message),
        Failure::TimedOut(_) => ApiError::unavailable(&message),
    }
    .into_response()
}
