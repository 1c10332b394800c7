//! The JobTask service's messages (`spaceone.api.cost_analysis.v1.JobTask`): its requests to the
//! JSON request shape the JobTask calls take (`MessageToDict`, as [`super::convert`] does for
//! Job), and (the former answer route, the reference [`super::wire`]'s bytes are compared with)
//! its JSON answers back to protobuf messages. JobTaskInfo's status enum numbers are not Job's (PENDING = 1 ... CANCELED = 6): enums go by
//! name.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::convert::{put_list, put_str, statistics_query, strings, to_struct, with_domain};
use super::pb::job as job_pb;
use job_pb::job_task_info::Status as InfoStatus;

pub fn get_job_task_request(r: &job_pb::GetJobTaskRequest, meta_domain: Option<&str>) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "job_task_id", &r.job_task_id);
    put_list(&mut m, "only", strings(&r.only));
    with_domain(m, &r.domain_id, meta_domain)
}

pub fn job_task_query(r: &job_pb::JobTaskQuery, meta_domain: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(qr) = &r.query {
        m.insert("query".into(), super::convert::query(qr));
    }
    put_str(&mut m, "job_task_id", &r.job_task_id);
    match job_pb::job_task_query::Status::try_from(r.status) {
        Ok(job_pb::job_task_query::Status::ScopeNone) => {}
        Ok(s) => put_str(&mut m, "status", s.as_str_name()),
        // MessageToDict gives an unknown enum number as the number.
        Err(_) => {
            m.insert("status".into(), json!(r.status));
        }
    }
    put_str(&mut m, "job_id", &r.job_id);
    put_str(&mut m, "data_source_id", &r.data_source_id);
    with_domain(m, &r.domain_id, meta_domain)
}

pub fn job_task_stat_query(r: &job_pb::JobTaskStatQuery, meta_domain: Option<&str>) -> Value {
    let mut m = Map::new();
    if let Some(qr) = &r.query {
        m.insert("query".into(), statistics_query(qr));
    }
    with_domain(m, &r.domain_id, meta_domain)
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
