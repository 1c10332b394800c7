//! The task runner's decisions: the batch Job built from a task, what a batch Job's state means
//! for its task, and what a job's state asks of its tasks' Jobs.

#![allow(clippy::arithmetic_side_effects)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::pod_failure::failure_message;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask, JobStatus};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn template_json() -> Value {
    json!({"metadata": {"labels": {"app": "sync"}},
           "spec": {"containers": [{"name": "main", "image": "registry.example/sync:1",
                                    "env": [{"name": "SPACEONE_JOB_ID", "value": "spoofed"},
                                            {"name": "KEEP", "value": "me"}]}]}})
}

fn job(tasks: Value) -> CostAnalysisJob {
    serde_json::from_value(json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
        "metadata": {"name": "job-1", "namespace": "ns", "uid": "u-job",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"domainId": "d1", "dataSourceId": "ds1", "options": {"sync_mode": "full"},
                 "tasks": tasks, "timeoutSeconds": 600},
    }))
    .unwrap()
}

fn templated(backoff: Option<i32>) -> CostAnalysisJob {
    let mut t = json!({"id": "t1", "options": {"start": "2026-01"}, "template": template_json()});
    if let Some(b) = backoff {
        t["backoffLimit"] = json!(b);
    }
    job(json!([t]))
}

fn task(id: &str, state: Option<&str>) -> CostAnalysisJobTask {
    let mut t = json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJobTask",
        "metadata": {"name": format!("job-1.{id}"), "namespace": "ns", "uid": format!("u-{id}"),
                     "resourceVersion": "7"},
        "spec": {"jobName": "job-1", "taskId": id, "domainId": "d1", "dataSourceId": "ds1",
                 "options": {"start": "2026-01"}},
    });
    if let Some(s) = state {
        t["status"] = json!({"status": s});
    }
    serde_json::from_value(t).unwrap()
}

fn batch(owner_uid: &str, status: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "job-1.t1", "namespace": "ns", "uid": "u-batch",
                     "ownerReferences": [{"apiVersion": "cost-analysis.spaceone.dev/v1",
                        "kind": "CostAnalysisJobTask", "name": "job-1.t1", "uid": owner_uid,
                        "controller": true}]},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}},
        "status": status,
    }))
    .unwrap()
}

fn failed(reason: &str) -> Value {
    json!({"startTime": "2026-01-01T00:00:05Z", "failed": 3,
           "conditions": [{"type": "Failed", "status": "True", "reason": reason,
                           "message": "Job has reached the specified backoff limit",
                           "lastTransitionTime": "2026-01-01T00:01:00Z"}]})
}

fn env_of(b: &Job) -> Vec<(String, String)> {
    let spec = b.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn the_batch_job_is_named_after_owned_by_and_configured_from_its_task() {
    // As the controller's caches keep them: a templated job keeps its options, the task none.
    let (mut j, mut t) = (templated(None), task("t1", None));
    j.slim_for_controller();
    t.slim_for_controller();
    assert!(t.spec.options.is_none());
    let now = t0() + Duration::milliseconds(500_250);
    let timeout_at = t0() + Duration::seconds(601);
    let b = batch_job(&j, &t, &j.spec.tasks[0], timeout_at, now).unwrap();
    assert_eq!(b.metadata.name.as_deref(), Some("job-1.t1"));
    assert_eq!(b.metadata.namespace.as_deref(), Some("ns"));
    let owners = b.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str()
        ),
        ("CostAnalysisJobTask", "job-1.t1", "u-t1")
    );
    assert_eq!(owners[0].controller, Some(true));
    let labels = b.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get(MANAGED_BY_LABEL).map(String::as_str),
        Some(MANAGED_BY)
    );
    assert_eq!(labels.get(JOB_LABEL).map(String::as_str), Some("job-1"));
    let annotations = b.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.get(JOB_ANNOTATION).map(String::as_str),
        Some("job-1")
    );
    assert_eq!(
        annotations.get(TASK_ANNOTATION).map(String::as_str),
        Some("t1")
    );

    let spec = b.spec.as_ref().unwrap();
    // SpaceONE's semantics by default: one failure fails the task.
    assert_eq!(spec.backoff_limit, Some(0));
    // 100.75 s left (rounded up to 101) plus the margin.
    assert_eq!(
        spec.active_deadline_seconds,
        Some(101 + DEADLINE_MARGIN_SECONDS)
    );
    assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.containers[0].termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(pod_labels.get("app").map(String::as_str), Some("sync"));
    assert_eq!(pod_labels.get(JOB_LABEL).map(String::as_str), Some("job-1"));

    let env = env_of(&b);
    let get = |k: &str| {
        env.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    // The task's identity wins over a template's variable of the same name (no spoofing).
    assert_eq!(get(ENV_JOB_ID), vec!["job-1"]);
    assert_eq!(get("KEEP"), vec!["me"]);
    assert_eq!(get(ENV_TASK_ID), vec!["t1"]);
    assert_eq!(get(ENV_DOMAIN_ID), vec!["d1"]);
    assert_eq!(get(ENV_DATA_SOURCE_ID), vec!["ds1"]);
    assert_eq!(get(ENV_TASK_OPTIONS), vec![r#"{"start":"2026-01"}"#]);
    assert_eq!(get(ENV_JOB_OPTIONS), vec![r#"{"sync_mode":"full"}"#]);
    assert_eq!(get(ENV_TASK_NAME), vec!["job-1.t1"]);
    assert_eq!(get(ENV_NAMESPACE), vec!["ns"]);
}

#[test]
fn backoff_limit_and_deadline_come_from_the_task_and_the_job() {
    let j = templated(Some(2));
    let t = task("t1", None);
    let b = batch_job(
        &j,
        &t,
        &j.spec.tasks[0],
        t0() + Duration::seconds(600),
        t0(),
    )
    .unwrap();
    let spec = b.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(
        spec.active_deadline_seconds,
        Some(600 + DEADLINE_MARGIN_SECONDS)
    );
    // Past the deadline already (a late controller): only the margin.
    let b = batch_job(&j, &t, &j.spec.tasks[0], t0(), t0() + Duration::seconds(5)).unwrap();
    assert_eq!(
        b.spec.unwrap().active_deadline_seconds,
        Some(DEADLINE_MARGIN_SECONDS)
    );
}

#[test]
fn a_restart_policy_of_the_template_is_kept_unless_jobs_cannot_have_it() {
    let mut tpl = template_json();
    tpl["spec"]["restartPolicy"] = json!("OnFailure");
    let j = job(json!([{"id": "t1", "template": tpl}]));
    let b = batch_job(&j, &task("t1", None), &j.spec.tasks[0], t0(), t0()).unwrap();
    let pod = b.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("OnFailure"));
    tpl["spec"]["restartPolicy"] = json!("Always");
    let j = job(json!([{"id": "t1", "template": tpl}]));
    let b = batch_job(&j, &task("t1", None), &j.spec.tasks[0], t0(), t0()).unwrap();
    let pod = b.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
}

#[test]
fn long_task_names_give_short_stable_distinct_job_names() {
    assert_eq!(batch_job_name("job-1.t1"), "job-1.t1");
    let long_a = format!("{}.t1", "a".repeat(100));
    let long_b = format!("{}.t2", "a".repeat(100));
    let (a, b) = (batch_job_name(&long_a), batch_job_name(&long_b));
    assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
    assert_ne!(a, b);
    assert_eq!(a, batch_job_name(&long_a));
    // The prefix never ends in a separator before the hash.
    let dotted = format!("{}.{}", "b".repeat(45), "c".repeat(30));
    let name = batch_job_name(&dotted);
    assert!(name.starts_with(&format!("{}-", "b".repeat(45))), "{name}");
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    );
}

#[test]
fn the_batch_jobs_status_says_what_the_task_is() {
    assert_eq!(batch_state(&batch("u-t1", json!({}))), BatchState::Waiting);
    let started = Some(t0() + Duration::seconds(5));
    assert_eq!(
        batch_state(&batch(
            "u-t1",
            json!({"active": 1, "startTime": "2026-01-01T00:00:05Z"})
        )),
        BatchState::Running { started }
    );
    assert_eq!(
        batch_state(&batch(
            "u-t1",
            json!({"startTime": "2026-01-01T00:00:05Z",
            "completionTime": "2026-01-01T00:00:09Z", "succeeded": 1,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                           {"type": "Complete", "status": "True"}]})
        )),
        BatchState::Complete {
            started,
            finished: Some(t0() + Duration::seconds(9))
        }
    );
    assert_eq!(
        batch_state(&batch("u-t1", failed("BackoffLimitExceeded"))),
        BatchState::Failed {
            started,
            finished: Some(t0() + Duration::seconds(60)),
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        }
    );
    assert_eq!(
        batch_state(&batch("u-t1", failed("DeadlineExceeded"))),
        BatchState::DeadlineExceeded {
            started,
            finished: Some(t0() + Duration::seconds(60))
        }
    );
    // FailureTarget alone is not yet the end (pods are still terminating).
    assert_eq!(
        batch_state(&batch(
            "u-t1",
            json!({"active": 1, "conditions": [
            {"type": "FailureTarget", "status": "True"}]})
        )),
        BatchState::Running { started: None }
    );
}

fn run<'a>(
    j: &'a CostAnalysisJob,
    t: Option<&'a CostAnalysisJobTask>,
    b: Option<&'a Job>,
) -> TaskRun<'a> {
    TaskRun {
        template: &j.spec.tasks[0],
        task: t,
        batch: b,
        create_pending: false,
    }
}

fn plan_one(state: JobStatus, task_state: Option<&str>, b: Option<Job>) -> Vec<Step> {
    let j = templated(None);
    let t = task("t1", task_state);
    plan(
        &j,
        state,
        &[run(&j, Some(&t), b.as_ref())],
        t0() + Duration::seconds(600),
        t0(),
    )
}

fn reported(steps: &[Step]) -> Vec<(Report, Option<String>)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Report {
                report,
                explain_from,
                task_name,
                resource_version,
                ..
            } => {
                assert_eq!(task_name, "job-1.t1");
                assert_eq!(resource_version.as_deref(), Some("7"));
                Some((report.clone(), explain_from.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn an_unfinished_task_of_a_running_job_gets_its_batch_job_once() {
    let steps = plan_one(JobStatus::InProgress, None, None);
    assert!(matches!(&steps[..], [Step::Create { task_id, batch }]
        if task_id == "t1" && batch.metadata.name.as_deref() == Some("job-1.t1")));
    // Created a moment ago, not in the cache yet: not again.
    let j = templated(None);
    let t = task("t1", None);
    let mut r = run(&j, Some(&t), None);
    r.create_pending = true;
    assert!(plan(&j, JobStatus::InProgress, &[r], t0(), t0()).is_empty());
    // Not before the task object exists (its uid owns the batch Job).
    assert!(
        plan(
            &j,
            JobStatus::InProgress,
            &[run(&j, None, None)],
            t0(),
            t0()
        )
        .is_empty()
    );
    // A task without a template waits for an external worker.
    let plain = job(json!([{"id": "t1"}]));
    assert!(
        plan(
            &plain,
            JobStatus::InProgress,
            &[run(&plain, Some(&t), None)],
            t0(),
            t0()
        )
        .is_empty()
    );
    // A job already finished starts nothing.
    for state in [
        JobStatus::Canceled,
        JobStatus::Timeout,
        JobStatus::Failure,
        JobStatus::Success,
    ] {
        assert!(plan_one(state, None, None).is_empty(), "{state:?}");
    }
}

#[test]
fn the_task_follows_its_batch_job() {
    let running = json!({"active": 1, "startTime": "2026-01-01T00:00:05Z"});
    let started = Some(t0() + Duration::seconds(5));
    assert!(plan_one(JobStatus::InProgress, None, Some(batch("u-t1", json!({})))).is_empty());
    assert_eq!(
        reported(&plan_one(
            JobStatus::InProgress,
            None,
            Some(batch("u-t1", running.clone()))
        )),
        vec![(
            Report::Started {
                at: t0() + Duration::seconds(5)
            },
            None
        )]
    );
    // Reported once: an IN_PROGRESS task is not rewritten while the pod runs.
    assert!(
        plan_one(
            JobStatus::InProgress,
            Some("IN_PROGRESS"),
            Some(batch("u-t1", running))
        )
        .is_empty()
    );
    let complete = json!({"startTime": "2026-01-01T00:00:05Z", "completionTime": "2026-01-01T00:00:09Z",
                          "conditions": [{"type": "Complete", "status": "True"}]});
    assert_eq!(
        reported(&plan_one(
            JobStatus::InProgress,
            Some("IN_PROGRESS"),
            Some(batch("u-t1", complete.clone()))
        )),
        vec![(
            Report::Succeeded {
                started,
                at: t0() + Duration::seconds(9)
            },
            None
        )]
    );
    assert_eq!(
        reported(&plan_one(
            JobStatus::InProgress,
            Some("IN_PROGRESS"),
            Some(batch("u-t1", failed("BackoffLimitExceeded")))
        )),
        vec![(
            Report::Failed {
                started,
                at: t0() + Duration::seconds(60),
                code: ERROR_TASK_POD,
                message: "BackoffLimitExceeded: Job has reached the specified backoff limit".into(),
            },
            Some("u-batch".into())
        )]
    );
    // Its own deadline (the job's TIMEOUT should have come first): CANCELED, never FAILURE.
    let r = reported(&plan_one(
        JobStatus::InProgress,
        Some("IN_PROGRESS"),
        Some(batch("u-t1", failed("DeadlineExceeded"))),
    ));
    assert!(matches!(&r[..], [(Report::Canceled { .. }, None)]), "{r:?}");
    // A task the container reported finished itself is left as it is.
    assert!(
        plan_one(
            JobStatus::InProgress,
            Some("SUCCESS"),
            Some(batch("u-t1", complete))
        )
        .is_empty()
    );
}

#[test]
fn a_job_left_by_an_earlier_task_of_the_same_name_is_not_this_tasks() {
    let other = batch("u-earlier", json!({"active": 1}));
    assert!(plan_one(JobStatus::InProgress, None, Some(other.clone())).is_empty());
    assert!(plan_one(JobStatus::Canceled, None, Some(other)).is_empty());
}

#[test]
fn nothing_keeps_running_after_the_job_or_the_task_stopped() {
    let running = || Some(batch("u-t1", json!({"active": 1})));
    let delete = |steps: Vec<Step>| matches!(&steps[..], [Step::Delete { task_id, name }] if task_id == "t1" && name == "job-1.t1");
    for state in [JobStatus::Canceled, JobStatus::Timeout, JobStatus::Failure] {
        // The lifecycle has just marked the task CANCELED, or will: either way the Job goes.
        assert!(
            delete(plan_one(state, Some("IN_PROGRESS"), running())),
            "{state:?}"
        );
        assert!(
            delete(plan_one(state, Some("CANCELED"), running())),
            "{state:?}"
        );
        assert!(
            delete(plan_one(state, None, Some(batch("u-t1", json!({}))))),
            "{state:?}"
        );
        // Finished Jobs and Jobs already going are left alone.
        assert!(
            plan_one(
                state,
                Some("FAILURE"),
                Some(batch("u-t1", failed("BackoffLimitExceeded")))
            )
            .is_empty()
        );
        let mut going = batch("u-t1", json!({"active": 1}));
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1).unwrap(),
            ));
        assert!(plan_one(state, Some("CANCELED"), Some(going)).is_empty());
    }
    // A running job whose task someone failed or canceled: its Job goes too.
    assert!(delete(plan_one(
        JobStatus::InProgress,
        Some("FAILURE"),
        running()
    )));
    assert!(delete(plan_one(
        JobStatus::InProgress,
        Some("CANCELED"),
        running()
    )));
    // A task that reported SUCCESS itself may finish on its own.
    assert!(plan_one(JobStatus::InProgress, Some("SUCCESS"), running()).is_empty());
    assert!(plan_one(JobStatus::Success, Some("SUCCESS"), running()).is_empty());
}

#[test]
fn a_template_that_is_no_pod_template_fails_its_task() {
    let j = job(json!([{"id": "t1", "template": {"spec": {"containers": "not a list"}}}]));
    let t = task("t1", None);
    let steps = plan(
        &j,
        JobStatus::InProgress,
        &[run(&j, Some(&t), None)],
        t0(),
        t0(),
    );
    let r = reported(&steps);
    assert!(
        matches!(&r[..], [(Report::Failed { code, message, .. }, None)]
            if *code == ERROR_TASK_TEMPLATE && message.contains("spec.tasks[t1].template")),
        "{r:?}"
    );
}

fn pod(name: &str, created: &str, terminated: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "main", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": terminated}}]},
    }))
    .unwrap()
}

#[test]
fn the_failure_message_is_the_last_pods_termination_message() {
    let pods = vec![
        pod(
            "p-new",
            "2026-01-01T00:00:30Z",
            json!({"exitCode": 1, "reason": "Error", "message": "sync failed: quota\n"}),
        ),
        pod(
            "p-old",
            "2026-01-01T00:00:05Z",
            json!({"exitCode": 1, "reason": "Error", "message": "first try"}),
        ),
    ];
    assert_eq!(
        failure_message(&pods, "fallback"),
        "pod p-new: sync failed: quota (exit code 1)"
    );
    let no_message = vec![pod(
        "p",
        "2026-01-01T00:00:05Z",
        json!({"exitCode": 137, "reason": "OOMKilled"}),
    )];
    assert_eq!(
        failure_message(&no_message, "fallback"),
        "pod p: OOMKilled (exit code 137)"
    );
    assert_eq!(
        failure_message(&[], "BackoffLimitExceeded"),
        "BackoffLimitExceeded"
    );
    let huge = vec![pod(
        "p",
        "2026-01-01T00:00:05Z",
        json!({"exitCode": 1, "message": "é".repeat(4000)}),
    )];
    let m = failure_message(&huge, "");
    assert!(m.len() <= MESSAGE_LIMIT && m.ends_with('…'), "{}", m.len());
}

#[test]
fn reports_write_only_the_runners_fields_conditionally() {
    let started = Some(t0());
    let at = t0() + Duration::seconds(3);
    assert_eq!(
        Report::Started { at: t0() }.status_patch(Some("7")),
        json!({"metadata": {"resourceVersion": "7"},
               "status": {"status": "IN_PROGRESS", "startedAt": "2026-01-01T00:00:00.000Z"}})
    );
    assert_eq!(
        Report::Succeeded { started: None, at }.status_patch(Some("7")),
        json!({"metadata": {"resourceVersion": "7"},
               "status": {"status": "SUCCESS", "finishedAt": "2026-01-01T00:00:03.000Z"}})
    );
    assert_eq!(
        Report::Failed {
            started,
            at,
            code: ERROR_TASK_POD,
            message: "boom".into()
        }
        .status_patch(Some("7")),
        json!({"metadata": {"resourceVersion": "7"},
               "status": {"status": "FAILURE", "startedAt": "2026-01-01T00:00:00.000Z",
                          "finishedAt": "2026-01-01T00:00:03.000Z", "errorCode": "ERROR_TASK_POD",
                          "errorMessage": "boom"}})
    );
}

#[test]
fn the_runner_runs_only_where_enabled() {
    let off = RunnerConfig::default();
    assert!(!off.runs_in("ns"));
    let all = RunnerConfig {
        enabled: true,
        namespaces: vec![],
    };
    assert!(all.runs_in("ns"));
    let some = RunnerConfig {
        enabled: true,
        namespaces: vec!["a".into(), "b".into()],
    };
    assert!(some.runs_in("b") && !some.runs_in("ns"));
}
