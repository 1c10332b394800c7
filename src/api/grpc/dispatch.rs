//! The gRPC adapter's side of the Job service: which call a method is, and the answer forms it
//! gets back. Everything behind [`call`] is the shared service ([`crate::api::service::JobService`]).

use serde_json::Value;

use crate::api::error::ServiceError;
use crate::api::service::Answered;
use crate::api::service::JobService;
use crate::auth::UserInfo;

/// The four calls of `spaceone.api.cost_analysis.v1.Job`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    List,
    Stat,
    Cancel,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::List => "list",
            Method::Stat => "stat",
            Method::Cancel => "cancel",
        }
    }
}

/// An answer as the service gives it: a JSON value (JobInfo), or the JobsInfo of a list and the
/// Struct of a stat built on the query pool, with their share of the bytes-in-flight budget.
pub enum Answer {
    Json(Value),
    Jobs(Answered<super::convert::JobsProto>),
    Struct(Answered<super::convert::StructProto>),
}

/// Calls `method` for `caller` with `request`, the JSON request exactly as the REST adapter
/// passes it (proto3 JSON: default values left out).
pub async fn call(
    service: &JobService,
    caller: &UserInfo,
    method: Method,
    request: Value,
) -> Result<Answer, ServiceError> {
    Ok(match method {
        Method::Get => Answer::Json(service.get(caller, request).await?),
        Method::List => Answer::Jobs(service.list(caller, request).await?),
        Method::Stat => Answer::Struct(
            service
                .stat(caller, request, super::convert::StructProto::of)
                .await?,
        ),
        Method::Cancel => Answer::Json(service.cancel(caller, request).await?),
    })
}
