//! The errors tonic answers itself, before a Job or JobTask method runs (a message over the size limit, bytes
//! that are not the method's protobuf message, a compressed message, a method the service does not
//! have), reshaped as SpaceONE's: a SpaceONE client splits the details at the first colon and
//! shows the code, so tonic's bare text ("Error, decoded message length too large ...") would
//! reach it as an unknown error. Every status a method of ours returns already has that shape
//! ([`super::status::status_of`]) and is left alone.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tonic::{Code, Status};

use super::status::{MAX_MESSAGE, SERVICE, TASK_SERVICE, status_of};
use crate::api::error::ServiceError;

/// The SpaceONE form of a status tonic answered for a Job or JobTask request, or `None` when the status
/// already has it (or is not an error).
pub fn reshape(code: Code, message: &str) -> Option<Status> {
    if code == Code::Ok || message.starts_with("ERROR_") {
        return None;
    }
    Some(match code {
        // The only OUT_OF_RANGE tonic raises on a request is the decoding size limit.
        Code::OutOfRange => status_of(&ServiceError::TooLarge { limit: MAX_MESSAGE }),
        // A message that does not decode (tonic-prost's "failed to decode Protobuf message: ...",
        // or a stream cut inside a message) is the client's bad parameter, as an unparsable JSON
        // body is on REST.
        Code::Internal => status_of(&ServiceError::invalid_parameter(
            "body",
            &format!("not a valid protobuf message: {message}"),
        )),
        // SpaceONE core's ERROR_NOT_IMPLEMENTED (UNIMPLEMENTED, "Not implemented.").
        Code::Unimplemented => Status::new(
            Code::Unimplemented,
            "ERROR_NOT_IMPLEMENTED: Not implemented.",
        ),
        // Anything else tonic might say, kept with its code and given SpaceONE's unknown error.
        other => Status::new(other, format!("ERROR_UNKNOWN: {message}")),
    })
}

/// Middleware on the gRPC routes: for a Job or JobTask request, rewrites a trailers-only error answer (the form tonic
/// gives every error raised before the method runs) into SpaceONE's shape.
pub async fn spaceone_shaped(request: Request, next: Next) -> Response {
    let ours = ours(request.uri().path());
    let mut response = next.run(request).await;
    if ours {
        rewrite(response.headers_mut());
    }
    response
}

/// Whether `path` is a method path of the Job or JobTask service (`/<service>/<method>`).
fn ours(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, _)| service == SERVICE || service == TASK_SERVICE)
}

fn rewrite(headers: &mut HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if let Some(shaped) = reshape(status.code(), status.message()) {
        // Only SpaceONE's ASCII text goes in, which always encodes.
        let _ = shaped.add_header(headers);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn tonic_errors_get_spaceone_codes_and_messages() {
        let cases = [
            (
                Code::OutOfRange,
                "Error, decoded message length too large: found 2097165 bytes, the limit is: 1048576 bytes",
                Code::InvalidArgument,
                "ERROR_INVALID_PARAMETER: Parameter is invalid. (key = body, reason = larger than 1048576 bytes)",
            ),
            (
                Code::Internal,
                "failed to decode Protobuf message: invalid wire type",
                Code::InvalidArgument,
                "ERROR_INVALID_PARAMETER: Parameter is invalid. (key = body, reason = not a valid protobuf message: failed to decode Protobuf message: invalid wire type)",
            ),
            (
                Code::Unimplemented,
                "Content is compressed with `gzip` which isn't supported",
                Code::Unimplemented,
                "ERROR_NOT_IMPLEMENTED: Not implemented.",
            ),
            (
                Code::Unimplemented,
                "",
                Code::Unimplemented,
                "ERROR_NOT_IMPLEMENTED: Not implemented.",
            ),
            (
                Code::ResourceExhausted,
                "too much",
                Code::ResourceExhausted,
                "ERROR_UNKNOWN: too much",
            ),
        ];
        for (code, message, want_code, want) in cases {
            let s = reshape(code, message).expect(message);
            assert_eq!((s.code(), s.message()), (want_code, want), "{message}");
        }
    }

    #[test]
    fn job_and_jobtask_paths_are_ours_others_are_not() {
        for path in [
            "/spaceone.api.cost_analysis.v1.Job/list",
            "/spaceone.api.cost_analysis.v1.JobTask/get",
            "/spaceone.api.cost_analysis.v1.JobTask/nope",
        ] {
            assert!(ours(path), "{path}");
        }
        for path in [
            "/grpc.health.v1.Health/Check",
            "/spaceone.api.cost_analysis.v1.JobTaskX/get",
            "/spaceone.api.cost_analysis.v1.Jo/list",
            "/spaceone.api.cost_analysis.v1.JobTask",
            "/",
        ] {
            assert!(!ours(path), "{path}");
        }
    }

    #[test]
    fn statuses_of_the_job_methods_are_left_alone() {
        let ours = status_of(&ServiceError::job_state("CANCELED"));
        assert!(reshape(ours.code(), ours.message()).is_none());
        assert!(reshape(Code::Ok, "").is_none());
    }

    #[test]
    fn a_trailers_only_answer_is_rewritten_in_place() {
        let mut headers = HeaderMap::new();
        Status::out_of_range("Error, decoded message length too large")
            .add_header(&mut headers)
            .unwrap();
        headers.insert("content-type", "application/grpc".parse().unwrap());
        rewrite(&mut headers);
        let s = Status::from_header_map(&headers).unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().starts_with("ERROR_INVALID_PARAMETER: "),
            "{s:?}"
        );
        assert_eq!(headers["content-type"], "application/grpc");
        // No status header: nothing to do (a normal answer carries its status in trailers).
        let mut plain = HeaderMap::new();
        rewrite(&mut plain);
        assert!(plain.is_empty());
    }
}
