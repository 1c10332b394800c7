//! The one error type of the Job service ([`ServiceError`]) and the SpaceONE form every SpaceONE
//! protocol derives its wire error from. Each adapter maps it once: the REST adapter to SpaceONE's
//! JSON body, the aggregated API to a Kubernetes `Status`, gRPC to a `tonic::Status`.

use serde_json::json;
use spaceone_query::{Error as SpaceOneError, GrpcCode};

use crate::auth::AuthError;

/// Why a call of the Job service failed, whatever the protocol that carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceError {
    /// SpaceONE's own error: from the query engine or from a rule of the service
    /// (`ERROR_JOB_STATE`, `ERROR_INVALID_PARAMETER`, ...), with its code, message and gRPC class.
    SpaceOne(SpaceOneError),
    /// No identity, or one the cluster does not vouch for.
    Unauthenticated(String),
    /// The caller may not do what it asked.
    Forbidden(Denied),
    /// A Kubernetes object that does not exist (the aggregated API addresses objects by name).
    NotFound {
        resource: &'static str,
        name: String,
    },
    /// A request body larger than `limit` bytes.
    TooLarge { limit: usize },
    /// The server cannot take the call now: overload, a deadline, an authenticator that does not
    /// answer. Retrying later is right.
    Unavailable(String),
    /// A failure of the server itself (a contained panic, an unexpected Kubernetes error).
    Internal(String),
}

/// What a caller was refused, in the terms of the surface it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    pub user: String,
    pub verb: String,
    /// `domains` on the SpaceONE surfaces; `jobs` or `jobstats` on the Kubernetes one.
    pub resource: String,
    pub namespace: Option<String>,
}

impl ServiceError {
    pub fn invalid_parameter(key: &str, reason: &str) -> Self {
        Self::SpaceOne(SpaceOneError::invalid_parameter(key, reason))
    }

    /// SpaceONE's answer to a cancel of a job that is no longer in progress.
    pub fn job_state(state: &str) -> Self {
        Self::SpaceOne(SpaceOneError {
            code: "ERROR_JOB_STATE",
            message: format!("Only running jobs can be canceled. (job_state = {state})"),
            grpc: GrpcCode::Internal,
        })
    }

    /// The error as a SpaceONE server sends it: code, message, gRPC class.
    pub fn spaceone(&self) -> SpaceOneError {
        let (code, grpc, message) = match self {
            Self::SpaceOne(e) => return e.clone(),
            Self::Unauthenticated(m) => (
                "ERROR_AUTHENTICATE_FAILURE",
                GrpcCode::Unauthenticated,
                format!("Authenticate failure. (message = {m})"),
            ),
            Self::Forbidden(_) => (
                "ERROR_PERMISSION_DENIED",
                GrpcCode::PermissionDenied,
                "Permission denied.".to_string(),
            ),
            Self::NotFound { resource, name } => (
                "ERROR_NOT_FOUND",
                GrpcCode::NotFound,
                format!("Value not found. ({resource} = {name})"),
            ),
            Self::TooLarge { limit } => (
                "ERROR_INVALID_PARAMETER",
                GrpcCode::InvalidArgument,
                format!("Parameter is invalid. (key = body, reason = larger than {limit} bytes)"),
            ),
            // SpaceONE core spells this code so.
            Self::Unavailable(reason) => (
                "ERROR_UNAVAILAVBLE",
                GrpcCode::Unavailable,
                format!("Server is unavailable. (reason = {reason})"),
            ),
            Self::Internal(m) => ("ERROR_UNKNOWN", GrpcCode::Internal, m.clone()),
        };
        SpaceOneError {
            code,
            message,
            grpc,
        }
    }
}

impl From<SpaceOneError> for ServiceError {
    fn from(e: SpaceOneError) -> Self {
        Self::SpaceOne(e)
    }
}

impl From<AuthError> for ServiceError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => Self::Unauthenticated(m),
            AuthError::Forbidden(m) => Self::Forbidden(Denied {
                user: String::new(),
                verb: String::new(),
                resource: m,
                namespace: None,
            }),
            AuthError::Unavailable(m) => {
                Self::Unavailable(format!("authentication is unavailable: {m}"))
            }
        }
    }
}

impl From<super::pool::PoolError> for ServiceError {
    fn from(e: super::pool::PoolError) -> Self {
        match e {
            super::pool::PoolError::Busy => {
                Self::Unavailable("too many queries at once; try again".into())
            }
            super::pool::PoolError::Panicked => Self::Internal("internal error".into()),
        }
    }
}

/// A Kubernetes `metav1.Status` failure body, the error shape kubectl understands.
pub fn kubernetes_status(code: u16, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_a_spaceone_form() {
        let cases = [
            (
                ServiceError::Unauthenticated("no token".into()),
                "ERROR_AUTHENTICATE_FAILURE",
                GrpcCode::Unauthenticated,
            ),
            (
                ServiceError::Unavailable("busy".into()),
                "ERROR_UNAVAILAVBLE",
                GrpcCode::Unavailable,
            ),
            (
                ServiceError::Internal("x".into()),
                "ERROR_UNKNOWN",
                GrpcCode::Internal,
            ),
            (
                ServiceError::job_state("SUCCESS"),
                "ERROR_JOB_STATE",
                GrpcCode::Internal,
            ),
            (
                ServiceError::TooLarge { limit: 1 },
                "ERROR_INVALID_PARAMETER",
                GrpcCode::InvalidArgument,
            ),
        ];
        for (e, code, grpc) in cases {
            let s = e.spaceone();
            assert_eq!((s.code, s.grpc), (code, grpc), "{e:?}");
        }
        assert_eq!(
            ServiceError::Unavailable("busy".into()).spaceone().message,
            "Server is unavailable. (reason = busy)"
        );
    }
}
