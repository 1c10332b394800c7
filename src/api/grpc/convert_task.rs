//! The JobTask service's messages (`spaceone.api.cost_analysis.v1.JobTask`): what its requests
//! carry ([`RequestMessage`]: [`super::convert::request`] maps them as it maps Job's), and (the former answer route, the reference [`super::wire`]'s bytes are compared with)
//! its JSON answers back to protobuf messages. JobTaskInfo's status enum numbers are not Job's (PENDING = 1 ... CANCELED = 6): enums go by
//! name.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::convert::{RequestMessage, put_status, put_str, statistics_query, to_struct};
use super::pb::job as job_pb;
use job_pb::job_task_info::Status as InfoStatus;

impl RequestMessage for job_pb::GetJobTaskRequest {
    fn fields(&self, m: &mut Map<String, Value>) {
        put_str(m, "job_task_id", &self.job_task_id);
    }
    fn only(&self) -> &[String] {
        &self.only
    }
    fn domain(&self) -> &str {
        &self.domain_id
    }
}

impl RequestMessage for job_pb::JobTaskQuery {
    fn query(&self) -> Option<Value> {
        self.query.as_ref().map(super::convert::query)
    }
    fn fields(&self, m: &mut Map<String, Value>) {
        use job_pb::job_task_query::Status;
        put_str(m, "job_task_id", &self.job_task_id);
        let name = Status::try_from(self.status).ok().map(|s| s.as_str_name());
        put_status(m, self.status, name);
        put_str(m, "job_id", &self.job_id);
        put_str(m, "data_source_id", &self.data_source_id);
    }
    fn domain(&self) -> &str {
        &self.domain_id
    }
}

impl RequestMessage for job_pb::JobTaskStatQuery {
    fn query(&self) -> Option<Value> {
        self.query.as_ref().map(statistics_query)
    }
    fn fields(&self, _: &mut Map<String, Value>) {}
    fn domain(&self) -> &str {
        &self.domain_id
    }
}

/// JobTaskInfo as the engine writes it (proto3 JSON: absent fields are defaults; `options` is
/// absent only in a minimal Info).
#[derive(Deserialize, Default)]
#[serde(default)]
struct JobTaskInfoJson {
    job_task_id: String,
    status: String,
    options: Option<Map<String, Value>>,
    error_code: String,
    error_message: String,
    job_id: String,
    data_source_id: String,
    domain_id: String,
    created_at: String,
    started_at: String,
    finished_at: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JobTasksInfoText {
    results: Vec<JobTaskInfoJson>,
    total_count: Option<f64>,
}

/// A status by name (0, SCOPE_NONE, for a name the message does not have).
fn status(name: &str) -> i32 {
    InfoStatus::from_str_name(name).map_or(0, |s| s as i32)
}

fn job_task_info_of(i: JobTaskInfoJson) -> job_pb::JobTaskInfo {
    job_pb::JobTaskInfo {
        job_task_id: i.job_task_id,
        status: status(&i.status),
        options: i.options.map(to_struct),
        error_code: i.error_code,
        error_message: i.error_message,
        job_id: i.job_id,
        data_source_id: i.data_source_id,
        domain_id: i.domain_id,
        created_at: i.created_at,
        started_at: i.started_at,
        finished_at: i.finished_at,
    }
}

/// A JobTaskInfo answer; `None` if it is not one (a bug behind the boundary, answered as
/// INTERNAL).
pub fn job_task_info(v: Value) -> Option<job_pb::JobTaskInfo> {
    serde_json::from_value(v).ok().map(job_task_info_of)
}

/// A JobTasksInfo answer from JSON text.
pub fn job_tasks_info(text: &[u8]) -> Option<job_pb::JobTasksInfo> {
    let tasks: JobTasksInfoText = serde_json::from_slice(text).ok()?;
    #[allow(clippy::cast_possible_truncation)] // saturating float-to-int cast
    let total_count = tasks.total_count.map_or(0, |n| n as i32);
    Some(job_pb::JobTasksInfo {
        results: tasks.results.into_iter().map(job_task_info_of).collect(),
        total_count,
    })
}

#[cfg(test)]
#[path = "convert_task_tests.rs"]
mod tests;
