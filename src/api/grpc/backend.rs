//! The one boundary between the gRPC adapter and the Job calls. Everything the adapter does
//! before (decode protobuf to the REST adapter's JSON request shape, authenticate the `token`
//! metadata) and after (encode JobInfo / JobsInfo / Struct, map errors to `tonic::Status`) is
//! protocol; everything behind [`call`] is the service.
//!
//! When the shared service layer (`src/api/service.rs`, `JobService`) lands, only the body of
//! [`call`] changes: its four arms become `JobService::{get, list, stat, cancel}`.

use serde_json::Value;

use crate::api::ApiState;
use crate::api::error::ApiError;
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

/// An answer as the service gives it: a JSON value (JobInfo, Struct), or JSON text written
/// straight from the index (JobsInfo of a list, no intermediate `Value`).
pub enum Answer {
    Json(Value),
    Text(Vec<u8>),
}

/// Calls `method` for `caller` with `request`, the JSON request exactly as the REST adapter
/// passes it (proto3 JSON: default values left out). Authorization, the index, the query pool
/// and the cancel's write happen behind this line.
pub async fn call(
    state: &ApiState,
    caller: &UserInfo,
    method: Method,
    request: Value,
) -> Result<Answer, ApiError> {
    use crate::api::spaceone as rest;
    Ok(match method {
        Method::Get => Answer::Json(rest::get_job(state, caller, request).await?),
        Method::List => Answer::Text(rest::list(state, caller, request).await?.0),
        Method::Stat => Answer::Json(rest::stat(state, caller, request).await?),
        Method::Cancel => Answer::Json(rest::cancel(state, caller, request).await?),
    })
}
