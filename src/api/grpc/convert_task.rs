//! The JobTask service's messages (`spaceone.api.cost_analysis.v1.JobTask`): its requests to the
//! JSON request shape the JobTask calls take (`MessageToDict`, as [`super::convert`] does for
//! Job), and its answers back to protobuf. A list's JobTasksInfo is built from the engine's rows
//! (the task table's Info field numbers say where each value goes), without JSON in between.
//! JobTaskInfo's status enum numbers are not Job's (PENDING = 1 ... CANCELED = 6): enums go by
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

/// One JobTaskInfo from the engine's row: each value goes to the field its Info number names.
fn info_of_row(row: &spaceone_query::calls::InfoRow<'_>) -> job_pb::JobTaskInfo {
    use spaceone_query::calls::{InfoValue, info_time};
    let mut info = job_pb::JobTaskInfo::default();
    for (field, value) in row.values() {
        let Some(number) = field.def().info else {
            continue;
        };
        match (number, value) {
            (1, InfoValue::Str(s)) => s.clone_into(&mut info.job_task_id),
            (2, InfoValue::Enum(s)) => info.status = status(s),
            (3, InfoValue::Struct(text)) => {
                info.options = text.map(|t| match serde_json::from_str(t) {
                    Ok(Value::Object(m)) => to_struct(m),
                    _ => prost_types::Struct::default(),
                });
            }
            (4, InfoValue::Str(s)) => s.clone_into(&mut info.error_code),
            (5, InfoValue::Str(s)) => s.clone_into(&mut info.error_message),
            (11, InfoValue::Str(s)) => s.clone_into(&mut info.job_id),
            (12, InfoValue::Str(s)) => s.clone_into(&mut info.data_source_id),
            (13, InfoValue::Str(s)) => s.clone_into(&mut info.domain_id),
            (21, InfoValue::Time(t)) => info.created_at = t.map(info_time).unwrap_or_default(),
            (22, InfoValue::Time(t)) => info.started_at = t.map(info_time).unwrap_or_default(),
            (23, InfoValue::Time(t)) => info.finished_at = t.map(info_time).unwrap_or_default(),
            // A field JobTaskInfo does not carry (or a value of another kind: a table bug the
            // unit tests catch) is left at its default.
            _ => {}
        }
    }
    info
}

/// A JobTask list's answer as JobTasksInfo, built from the engine's rows.
pub struct JobTasksProto(pub job_pb::JobTasksInfo);

impl spaceone_query::calls::AnswerForm for JobTasksProto {
    /// Not used for lists (the engine calls [`Self::from_jobs`]); kept exact all the same.
    fn from_serialize(s: &impl serde::Serialize) -> Self {
        JobTasksProto(
            serde_json::to_vec(s)
                .ok()
                .and_then(|t| job_tasks_info(&t))
                .unwrap_or_default(),
        )
    }

    fn from_jobs(rows: &spaceone_query::calls::JobsInfo<'_>) -> Self {
        JobTasksProto(job_pb::JobTasksInfo {
            results: rows.rows().map(|row| info_of_row(&row)).collect(),
            total_count: i32::try_from(rows.total()).unwrap_or(i32::MAX),
        })
    }
}

impl crate::api::service::WireSize for JobTasksProto {
    fn wire_size(&self) -> usize {
        prost::Message::encoded_len(&self.0)
    }
}

#[cfg(test)]
#[path = "convert_task_tests.rs"]
mod tests;
