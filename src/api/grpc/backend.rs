//! The gRPC adapter's side of the Job service: which call a method is, and the answer forms it
//! gets back. Everything behind [`call`] is the shared service ([`crate::api::JobService`]).

use serde_json::Value;

use crate::api::JobService;
use crate::api::error::ServiceError;
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

/// An answer as the service gives it: a JSON value (JobInfo, Struct), or the JobsInfo of a list
/// built straight from the index.
pub enum Answer {
    Json(Value),
    Jobs(super::pb::job::JobsInfo),
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
        Method::List => Answer::Jobs(
            service
                .list::<super::convert::JobsProto>(caller, request)
                .await?
                .0,
        ),
        Method::Stat => Answer::Json(service.stat(caller, request).await?),
        Method::Cancel => Answer::Json(service.cancel(caller, request).await?),
    })
}
