//! The two custom resources: `CostAnalysisJob` (one SpaceONE Job) and `CostAnalysisJobTask`
//! (one of its tasks). Kubernetes field names are camelCase; the SpaceONE surfaces map them to
//! the seed's snake_case names.

// kube-derive's repeated `printcolumn(type_ = ...)` arguments look like duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use chrono::{DateTime, DurationRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::{CustomResource, KubeSchema, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const GROUP: &str = "cost-analysis.spaceone.dev";
/// Label put on every task so that `kubectl get cajt -l cost-analysis.spaceone.dev/job=NAME` works
/// for job names that fit a label value (names longer than 63 characters get no such label).
pub const JOB_LABEL: &str = "cost-analysis.spaceone.dev/job";

/// A SpaceONE cost-analysis Job: one sync run of one data source for one domain.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cost-analysis.spaceone.dev",
    version = "v1",
    kind = "CostAnalysisJob",
    namespaced,
    status = "CostAnalysisJobStatus",
    shortname = "caj",
    category = "cost-analysis",
    doc = "One SpaceONE cost-analysis Job: a sync run of one data source for one SpaceONE domain. The object name is the SpaceONE job_id.",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status", description = "SpaceONE job status"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress", description = "Finished tasks / total tasks"),
    printcolumn(name = "Data Source", type_ = "string", json_path = ".spec.dataSourceId"),
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domainId"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.domainId",
    selectable = ".spec.dataSourceId",
    selectable = ".status.status",
    validation = Rule::new("size(self.metadata.name) <= 200").message("the job name (SpaceONE job_id) must be at most 200 characters, so that task names derived from it stay valid"),
)]
#[x_kube(validation = Rule::new("has(oldSelf.tasks) == has(self.tasks)").message("tasks are immutable"))]
#[x_kube(validation = Rule::new("!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)").message("cancel cannot be withdrawn once set"))]
#[x_kube(validation = Rule::new("has(oldSelf.lastChangedAt) == has(self.lastChangedAt)").message("lastChangedAt is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct CostAnalysisJobSpec {
    /// SpaceONE domain the job belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("domainId is immutable"))]
    #[schemars(length(min = 1, max = 40))]
    pub domain_id: String,
    /// SpaceONE data source the job synchronises. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("dataSourceId is immutable"))]
    #[schemars(length(min = 1, max = 40))]
    pub data_source_id: String,
    /// Free-form job options (SpaceONE `options`, e.g. `sync_mode`, `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub options: Option<Map<String, Value>>,
    /// The job's tasks. The controller creates one CostAnalysisJobTask per entry, owned by the job,
    /// named `<job name>.<task id>`. Immutable: the set of tasks is fixed when the job is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tasks are immutable"))]
    #[schemars(length(max = 1000), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub tasks: Vec<TaskTemplate>,
    /// Seconds after creation after which a job still IN_PROGRESS becomes TIMEOUT. Defaults to the
    /// controller's `--job-timeout` (600 s, like SpaceONE's JOB_TIMEOUT). At most one year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub timeout_seconds: Option<i64>,
    /// Request to cancel the job. Only an IN_PROGRESS job can be canceled; once set it cannot be
    /// withdrawn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[x_kube(validation = Rule::new("!oldSelf || self").message("cancel cannot be withdrawn once set"))]
    pub cancel: bool,
    /// Seconds after the job finished after which the controller deletes it (and, through owner
    /// references, its tasks). Unset keeps finished jobs forever. At most ten years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 315_360_000))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// SpaceONE `last_changed_at`: the "changed since" time the job's creator (the data source
    /// plugin) hands over, e.g. the start of the period this sync covers. Data, not bookkeeping:
    /// set at creation or never, and nothing changes it afterwards (not a cancel, not a state
    /// change). Immutable.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("lastChangedAt is immutable"))]
    pub last_changed_at: Option<DateTime<Utc>>,
}

/// One task of a job, as declared in the job's spec.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskTemplate {
    /// Task id, unique within the job; the task object is named `<job name>.<id>`.
    #[schemars(
        length(min = 1, max = 52),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub id: String,
    /// Free-form task options handed to the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub options: Option<Map<String, Value>>,
    /// A pod template (a batch/v1 Job's `spec.template`). With one, and the controller's task
    /// runner enabled for the job's namespace, the controller runs the task as a batch/v1 Job and
    /// its status follows that Job's; without one, the task waits for an external worker.
    /// Checked by the API server only when the batch Job is created (see docs/design.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template")]
    pub template: Option<Map<String, Value>>,
    /// Retries of a templated task: its batch Job's `backoffLimit`. 0 (the default) keeps
    /// SpaceONE's semantics: the first failure fails the task, and with it the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: Option<i32>,
}

/// SpaceONE job status values: the query engine's type, so that a state has one name everywhere.
pub use spaceone_query::JobStatus;

/// Observed state of a job, written only by the controller (server-side apply).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostAnalysisJobStatus {
    /// SpaceONE status: IN_PROGRESS, SUCCESS, FAILURE, TIMEOUT or CANCELED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// SpaceONE error code of a failed job, e.g. ERROR_JOB_TASK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error of a failed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Number of tasks of the job.
    #[serde(default)]
    pub total_tasks: i32,
    /// Number of tasks not finished yet.
    #[serde(default)]
    pub remained_tasks: i32,
    /// Finished tasks / total tasks, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// When the job was created (the object's creation time).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub created_at: Option<DateTime<Utc>>,
    /// When the job's status or progress last changed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub updated_at: Option<DateTime<Utc>>,
    /// When the job reached a terminal state.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub finished_at: Option<DateTime<Utc>>,
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Complete, Failed, Finished (see docs/design.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// One unit of work of a job. Created by the controller; workers write its status.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cost-analysis.spaceone.dev",
    version = "v1",
    kind = "CostAnalysisJobTask",
    namespaced,
    status = "CostAnalysisJobTaskStatus",
    shortname = "cajt",
    category = "cost-analysis",
    doc = "One task of a CostAnalysisJob, like SpaceONE's JobTask. Workers report progress in its status.",
    printcolumn(name = "Job", type_ = "string", json_path = ".spec.jobName"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(
        name = "Created",
        type_ = "integer",
        json_path = ".status.createdCount",
        description = "Cost rows created"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.jobName",
    selectable = ".status.status",
    validation = Rule::new(FINISHED_TASK_KEEPS_STATUS_RULE).message(FINISHED_TASK_MESSAGE),
)]
#[serde(rename_all = "camelCase")]
pub struct CostAnalysisJobTaskSpec {
    /// Name of the owning CostAnalysisJob (its SpaceONE job_id). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("jobName is immutable"))]
    pub job_name: String,
    /// Task id within the job. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("taskId is immutable"))]
    pub task_id: String,
    /// SpaceONE domain of the job.
    pub domain_id: String,
    /// SpaceONE data source of the job.
    pub data_source_id: String,
    /// Free-form task options from the job's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub options: Option<Map<String, Value>>,
    /// When the controller created the task, to the millisecond: SpaceONE's JobTask
    /// `created_at` (the object's creationTimestamp has whole seconds). Immutable.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("createdAt is immutable"))]
    pub created_at: Option<DateTime<Utc>>,
}

/// The transition rule on a task's status: once SUCCESS, FAILURE or CANCELED, `status` stays.
pub const FINISHED_TASK_RULE: &str = "!has(oldSelf.status) || !(oldSelf.status in ['SUCCESS', 'FAILURE', 'CANCELED']) || (has(self.status) && self.status == oldSelf.status)";
/// The same for the whole status: a finished task's status cannot be removed (the rule on the
/// status object does not run when there is no new status).
pub const FINISHED_TASK_KEEPS_STATUS_RULE: &str = "has(self.status) || !has(oldSelf.status) || !has(oldSelf.status.status) || !(oldSelf.status.status in ['SUCCESS', 'FAILURE', 'CANCELED'])";
/// What the API server answers a write that breaks [`FINISHED_TASK_RULE`].
pub const FINISHED_TASK_MESSAGE: &str =
    "a finished task (SUCCESS, FAILURE or CANCELED) never changes state again";

/// SpaceONE job task status values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Pending,
    InProgress,
    Success,
    Failure,
    Canceled,
}

impl TaskState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Canceled
        )
    }
}

/// Progress of a task, written by the worker that runs it (and by the controller to cancel it).
/// A finished task (SUCCESS, FAILURE, CANCELED) never changes state again: the API server refuses
/// the write (a CEL transition rule), so a confused worker cannot reopen it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(FINISHED_TASK_RULE).message(FINISHED_TASK_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct CostAnalysisJobTaskStatus {
    /// PENDING, IN_PROGRESS, SUCCESS, FAILURE or CANCELED. Missing means PENDING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskState>,
    /// Number of cost rows the task created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_count: Option<i64>,
    /// SpaceONE error code of a failed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Human-readable error of a failed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When a worker started the task.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub started_at: Option<DateTime<Utc>>,
    /// When the task finished.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::timestamp::opt"
    )]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    pub finished_at: Option<DateTime<Utc>>,
}

impl CostAnalysisJobTask {
    /// The task object of `template` of job `job_name`, owned by the job (`owner`).
    pub fn of_job(
        job: &CostAnalysisJob,
        job_name: &str,
        template: &TaskTemplate,
        owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
        created_at: DateTime<Utc>,
    ) -> CostAnalysisJobTask {
        let mut task = CostAnalysisJobTask::new(
            &task_object_name(job_name, &template.id),
            CostAnalysisJobTaskSpec {
                job_name: job_name.to_string(),
                task_id: template.id.clone(),
                domain_id: job.spec.domain_id.clone(),
                data_source_id: job.spec.data_source_id.clone(),
                options: template.options.clone(),
                created_at: Some(
                    created_at
                        .duration_trunc(chrono::Duration::milliseconds(1))
                        .unwrap_or(created_at),
                ),
            },
        );
        task.metadata.namespace = job.namespace();
        task.metadata.owner_references = Some(vec![owner]);
        // Label values are at most 63 characters; longer job names go without the convenience label.
        if job_name.len() <= 63 {
            task.metadata.labels = Some([(JOB_LABEL.to_string(), job_name.to_string())].into());
        }
        task
    }

    pub fn state(&self) -> TaskState {
        self.status
            .as_ref()
            .and_then(|s| s.status)
            .unwrap_or(TaskState::Pending)
    }
}

/// A pod template, checked only for its shape here (the API server checks the rest when the batch
/// Job is created): the full PodTemplateSpec schema would make the CRD several hundred kilobytes.
fn pod_template(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "spec": {
                "type": "object",
                "required": ["containers"],
                "properties": {
                    "containers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                },
                "x-kubernetes-preserve-unknown-fields": true,
            },
        },
    })
}

/// Drops from an object's metadata what no decision and no answer reads, before a cache stores
/// it: the managed fields (often larger than the object) and the annotations (kubectl's
/// last-applied copy of the whole object among them). Kept out of every cache, they are the
/// bulk of a replica's memory otherwise.
pub fn slim_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = None;
}

impl CostAnalysisJob {
    /// The job as the controller's cache keeps it: its decisions read neither the labels nor
    /// `spec.options` (the shim's catalog keeps those, once). A job with a templated task keeps
    /// its options: the task runner hands them to the task's pod.
    pub fn slim_for_controller(&mut self) {
        slim_metadata(&mut self.metadata);
        self.metadata.labels = None;
        if !self.spec.tasks.iter().any(|t| t.template.is_some()) {
            self.spec.options = None;
        }
    }
}

impl CostAnalysisJobTask {
    /// The task as the controller's cache keeps it: its options are the worker's, copied from the
    /// job's spec when the task was created (the task runner reads them there), and its labels
    /// are for kubectl.
    pub fn slim_for_controller(&mut self) {
        slim_metadata(&mut self.metadata);
        self.metadata.labels = None;
        self.spec.options = None;
    }
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// The name of the task object for `task_id` of job `job_name`: `<job name>.<task id>`. Task ids
/// hold no dot (the schema says so), so the last dot splits the name back into the two and no two
/// jobs' tasks can share a name (with `-` as the separator, job `a` task `b-c` and job `a-b` task
/// `c` did).
pub fn task_object_name(job_name: &str, task_id: &str) -> String {
    format!("{job_name}.{task_id}")
}

/// The name the first releases gave task objects; still recognised (with the owner and the spec
/// checked) so that jobs created before the upgrade keep their tasks.
pub fn legacy_task_object_name(job_name: &str, task_id: &str) -> String {
    format!("{job_name}-{task_id}")
}
impl CostAnalysisJob {
    /// The SpaceONE Job this object holds: what every surface answers, the watch-fed index and
    /// the offline `query` command alike.
    pub fn spaceone_job(&self) -> spaceone_query::Job {
        let job = self;
        let status = job.status.clone().unwrap_or_default();
        let created = job
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(crate::timestamp::from_k8s);
        let declared = i64::try_from(job.spec.tasks.len()).unwrap_or(i64::MAX);
        spaceone_query::Job {
            namespace: job.namespace().unwrap_or_default(),
            job_id: job.name_any(),
            status: status.status.unwrap_or(JobStatus::InProgress),
            error_code: status.error_code,
            error_message: status.error_message,
            // Before the controller's first pass the counters come from the spec, as SpaceONE sets
            // them at creation.
            total_tasks: if job.status.is_none() {
                declared
            } else {
                i64::from(status.total_tasks)
            },
            remained_tasks: if job.status.is_none() {
                declared
            } else {
                i64::from(status.remained_tasks)
            },
            data_source_id: job.spec.data_source_id.clone(),
            domain_id: job.spec.domain_id.clone(),
            options: job.spec.options.clone().unwrap_or_default(),
            created_at: status.created_at.or(created),
            updated_at: status.updated_at.or(created),
            finished_at: status.finished_at,
            last_changed_at: job.spec.last_changed_at,
        }
    }
}

impl CostAnalysisJobTask {
    /// The SpaceONE JobTask this object holds (`job_task_id` is the object's name, `job_id` its
    /// job's): what the watch-fed index answers from, as the offline `query` command reads it.
    pub fn spaceone_task(&self) -> spaceone_query::JobTask {
        let status = self.status.clone().unwrap_or_default();
        let created = self.spec.created_at.or_else(|| {
            self.metadata
                .creation_timestamp
                .as_ref()
                .and_then(crate::timestamp::from_k8s)
        });
        spaceone_query::JobTask {
            namespace: self.namespace().unwrap_or_default(),
            job_task_id: self.name_any(),
            status: match self.state() {
                TaskState::Pending => spaceone_query::JobTaskStatus::Pending,
                TaskState::InProgress => spaceone_query::JobTaskStatus::InProgress,
                TaskState::Success => spaceone_query::JobTaskStatus::Success,
                TaskState::Failure => spaceone_query::JobTaskStatus::Failure,
                TaskState::Canceled => spaceone_query::JobTaskStatus::Canceled,
            },
            options: self.spec.options.clone().unwrap_or_default(),
            created_count: status.created_count.unwrap_or(0),
            error_code: status.error_code,
            error_message: status.error_message,
            job_id: self.spec.job_name.clone(),
            data_source_id: self.spec.data_source_id.clone(),
            domain_id: self.spec.domain_id.clone(),
            created_at: created,
            started_at: status.started_at,
            finished_at: status.finished_at,
        }
    }
}
