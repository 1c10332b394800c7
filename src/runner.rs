//! The task runner's decisions, without I/O: the batch/v1 Job a templated task runs as, what that
//! Job's state means for the task, and what a job's state asks of its tasks' Jobs (see
//! docs/design.md, "Tasks that run themselves"). `src/runner_shell.rs` applies them.
//!
//! - A task whose `spec.tasks[]` entry has a `template` runs as one batch Job named after the task
//!   object ([`batch_job_name`]), owned by it (so deleting the job deletes everything), in the
//!   job's namespace, with the task's identity and options in its environment ([`batch_job`]).
//! - Its `backoffLimit` is the task's (default 0: the first failure fails the task, SpaceONE's
//!   semantics); its `activeDeadlineSeconds` is what is left of the job's timeout plus
//!   [`DEADLINE_MARGIN_SECONDS`], so the job's own TIMEOUT decides.
//! - The task follows its Job ([`batch_state`], [`plan`]): a started pod → IN_PROGRESS; Complete →
//!   SUCCESS; Failed → FAILURE `ERROR_TASK_POD` with the last pod's termination message
//!   ([`crate::pod_failure::failure_message`]); Failed for the deadline → CANCELED. A task already finished is never
//!   rewritten (the container may report its own outcome and `createdCount`).
//! - A job that ended in any other state than SUCCESS, and a task that ended FAILURE or CANCELED,
//!   leave no Job running: those still active are deleted (propagation Background).

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde_json::{Map, Value, json};

use crate::resources::{
    CostAnalysisJob, CostAnalysisJobTask, JOB_LABEL, JobStatus, TaskState, TaskTemplate,
};

/// Error code of a task whose batch Job failed (retries exhausted).
pub const ERROR_TASK_POD: &str = "ERROR_TASK_POD";
/// Error code of a task whose template cannot be made into a batch Job.
pub const ERROR_TASK_TEMPLATE: &str = "ERROR_TASK_TEMPLATE";
/// Label on every batch Job the runner creates; its watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "cost-analysis-operator";
/// Annotations naming the job and task a batch Job runs (job names can be longer than a label).
pub const JOB_ANNOTATION: &str = "cost-analysis.spaceone.dev/job";
pub const TASK_ANNOTATION: &str = "cost-analysis.spaceone.dev/task";
/// Seconds a batch Job may run past its job's deadline, so that the job's TIMEOUT, not the batch
/// Job's deadline, ends it.
pub const DEADLINE_MARGIN_SECONDS: i64 = 30;
pub use crate::pod_failure::MESSAGE_LIMIT;

/// The environment every container of a task's pod gets.
pub const ENV_JOB_ID: &str = "SPACEONE_JOB_ID";
pub const ENV_TASK_ID: &str = "SPACEONE_JOB_TASK_ID";
pub const ENV_DOMAIN_ID: &str = "SPACEONE_DOMAIN_ID";
pub const ENV_DATA_SOURCE_ID: &str = "SPACEONE_DATA_SOURCE_ID";
pub const ENV_TASK_OPTIONS: &str = "SPACEONE_TASK_OPTIONS";
pub const ENV_JOB_OPTIONS: &str = "SPACEONE_JOB_OPTIONS";
/// The task object's name and namespace, for a container that reports `createdCount` itself.
pub const ENV_TASK_NAME: &str = "SPACEONE_TASK_NAME";
pub const ENV_NAMESPACE: &str = "SPACEONE_NAMESPACE";

/// Where the runner runs tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunnerConfig {
    pub enabled: bool,
    /// Namespaces whose templated tasks run; empty: every namespace the controller watches.
    pub namespaces: Vec<String>,
}

impl RunnerConfig {
    /// Whether templated tasks of jobs in `namespace` run as batch Jobs (elsewhere they wait for
    /// an external worker, as tasks without a template do).
    pub fn runs_in(&self, namespace: &str) -> bool {
        self.enabled
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
    }
}

/// The batch Job's name for the task object `task_object`: the same name while it fits a label
/// value (63 characters: the Job controller labels its pods with it), else a prefix and a hash of
/// the whole name. Deterministic, so a restarted controller finds the Job it created.
pub fn batch_job_name(task_object: &str) -> String {
    if task_object.len() <= 63 {
        return task_object.to_string();
    }
    let prefix: String = task_object.chars().take(46).collect();
    let prefix = prefix.trim_end_matches(['-', '.']);
    format!("{prefix}-{:016x}", fnv1a(task_object.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The batch Job that runs `task` of `job` from its template, or why there can be none (the
/// template is not a pod template). `timeout_at` is when the job times out.
pub fn batch_job(
    job: &CostAnalysisJob,
    task: &CostAnalysisJobTask,
    template: &TaskTemplate,
    timeout_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Job, String> {
    let raw = template.template.clone().unwrap_or_default();
    let mut pod: PodTemplateSpec = serde_json::from_value(Value::Object(raw)).map_err(|e| {
        format!(
            "spec.tasks[{}].template is not a pod template: {e}",
            template.id
        )
    })?;
    let Some(spec) = pod.spec.as_mut() else {
        return Err(format!("spec.tasks[{}].template has no spec", template.id));
    };
    // A batch Job's pods restart Never or OnFailure; Never keeps every failed pod to read.
    if spec.restart_policy.as_deref().is_none_or(|p| p == "Always") {
        spec.restart_policy = Some("Never".into());
    }
    let env = environment(job, task, template);
    for container in &mut spec.containers {
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.retain(|v| !env.iter().any(|e| e.name == v.name));
        vars.extend(env.iter().cloned());
        // A container that writes no termination message still says why it failed: the end of
        // its log becomes the message.
        if container.termination_message_policy.is_none() {
            container.termination_message_policy = Some("FallbackToLogsOnError".into());
        }
    }
    let job_name = task.spec.job_name.clone();
    let mut labels =
        std::collections::BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())]);
    if job_name.len() <= 63 {
        labels.insert(JOB_LABEL.to_string(), job_name.clone());
        pod.metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(JOB_LABEL.to_string(), job_name.clone());
    }
    let left = timeout_at.signed_duration_since(now).max(Duration::zero());
    // Whole seconds, rounded up, plus the margin.
    let left_seconds = left
        .num_seconds()
        .saturating_add(i64::from(left.subsec_nanos() > 0));
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(batch_job_name(&task.name_any())),
            namespace: task.namespace(),
            labels: Some(labels),
            annotations: Some(
                [
                    (JOB_ANNOTATION.to_string(), job_name),
                    (TASK_ANNOTATION.to_string(), task.spec.task_id.clone()),
                ]
                .into(),
            ),
            owner_references: Some(vec![task_owner(task)]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(template.backoff_limit.unwrap_or(0).max(0)),
            active_deadline_seconds: Some(
                left_seconds.saturating_add(DEADLINE_MARGIN_SECONDS).max(1),
            ),
            // A retry starts once the failed pod is gone: never two pods of one task at once.
            pod_replacement_policy: Some("Failed".into()),
            template: pod,
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// The task's options are read from the job's spec, where the controller copied them from into
/// the task object: the controller's cache of tasks keeps no options.
fn environment(
    job: &CostAnalysisJob,
    task: &CostAnalysisJobTask,
    template: &TaskTemplate,
) -> Vec<EnvVar> {
    let json = |o: &Option<Map<String, Value>>| {
        serde_json::to_string(&o.clone().unwrap_or_default()).unwrap_or_else(|_| "{}".into())
    };
    [
        (ENV_JOB_ID, task.spec.job_name.clone()),
        (ENV_TASK_ID, task.spec.task_id.clone()),
        (ENV_DOMAIN_ID, task.spec.domain_id.clone()),
        (ENV_DATA_SOURCE_ID, task.spec.data_source_id.clone()),
        (ENV_TASK_OPTIONS, json(&template.options)),
        (ENV_JOB_OPTIONS, json(&job.spec.options)),
        (ENV_TASK_NAME, task.name_any()),
        (ENV_NAMESPACE, task.namespace().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(name, value)| EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    })
    .collect()
}

fn task_owner(task: &CostAnalysisJobTask) -> OwnerReference {
    OwnerReference {
        api_version: "cost-analysis.spaceone.dev/v1".into(),
        kind: "CostAnalysisJobTask".into(),
        name: task.name_any(),
        uid: task.uid().unwrap_or_default(),
        controller: Some(true),
        // Needs no finalizer permission on tasks; the garbage collector deletes the Job either way.
        block_owner_deletion: None,
    }
}

/// Whether `batch` is the Job of `task` (owned by this very task object, not by an earlier task of
/// the same name that the garbage collector has not cleared yet).
pub fn belongs_to(batch: &Job, task: &CostAnalysisJobTask) -> bool {
    let uid = task.uid();
    batch
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

/// What a batch Job's status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchState {
    /// No pod started yet.
    Waiting,
    Running {
        started: Option<DateTime<Utc>>,
    },
    Complete {
        started: Option<DateTime<Utc>>,
        finished: Option<DateTime<Utc>>,
    },
    /// Failed with retries exhausted (or a pod failure policy); the Job condition's reason and
    /// message.
    Failed {
        started: Option<DateTime<Utc>>,
        finished: Option<DateTime<Utc>>,
        reason: String,
        message: String,
    },
    /// Failed because it ran past its `activeDeadlineSeconds`.
    DeadlineExceeded {
        started: Option<DateTime<Utc>>,
        finished: Option<DateTime<Utc>>,
    },
}

impl BatchState {
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            BatchState::Complete { .. }
                | BatchState::Failed { .. }
                | BatchState::DeadlineExceeded { .. }
        )
    }
}

pub fn batch_state(batch: &Job) -> BatchState {
    let status = batch.status.clone().unwrap_or_default();
    let started = status
        .start_time
        .as_ref()
        .and_then(crate::timestamp::from_k8s);
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if let Some(c) = condition("Complete") {
        let finished = status
            .completion_time
            .as_ref()
            .or(c.last_transition_time.as_ref())
            .and_then(crate::timestamp::from_k8s);
        return BatchState::Complete { started, finished };
    }
    if let Some(c) = condition("Failed") {
        let finished = c
            .last_transition_time
            .as_ref()
            .and_then(crate::timestamp::from_k8s);
        let reason = c.reason.clone().unwrap_or_default();
        if reason == "DeadlineExceeded" {
            return BatchState::DeadlineExceeded { started, finished };
        }
        return BatchState::Failed {
            started,
            finished,
            reason,
            message: c.message.clone().unwrap_or_default(),
        };
    }
    if status.active.unwrap_or(0) > 0 || status.ready.unwrap_or(0) > 0 {
        BatchState::Running { started }
    } else {
        BatchState::Waiting
    }
}

/// What the runner reports in a task's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Started {
        at: DateTime<Utc>,
    },
    Succeeded {
        started: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    Failed {
        started: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        code: &'static str,
        message: String,
    },
    Canceled {
        started: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
        message: String,
    },
}

impl Report {
    /// The merge patch of the task's status subresource, conditional on `resource_version` (a
    /// report the container or a cancel wrote first wins; the conflict brings the task back).
    /// Only the fields the runner owns: a `createdCount` the container wrote stays.
    pub fn status_patch(&self, resource_version: Option<&str>) -> Value {
        let ts = |t: &DateTime<Utc>| crate::timestamp::format(t);
        let opt = |t: &Option<DateTime<Utc>>| t.as_ref().map(ts);
        let status = match self {
            Report::Started { at } => json!({"status": "IN_PROGRESS", "startedAt": ts(at)}),
            Report::Succeeded { started, at } => {
                json!({"status": "SUCCESS", "startedAt": opt(started), "finishedAt": ts(at)})
            }
            Report::Failed {
                started,
                at,
                code,
                message,
            } => json!({"status": "FAILURE", "startedAt": opt(started), "finishedAt": ts(at),
                        "errorCode": code, "errorMessage": message}),
            Report::Canceled {
                started,
                at,
                message,
            } => json!({"status": "CANCELED", "startedAt": opt(started), "finishedAt": ts(at),
                        "errorMessage": message}),
        };
        // A start time not known is left as it is, not erased.
        let status = match status {
            Value::Object(m) => {
                Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            other => other,
        };
        json!({"metadata": {"resourceVersion": resource_version}, "status": status})
    }

    pub fn state(&self) -> TaskState {
        match self {
            Report::Started { .. } => TaskState::InProgress,
            Report::Succeeded { .. } => TaskState::Success,
            Report::Failed { .. } => TaskState::Failure,
            Report::Canceled { .. } => TaskState::Canceled,
        }
    }
}

/// One templated task as the runner sees it.
#[derive(Clone, Copy, Debug)]
pub struct TaskRun<'a> {
    pub template: &'a TaskTemplate,
    /// The task object, once the cache holds it.
    pub task: Option<&'a CostAnalysisJobTask>,
    /// The batch Job of that name, if the cache holds one.
    pub batch: Option<&'a Job>,
    /// This controller created the batch Job a moment ago and the cache does not show it yet.
    pub create_pending: bool,
}

/// One thing the runner must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Create {
        task_id: String,
        batch: Box<Job>,
    },
    Report {
        task_id: String,
        /// The task object's name and the resourceVersion the report is conditional on.
        task_name: String,
        resource_version: Option<String>,
        report: Report,
        /// The failed batch Job's uid: its pods hold the message (see [`crate::pod_failure::failure_message`]).
        explain_from: Option<String>,
    },
    Delete {
        task_id: String,
        name: String,
    },
}

/// What the runner must do for `job`, whose status the controller has just decided is `state`.
pub fn plan(
    job: &CostAnalysisJob,
    state: JobStatus,
    runs: &[TaskRun<'_>],
    timeout_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for run in runs {
        if run.template.template.is_none() {
            continue;
        }
        let Some(task) = run.task else { continue };
        let task_id = run.template.id.clone();
        let batch = run.batch.filter(|b| belongs_to(b, task));
        if run.batch.is_some() && batch.is_none() {
            // A Job left over from an earlier task of this name: wait until it is collected.
            continue;
        }
        let task_state = task.state();
        let live = batch
            .filter(|b| b.metadata.deletion_timestamp.is_none())
            .filter(|b| !batch_state(b).is_finished());
        let stop = if state == JobStatus::InProgress {
            matches!(task_state, TaskState::Failure | TaskState::Canceled)
        } else {
            task_state != TaskState::Success
        };
        if stop {
            if let Some(b) = live {
                steps.push(Step::Delete {
                    task_id,
                    name: b.name_any(),
                });
            }
            continue;
        }
        if state != JobStatus::InProgress || task_state.is_finished() {
            continue;
        }
        let report = |report: Report, explain_from: Option<String>| Step::Report {
            task_id: task_id.clone(),
            task_name: task.name_any(),
            resource_version: task.resource_version(),
            report,
            explain_from,
        };
        let Some(batch) = batch else {
            if run.create_pending {
                continue;
            }
            steps.push(match batch_job(job, task, run.template, timeout_at, now) {
                Ok(b) => Step::Create {
                    task_id: task_id.clone(),
                    batch: Box::new(b),
                },
                Err(message) => report(
                    Report::Failed {
                        started: None,
                        at: now,
                        code: ERROR_TASK_TEMPLATE,
                        message: crate::pod_failure::bounded(&message, MESSAGE_LIMIT),
                    },
                    None,
                ),
            });
            continue;
        };
        if batch.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let step = match batch_state(batch) {
            BatchState::Waiting => None,
            BatchState::Running { started } => (task_state == TaskState::Pending).then(|| {
                report(
                    Report::Started {
                        at: started.unwrap_or(now),
                    },
                    None,
                )
            }),
            BatchState::Complete { started, finished } => Some(report(
                Report::Succeeded {
                    started,
                    at: finished.unwrap_or(now),
                },
                None,
            )),
            BatchState::Failed {
                started,
                finished,
                reason,
                message,
            } => Some(report(
                Report::Failed {
                    started,
                    at: finished.unwrap_or(now),
                    code: ERROR_TASK_POD,
                    message: crate::pod_failure::bounded(
                        &job_failure(&reason, &message),
                        MESSAGE_LIMIT,
                    ),
                },
                batch.uid(),
            )),
            BatchState::DeadlineExceeded { started, finished } => Some(report(
                Report::Canceled {
                    started,
                    at: finished.unwrap_or(now),
                    message: "the task's batch Job ran past its deadline".into(),
                },
                None,
            )),
        };
        steps.extend(step);
    }
    steps
}

fn job_failure(reason: &str, message: &str) -> String {
    match (reason.is_empty(), message.is_empty()) {
        (true, true) => "the task's batch Job failed".into(),
        (false, true) => reason.into(),
        (true, false) => message.into(),
        (false, false) => format!("{reason}: {message}"),
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
