//! SpaceONE's errors on gRPC: the services' names, the largest message, and [`status_of`], the one
//! mapping of a [`ServiceError`] to a `tonic::Status`.

use tonic::Status;

use crate::api::error::ServiceError;

/// The fully qualified name of the Job service.
pub const SERVICE: &str = "spaceone.api.cost_analysis.v1.Job";

/// The fully qualified name of the JobTask service.
pub const TASK_SERVICE: &str = "spaceone.api.cost_analysis.v1.JobTask";

/// Largest request message accepted, the same as a REST body.
pub const MAX_MESSAGE: usize = crate::api::body::MAX_BODY;

/// SpaceONE's error as a gRPC status: the code of SpaceONE's table and the details
/// `"ERROR_CODE: message"` (clients split at the first colon).
pub fn status_of(e: &ServiceError) -> Status {
    use spaceone_query::GrpcCode as G;
    let s = e.spaceone();
    let code = match s.grpc {
        G::InvalidArgument => tonic::Code::InvalidArgument,
        G::NotFound => tonic::Code::NotFound,
        G::AlreadyExists => tonic::Code::AlreadyExists,
        G::PermissionDenied => tonic::Code::PermissionDenied,
        G::Unauthenticated => tonic::Code::Unauthenticated,
        G::Unavailable => tonic::Code::Unavailable,
        G::Internal => tonic::Code::Internal,
    };
    Status::new(code, format!("{}: {}", s.code, s.message))
}
