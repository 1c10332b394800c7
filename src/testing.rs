//! Builders of the operator's objects for unit tests, integration tests and benches, and the one
//! realistic job generator. Compiled for the crate's own tests and with the `testing` feature
//! (which the crate's dev-dependency on itself turns on for tests and benches), never into the
//! released binary.
//!
//! ```ignore
//! let job = JobBuilder::new("job-1").namespace("ns").tasks(["t1", "t2"]).timeout(600).build();
//! let task = TaskBuilder::new("job-1", "t1").of(&job).state(TaskState::Success).build();
//! let spec = SpecBuilder::new().domain("d1").build();
//! ```
//!
//! Defaults are the ones most tests share: domain `domain-1`, data source `ds-1`, nothing else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::ObjectMeta;
use serde_json::{Map, Value, json};

use crate::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, CostAnalysisJobStatus, CostAnalysisJobTask,
    CostAnalysisJobTaskSpec, CostAnalysisJobTaskStatus, JobStatus, TaskState, TaskTemplate,
    task_object_name,
};

/// A task template with only its id.
pub fn template(id: &str) -> TaskTemplate {
    TaskTemplate {
        id: id.into(),
        options: None,
        template: None,
        backoff_limit: None,
    }
}

/// A job's spec.
#[derive(Clone, Debug)]
pub struct SpecBuilder(CostAnalysisJobSpec);

impl Default for SpecBuilder {
    fn default() -> Self {
        SpecBuilder::new()
    }
}

impl SpecBuilder {
    pub fn new() -> SpecBuilder {
        SpecBuilder(CostAnalysisJobSpec {
            domain_id: "domain-1".into(),
            data_source_id: "ds-1".into(),
            options: None,
            tasks: Vec::new(),
            timeout_seconds: None,
            cancel: false,
            ttl_seconds_after_finished: None,
            last_changed_at: None,
        })
    }

    pub fn domain(mut self, domain_id: impl Into<String>) -> Self {
        self.0.domain_id = domain_id.into();
        self
    }

    pub fn data_source(mut self, data_source_id: impl Into<String>) -> Self {
        self.0.data_source_id = data_source_id.into();
        self
    }

    pub fn options(mut self, options: Map<String, Value>) -> Self {
        self.0.options = Some(options);
        self
    }

    /// Tasks with these ids and nothing else.
    pub fn tasks<S: AsRef<str>>(self, ids: impl IntoIterator<Item = S>) -> Self {
        self.templates(ids.into_iter().map(|id| template(id.as_ref())).collect())
    }

    pub fn templates(mut self, templates: Vec<TaskTemplate>) -> Self {
        self.0.tasks = templates;
        self
    }

    pub fn timeout(mut self, seconds: i64) -> Self {
        self.0.timeout_seconds = Some(seconds);
        self
    }

    pub fn build(self) -> CostAnalysisJobSpec {
        self.0
    }
}

/// A `CostAnalysisJob` object: its spec (the [`SpecBuilder`]'s setters), metadata and status.
#[derive(Clone, Debug)]
pub struct JobBuilder {
    meta: ObjectMeta,
    spec: SpecBuilder,
    status: Option<CostAnalysisJobStatus>,
}

impl JobBuilder {
    pub fn new(name: impl Into<String>) -> JobBuilder {
        JobBuilder {
            meta: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: SpecBuilder::new(),
            status: None,
        }
    }

    pub fn domain(mut self, domain_id: impl Into<String>) -> Self {
        self.spec = self.spec.domain(domain_id);
        self
    }

    pub fn data_source(mut self, data_source_id: impl Into<String>) -> Self {
        self.spec = self.spec.data_source(data_source_id);
        self
    }

    pub fn options(mut self, options: Map<String, Value>) -> Self {
        self.spec = self.spec.options(options);
        self
    }

    pub fn tasks<S: AsRef<str>>(mut self, ids: impl IntoIterator<Item = S>) -> Self {
        self.spec = self.spec.tasks(ids);
        self
    }

    pub fn templates(mut self, templates: Vec<TaskTemplate>) -> Self {
        self.spec = self.spec.templates(templates);
        self
    }

    pub fn timeout(mut self, seconds: i64) -> Self {
        self.spec = self.spec.timeout(seconds);
        self
    }

    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.meta.namespace = Some(namespace.into());
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.meta.uid = Some(uid.into());
        self
    }

    pub fn resource_version(mut self, rv: impl Into<String>) -> Self {
        self.meta.resource_version = Some(rv.into());
        self
    }

    pub fn generation(mut self, generation: i64) -> Self {
        self.meta.generation = Some(generation);
        self
    }

    /// The object's `creationTimestamp`.
    pub fn created(mut self, at: DateTime<Utc>) -> Self {
        self.meta.creation_timestamp = k8s_time(at);
        self
    }

    pub fn status(mut self, status: CostAnalysisJobStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// A status with this state and nothing else.
    pub fn state(self, state: JobStatus) -> Self {
        self.status(CostAnalysisJobStatus {
            status: Some(state),
            ..CostAnalysisJobStatus::default()
        })
    }

    pub fn build(self) -> CostAnalysisJob {
        let name = self.meta.name.clone().unwrap_or_default();
        let mut job = CostAnalysisJob::new(&name, self.spec.build());
        job.metadata = self.meta;
        job.status = self.status;
        job
    }
}

/// A `CostAnalysisJobTask` object, named as the controller names it (`<job>.<task id>`).
#[derive(Clone, Debug)]
pub struct TaskBuilder {
    meta: ObjectMeta,
    spec: CostAnalysisJobTaskSpec,
    status: Option<CostAnalysisJobTaskStatus>,
}

impl TaskBuilder {
    pub fn new(job_name: &str, task_id: &str) -> TaskBuilder {
        TaskBuilder {
            meta: ObjectMeta {
                name: Some(task_object_name(job_name, task_id)),
                ..ObjectMeta::default()
            },
            spec: CostAnalysisJobTaskSpec {
                job_name: job_name.into(),
                task_id: task_id.into(),
                domain_id: "domain-1".into(),
                data_source_id: "ds-1".into(),
                options: None,
                created_at: None,
            },
            status: None,
        }
    }

    /// The domain and data source of `job`, as the controller copies them.
    pub fn of(mut self, job: &CostAnalysisJob) -> Self {
        self.spec.domain_id.clone_from(&job.spec.domain_id);
        self.spec
            .data_source_id
            .clone_from(&job.spec.data_source_id);
        self
    }

    pub fn domain(mut self, domain_id: impl Into<String>) -> Self {
        self.spec.domain_id = domain_id.into();
        self
    }

    pub fn data_source(mut self, data_source_id: impl Into<String>) -> Self {
        self.spec.data_source_id = data_source_id.into();
        self
    }

    pub fn options(mut self, options: Map<String, Value>) -> Self {
        self.spec.options = Some(options);
        self
    }

    /// The spec's `createdAt`.
    pub fn created_at(mut self, at: DateTime<Utc>) -> Self {
        self.spec.created_at = Some(at);
        self
    }

    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.meta.namespace = Some(namespace.into());
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// One more owner reference (the controller's is the job's).
    pub fn owner(mut self, owner: OwnerReference) -> Self {
        self.meta
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner);
        self
    }

    pub fn status(mut self, status: CostAnalysisJobTaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// A status with this state and nothing else.
    pub fn state(self, state: TaskState) -> Self {
        self.status(CostAnalysisJobTaskStatus {
            status: Some(state),
            ..CostAnalysisJobTaskStatus::default()
        })
    }

    pub fn build(self) -> CostAnalysisJobTask {
        let name = self.meta.name.clone().unwrap_or_default();
        let mut task = CostAnalysisJobTask::new(&name, self.spec);
        task.metadata = self.meta;
        task.status = self.status;
        task
    }
}

/// Realistic SpaceONE job options, about 1.5 KB of JSON: plugin settings, eight accounts with
/// tags, filters and a note; `i` varies the values, not the shape.
pub fn realistic_options(i: usize) -> Map<String, Value> {
    let accounts: Vec<Value> = (0..8usize)
        .map(|k| {
            let id = i
                .wrapping_mul(7919)
                .wrapping_add(k.wrapping_mul(104_729))
                .checked_rem(1_000_000_000_000)
                .unwrap_or_default();
            json!({"account_id": format!("{id:012}"), "name": format!("account-{k}"),
                   "tags": {"env": "prod", "team": format!("team-{k}")}})
        })
        .collect();
    let options = json!({
        "sync_mode": "MANUAL", "start": "2024-01", "end": "2024-12",
        "plugin_version": format!("1.2.{}", i.checked_rem(50).unwrap_or_default()),
        "secret_id": format!("secret-{i:08x}"),
        "provider": "aws", "region_codes": ["us-east-1", "eu-west-1", "ap-northeast-2"],
        "accounts": accounts,
        "filters": {"services": ["AmazonEC2", "AmazonS3", "AWSLambda", "AmazonRDS"],
                    "exclude_zero": true, "currency": "USD"},
        "note": "synchronised by the cost-analysis scheduler for the monthly report ".repeat(3),
    });
    match options {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `i`-th realistic job: `job-<i in hex>` in one of 20 namespaces, 50 domains and 10 data
/// sources, with [`realistic_options`] and a one-hour timeout; no tasks.
pub fn realistic_job(i: usize) -> JobBuilder {
    let of = |n: usize| i.checked_rem(n).unwrap_or_default();
    JobBuilder::new(format!("job-{i:08x}"))
        .namespace(format!("team-{}", of(20)))
        .domain(format!("domain-{}", of(50)))
        .data_source(format!("ds-{}", of(10)))
        .options(realistic_options(i))
        .timeout(3600)
}

fn k8s_time(at: DateTime<Utc>) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(at.timestamp_nanos_opt()?))
        .ok()
        .map(Time)
}
