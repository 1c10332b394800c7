//! The gRPC adapter's side of the Job and JobTask services: which call a method is, and the
//! answer forms it gets back. Everything behind [`call`] is the shared service
//! ([`crate::api::service::JobService`]).

use serde_json::Value;

use crate::api::error::ServiceError;
use crate::api::service::Answered;
use crate::api::service::JobService;
use crate::auth::UserInfo;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

use super::wire::Proto;

/// The four calls of `spaceone.api.cost_analysis.v1.Job` and the three of `...v1.JobTask`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    List,
    Stat,
    Cancel,
    TaskGet,
    TaskList,
    TaskStat,
}

impl Method {
    /// The method's name in its service (the last part of the gRPC path).
    pub fn name(self) -> &'static str {
        match self {
            Method::Get | Method::TaskGet => "get",
            Method::List | Method::TaskList => "list",
            Method::Stat | Method::TaskStat => "stat",
            Method::Cancel => "cancel",
        }
    }

    /// The fully qualified name of the method's service.
    pub fn service(self) -> &'static str {
        match self {
            Method::Get | Method::List | Method::Stat | Method::Cancel => super::status::SERVICE,
            Method::TaskGet | Method::TaskList | Method::TaskStat => super::status::TASK_SERVICE,
        }
    }

    /// The `method` label of the request metrics, the same as REST's (`get`, `jobtask.list`).
    pub fn label(self) -> &'static str {
        match self {
            Method::TaskGet => "jobtask.get",
            Method::TaskList => "jobtask.list",
            Method::TaskStat => "jobtask.stat",
            job => job.name(),
        }
    }
}

/// An answer as protobuf bytes written from the engine's fields ([`Proto`]): an Info (get,
/// cancel), or a list's or stat's, built on the query pool with its share of the bytes-in-flight
/// budget.
pub enum Answer {
    Info(Proto),
    Budgeted(Answered<Proto>),
}

/// Calls `method` for `caller` with `request`, the JSON request exactly as the REST adapter
/// passes it (proto3 JSON: default values left out).
pub async fn call(
    service: &JobService,
    caller: &UserInfo,
    method: Method,
    request: Value,
) -> Result<Answer, ServiceError> {
    type Job = CostAnalysisJob;
    type Task = CostAnalysisJobTask;
    let s = service;
    Ok(match method {
        Method::Get => Answer::Info(s.get_of::<Job, _>(caller, request).await?),
        Method::List => Answer::Budgeted(s.list_of::<Job, _>(caller, request).await?),
        Method::Stat => {
            Answer::Budgeted(s.stat_of::<Job, _, _>(caller, request, stat_struct).await?)
        }
        Method::Cancel => Answer::Info(s.cancel(caller, request).await?),
        Method::TaskGet => Answer::Info(s.get_of::<Task, _>(caller, request).await?),
        Method::TaskList => Answer::Budgeted(s.list_of::<Task, _>(caller, request).await?),
        Method::TaskStat => Answer::Budgeted(
            s.stat_of::<Task, _, _>(caller, request, stat_struct)
                .await?,
        ),
    })
}

/// A stat's answer (always an object) as `google.protobuf.Struct`.
fn stat_struct(answer: Value) -> Result<Proto, ServiceError> {
    match answer {
        Value::Object(m) => Ok(Proto::of_struct(&m)),
        _ => Err(ServiceError::Internal("could not encode the Struct".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each method's gRPC path and its metrics label, the same label as REST's route.
    #[test]
    fn methods_name_their_service_and_rest_label() {
        let cases = [
            (
                Method::Get,
                "spaceone.api.cost_analysis.v1.Job",
                "get",
                "get",
            ),
            (
                Method::Cancel,
                "spaceone.api.cost_analysis.v1.Job",
                "cancel",
                "cancel",
            ),
            (
                Method::TaskGet,
                "spaceone.api.cost_analysis.v1.JobTask",
                "get",
                "jobtask.get",
            ),
            (
                Method::TaskList,
                "spaceone.api.cost_analysis.v1.JobTask",
                "list",
                "jobtask.list",
            ),
            (
                Method::TaskStat,
                "spaceone.api.cost_analysis.v1.JobTask",
                "stat",
                "jobtask.stat",
            ),
        ];
        for (m, service, name, label) in cases {
            assert_eq!((m.service(), m.name(), m.label()), (service, name, label));
        }
        let rest = |route| crate::metrics::outcomes::http_method_label(Some(route), true).1;
        assert_eq!(
            Method::TaskList.label(),
            rest("/cost-analysis/v1/job-tasks/search")
        );
        assert_eq!(
            Method::TaskGet.label(),
            rest("/cost-analysis/v1/job-task/get")
        );
        assert_eq!(
            Method::TaskStat.label(),
            rest("/cost-analysis/v1/job-tasks/stat")
        );
    }
}
