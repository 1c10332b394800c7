//! The offline `query` command: the same calls over jobs or job tasks read from a file.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::index::Index;
use crate::limits::Limits;
use crate::model::{Job, JobStatus};
use crate::record::Scope;
use crate::schema::Resource;
use crate::task::{JobTask, JobTaskStatus};

pub use crate::streamed::{CHUNK, Chunked, Streamed, stat_in_chunks};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    List,
    Stat,
    Get,
}

fn time(v: Option<&Value>) -> Result<Option<DateTime<Utc>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| format!("invalid time {s:?}: {e}")),
        Some(other) => Err(format!("invalid time {other}")),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn status(v: Option<&Value>) -> Result<JobStatus, String> {
    match v.and_then(Value::as_str) {
        None | Some("") => Ok(JobStatus::InProgress),
        Some(s) => s.parse().map_err(|_| format!("unknown status {s:?}")),
    }
}

/// Job #`i` of a JSON array of JobInfo objects.
pub fn job_from_info(i: usize, v: &Value) -> Result<Job, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("job #{i} is not an object"))?;
    Ok(Job {
        namespace: String::new(),
        job_id: text(m.get("job_id")).ok_or_else(|| format!("job #{i} has no job_id"))?,
        status: status(m.get("status")).map_err(|e| format!("job #{i}: {e}"))?,
        error_code: text(m.get("error_code")),
        error_message: text(m.get("error_message")),
        total_tasks: int(m.get("total_tasks")),
        remained_tasks: int(m.get("remained_tasks")),
        data_source_id: text(m.get("data_source_id")).unwrap_or_default(),
        domain_id: text(m.get("domain_id")).unwrap_or_default(),
        options: m
            .get("options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        created_at: time(m.get("created_at")).map_err(|e| format!("job #{i}: {e}"))?,
        updated_at: time(m.get("updated_at")).map_err(|e| format!("job #{i}: {e}"))?,
        finished_at: time(m.get("finished_at")).map_err(|e| format!("job #{i}: {e}"))?,
        last_changed_at: time(m.get("last_changed_at")).map_err(|e| format!("job #{i}: {e}"))?,
    })
}

/// A JSON array of JobInfo objects. (A Kubernetes `List` of CostAnalysisJob objects is read by
/// the operator, which owns the one mapping from the custom resource to a Job.)
pub fn load_jobs(text: &str) -> Result<Vec<Job>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    jobs_from_info(&v)
}

/// [`load_jobs`] over parsed JSON.
pub fn jobs_from_info(v: &Value) -> Result<Vec<Job>, String> {
    match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, j)| job_from_info(i, j))
            .collect(),
        _ => Err("expected a JSON array of jobs".into()),
    }
}

/// The REST response body and the exit status (0, or 1 for a SpaceONE error).
pub fn run(
    verb: Verb,
    jobs: Vec<Job>,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> (String, i32) {
    let mut index = Index::new();
    for j in jobs {
        index.upsert(j);
    }
    run_over(verb, &index, request, now, limits)
}

/// [`run`] over records already in an index (the command fills one as it reads the file).
pub fn run_over<R: Resource>(
    verb: Verb,
    index: &Index<R>,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> (String, i32) {
    printed(answer(verb, index, request, now, limits))
}

/// The call's answer over an index, every record in scope.
pub(crate) fn answer<R: Resource>(
    verb: Verb,
    index: &Index<R>,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, crate::Error> {
    let scope = Scope::all();
    match verb {
        Verb::List => crate::calls::list(index, &scope, request, now, limits),
        Verb::Stat => crate::calls::stat(index, &scope, request, now, limits),
        Verb::Get => crate::calls::get(index, &scope, request),
    }
}

/// The REST response body of an answer or error, and the exit status (0, or 1 for an error).
pub(crate) fn printed(result: Result<Value, crate::Error>) -> (String, i32) {
    match result {
        Ok(v) => (serde_json::to_string_pretty(&v).unwrap_or_default(), 0),
        Err(e) => {
            let body = json!({"error": {"code": e.code, "message": e.message}});
            (serde_json::to_string_pretty(&body).unwrap_or_default(), 1)
        }
    }
}

/// Job tasks: the JSON array `kubectl get cajt -A -o json` prints under `items` (or that array, or
/// one object), each a `CostAnalysisJobTask`.
pub fn load_tasks(text: &str) -> Result<Vec<JobTask>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    tasks_from_objects(&v)
}

/// [`load_tasks`] over parsed JSON.
pub fn tasks_from_objects(v: &Value) -> Result<Vec<JobTask>, String> {
    match v.get("items").unwrap_or(v) {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, t)| task_from_object(i, t))
            .collect(),
        Value::Object(_) => task_from_object(0, v).map(|t| vec![t]),
        _ => Err("expected a Kubernetes list of job tasks".into()),
    }
}

/// Task #`i`: a `CostAnalysisJobTask` object. Its name is the `job_task_id`; `created_at` is the
/// spec's `createdAt` (milliseconds, written by the controller when it creates the task) when the
/// object has one, else its `creationTimestamp` (whole seconds); a task with no status yet is
/// PENDING.
pub fn task_from_object(i: usize, v: &Value) -> Result<JobTask, String> {
    let at = |e: String| format!("task #{i}: {e}");
    let meta = v.get("metadata");
    let spec = v.get("spec");
    let status = v.get("status");
    let name = text(meta.and_then(|m| m.get("name")))
        .ok_or_else(|| format!("task #{i} has no metadata.name"))?;
    let state = match status.and_then(|s| s.get("status")).and_then(Value::as_str) {
        None | Some("") => JobTaskStatus::Pending,
        Some(s) => s.parse().map_err(|_| at(format!("unknown status {s:?}")))?,
    };
    let created = match time(spec.and_then(|s| s.get("createdAt"))).map_err(at)? {
        Some(t) => Some(t),
        None => time(meta.and_then(|m| m.get("creationTimestamp"))).map_err(at)?,
    };
    Ok(JobTask {
        namespace: text(field(meta, "namespace")).unwrap_or_default(),
        job_task_id: name,
        status: state,
        options: field(spec, "options")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        created_count: int(field(status, "createdCount")),
        error_code: text(field(status, "errorCode")),
        error_message: text(field(status, "errorMessage")),
        job_id: text(field(spec, "jobName")).unwrap_or_default(),
        data_source_id: text(field(spec, "dataSourceId")).unwrap_or_default(),
        domain_id: text(field(spec, "domainId")).unwrap_or_default(),
        created_at: created,
        started_at: time(field(status, "startedAt")).map_err(at)?,
        finished_at: time(field(status, "finishedAt")).map_err(at)?,
    })
}

/// The REST response body and the exit status of a call over job tasks.
pub fn run_tasks(
    verb: Verb,
    tasks: Vec<JobTask>,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> (String, i32) {
    let mut index = Index::<JobTask>::empty();
    for t in tasks {
        index.upsert(t);
    }
    run_over(verb, &index, request, now, limits)
}

fn field<'a>(m: Option<&'a Value>, k: &str) -> Option<&'a Value> {
    m.and_then(|m| m.get(k))
}
