//! The kinds of the aggregated API ([`super::aggregated`]): how a `Job` and a `JobTask` look as
//! Kubernetes objects (metadata, and the SpaceONE Info exactly as the REST API renders it), their
//! Table columns for kubectl's server-side printing, and the names each kind goes by.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spaceone_query::{Job, JobTask};

use super::objects::{Object, Served};
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

pub const GV: &str = "query.cost-analysis.spaceone.dev/v1";

/// A resource of the aggregated API, as its objects are shown.
pub trait Kind: Served {
    /// The object's kind (`Job`); its list is `<KIND>List`.
    const KIND: &'static str;
    /// The kind of the create-only statistics object (`JobStat`).
    const STAT_KIND: &'static str;
    /// The field holding the SpaceONE Info (`job` holds JobInfo).
    const INFO: &'static str;
    /// The custom resource to watch instead (this API has no watch).
    const CRD: &'static str;
    /// Table columns after Name, and before Age: (name, type, description).
    const COLUMNS: &'static [(&'static str, &'static str, &'static str)];
    /// The cells of [`Self::COLUMNS`] for one record.
    fn cells(record: &Self::Record) -> Vec<Value>;
    fn info(record: &Self::Record) -> Value;
    fn created(record: &Self::Record) -> Option<DateTime<Utc>>;
}

impl Kind for CostAnalysisJob {
    const KIND: &'static str = "Job";
    const STAT_KIND: &'static str = "JobStat";
    const INFO: &'static str = "job";
    const CRD: &'static str = "costanalysisjobs.cost-analysis.spaceone.dev";
    const COLUMNS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("Status", "string", "SpaceONE job status"),
        ("Progress", "string", "Finished tasks / total tasks"),
        ("Data Source", "string", ""),
        ("Domain", "string", ""),
    ];

    fn cells(job: &Job) -> Vec<Value> {
        let (total, remained) = (job.total_tasks, job.remained_tasks);
        vec![
            json!(job.status.as_str()),
            json!(format!("{}/{}", total.saturating_sub(remained), total)),
            json!(job.data_source_id),
            json!(job.domain_id),
        ]
    }

    fn info(job: &Job) -> Value {
        spaceone_query::calls::info(job)
    }

    fn created(job: &Job) -> Option<DateTime<Utc>> {
        job.created_at
    }
}

impl Kind for CostAnalysisJobTask {
    const KIND: &'static str = "JobTask";
    const STAT_KIND: &'static str = "JobTaskStat";
    const INFO: &'static str = "jobTask";
    const CRD: &'static str = "costanalysisjobtasks.cost-analysis.spaceone.dev";
    const COLUMNS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("Job", "string", "SpaceONE job_id"),
        ("Status", "string", "SpaceONE job task status"),
        ("Created", "integer", "Cost rows created"),
        ("Error", "string", "SpaceONE error_code"),
    ];

    fn cells(task: &JobTask) -> Vec<Value> {
        vec![
            json!(task.job_id),
            json!(task.status.as_str()),
            json!(task.created_count),
            json!(task.error_code.as_deref().unwrap_or("")),
        ]
    }

    fn info(task: &JobTask) -> Value {
        spaceone_query::calls::info(task)
    }

    fn created(task: &JobTask) -> Option<DateTime<Utc>> {
        task.created_at
    }
}

/// One record as a Kubernetes object; `W::INFO` holds the SpaceONE Info exactly as the REST API
/// renders it.
pub fn to_object<W: Kind>(object: &Object<W::Record>) -> Value {
    let (namespace, name) = super::objects::Keyed::key(&object.record);
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(namespace));
    if let Some(created) = W::created(&object.record) {
        meta.insert(
            "creationTimestamp".into(),
            json!(created.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
    }
    if let Some(l) = &object.labels {
        meta.insert("labels".into(), json!(l));
    }
    let mut o = serde_json::Map::new();
    o.insert("apiVersion".into(), json!(GV));
    o.insert("kind".into(), json!(W::KIND));
    o.insert("metadata".into(), Value::Object(meta));
    o.insert(W::INFO.into(), W::info(&object.record));
    Value::Object(o)
}

/// kubectl's server-side printing of `objects`: Name, the kind's columns (the CRD's printer
/// columns), Age.
pub fn table<W: Kind>(objects: &[Object<W::Record>], meta: Value) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let (_, name) = super::objects::Keyed::key(&o.record);
            let object = to_object::<W>(o);
            let age = W::created(&o.record)
                .map(|t| human_duration(now.signed_duration_since(t)))
                .unwrap_or_else(|| "<unknown>".into());
            let mut cells = vec![json!(name)];
            cells.extend(W::cells(&o.record));
            cells.push(json!(age));
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object.get("metadata")},
            })
        })
        .collect();
    let col = |name: &str, ty: &str, format: &str, description: &str| json!({"name": name, "type": ty, "format": format, "description": description, "priority": 0});
    let mut columns = vec![col("Name", "string", "name", "The object's name")];
    columns.extend(W::COLUMNS.iter().map(|(n, t, d)| col(n, t, "", d)));
    columns.push(col("Age", "string", "", ""));
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Kubernetes' short human durations (`45s`, `12m`, `5h`, `3d`, `2y`).
pub fn human_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        172_800..63_072_000 => format!("{}d", s / 86_400),
        _ => format!("{}y", s / 31_536_000),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]
    use super::*;

    #[test]
    fn human_durations_match_kubectl() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600)), "3h");
        assert_eq!(human_duration(d(5 * 86400)), "5d");
        assert_eq!(human_duration(d(-5)), "0s");
    }

    fn task() -> JobTask {
        JobTask {
            namespace: "ns".into(),
            job_task_id: "job-a1.t".into(),
            status: spaceone_query::JobTaskStatus::Failure,
            options: serde_json::Map::new(),
            created_count: 7,
            error_code: Some("ERROR_PLUGIN".into()),
            error_message: Some("timed out".into()),
            job_id: "job-a1".into(),
            data_source_id: "ds-1".into(),
            domain_id: "d1".into(),
            created_at: Some(Utc::now() - chrono::Duration::seconds(30)),
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn a_task_object_holds_its_jobtaskinfo_and_its_table_row_the_task_columns() {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(
            "cost-analysis.spaceone.dev/job".to_string(),
            "job-a1".into(),
        );
        let o = Object {
            record: task(),
            labels: Some(labels),
        };
        let v = to_object::<CostAnalysisJobTask>(&o);
        assert_eq!(v["kind"], "JobTask");
        assert_eq!(v["metadata"]["name"], "job-a1.t");
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert_eq!(
            v["metadata"]["labels"]["cost-analysis.spaceone.dev/job"],
            "job-a1"
        );
        assert_eq!(v["jobTask"], spaceone_query::calls::info(&o.record));
        assert_eq!(v["jobTask"]["error_code"], "ERROR_PLUGIN");
        let t = table::<CostAnalysisJobTask>(&[o], json!({}));
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["Name", "Job", "Status", "Created", "Error", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["job-a1.t", "job-a1", "FAILURE", 7, "ERROR_PLUGIN", "30s"])
        );
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "job-a1.t");
    }
}
