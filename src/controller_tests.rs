//! The controller's I/O shell against a scripted API server: which requests one reconcile sends,
//! in which order, with which preconditions. The decisions themselves are tested in
//! `lifecycle_tests.rs`; the whole loop against a real API server in `tests/controller*.rs`.

#![allow(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::{Context, FIELD_MANAGER, reconcile_inner};
use crate::fake_apiserver::{self, FakeApiServer, status};
use crate::lifecycle;
use crate::metrics::Metrics;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};
use crate::telemetry::Traced;

const JOBS: &str = "/apis/cost-analysis.spaceone.dev/v1/namespaces/ns/costanalysisjobs";
const TASKS: &str = "/apis/cost-analysis.spaceone.dev/v1/namespaces/ns/costanalysisjobtasks";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

fn job(extra_spec: Value, status: Value) -> CostAnalysisJob {
    let created = chrono::Utc::now() - chrono::Duration::seconds(5);
    let mut spec = json!({"domainId": "d1", "dataSourceId": "ds",
                          "tasks": [{"id": "t1"}, {"id": "t2"}], "timeoutSeconds": 600});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        s.extend(extra.clone());
    }
    let mut object = json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
        "metadata": {"name": "job-1", "namespace": "ns", "uid": "u-1", "resourceVersion": "10",
                     "generation": 1,
                     "creationTimestamp": created.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
        "spec": spec,
    });
    if !status.is_null() {
        object["status"] = status;
    }
    serde_json::from_value(object).expect("a job")
}

fn task(id: &str, state: &str) -> CostAnalysisJobTask {
    serde_json::from_value(json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJobTask",
        "metadata": {"name": format!("job-1.{id}"), "namespace": "ns", "resourceVersion": format!("2{id}"),
                     "ownerReferences": [{"apiVersion": "cost-analysis.spaceone.dev/v1",
                         "kind": "CostAnalysisJob", "name": "job-1", "uid": "u-1", "controller": true}]},
        "spec": {"jobName": "job-1", "taskId": id, "domainId": "d1", "dataSourceId": "ds"},
        "status": {"status": state},
    }))
    .expect("a task")
}

/// A context whose task cache holds `tasks` (its initial list complete) and whose client talks to
/// the returned fake.
fn context(tasks: Vec<CostAnalysisJobTask>) -> (Arc<Context>, FakeApiServer) {
    let (client, server) = fake_apiserver::client();
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for t in tasks {
        writer.apply_watcher_event(&Event::InitApply(t));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: None,
    };
    let ctx = Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        tasks: reader,
        tasks_ready: crate::caches::Ready::now(),
        config: lifecycle::Config::default(),
        metrics: Arc::new(Metrics::default()),
        backoff: Mutex::new(HashMap::new()),
        own: Mutex::new(crate::own_writes::OwnWrites::default()),
        started: crate::passes::Started::default(),
        runner: None,
    };
    (Arc::new(ctx), server)
}

/// Starts one reconcile of `job` and takes its first request, the job's status write (answered
/// with `job`). Returns the running reconcile and what was written.
async fn start(
    job: &CostAnalysisJob,
    ctx: &Arc<Context>,
    server: &mut FakeApiServer,
) -> (
    tokio::task::JoinHandle<Result<kube::runtime::controller::Action, String>>,
    fake_apiserver::Seen,
) {
    let run = tokio::spawn({
        let (job, ctx) = (job.clone(), ctx.clone());
        async move {
            reconcile_inner(&job, &ctx, &Traced::new(&job))
                .await
                .map_err(|e| e.to_string())
        }
    });
    let answer = serde_json::to_value(job).unwrap();
    let written = server
        .expect("PATCH", &format!("{JOBS}/job-1/status"), 200, answer)
        .await;
    (run, written)
}

/// What a cancel of `job-1` sends after its status write, in either order: the transition event
/// and the cancel of its unfinished task `t2`.
async fn expect_event_and_t2_canceled(server: &mut FakeApiServer) -> Vec<fake_apiserver::Seen> {
    server
        .expect_together(&[
            ("POST", EVENTS, 201, json!({})),
            (
                "PATCH",
                &format!("{TASKS}/job-1.t2/status"),
                200,
                serde_json::to_value(task("t2", "CANCELED")).unwrap(),
            ),
        ])
        .await
}

fn in_progress(total: i32, remained: i32) -> Value {
    json!({"status": "IN_PROGRESS", "totalTasks": total, "remainedTasks": remained})
}

#[tokio::test]
async fn a_cancel_writes_the_job_status_before_it_touches_a_task() {
    let job = job(json!({"cancel": true}), in_progress(2, 1));
    let (ctx, mut server) = context(vec![task("t1", "SUCCESS"), task("t2", "IN_PROGRESS")]);
    // 1. The job's status, by server-side apply, forced, conditional on the version decided from.
    let (run, written) = start(&job, &ctx, &mut server).await;
    assert!(written.path.contains("fieldManager=cost-analysis-operator"));
    assert!(written.path.contains("force=true"));
    assert_eq!(written.body["metadata"]["resourceVersion"], "10");
    assert_eq!(written.body["status"]["status"], "CANCELED");
    assert_eq!(written.body["status"]["remainedTasks"], 1);
    // 2. Only then, together, the event saying so and the unfinished task, conditional on the
    // version the decision saw.
    let together = expect_event_and_t2_canceled(&mut server).await;
    assert_eq!(together[0].body["regarding"]["name"], "job-1");
    assert_eq!(together[1].body["status"]["status"], "CANCELED");
    assert_eq!(together[1].body["metadata"]["resourceVersion"], "2t2");
    run.await.unwrap().expect("reconciled");
    server.expect_nothing_more(100).await;
    assert_eq!(ctx.metrics.task_cancels.get(), 1);
}

/// A task a worker reported FAILURE, with its error.
fn failed(id: &str, code: &str, message: &str) -> CostAnalysisJobTask {
    let mut t = task(id, "FAILURE");
    if let Some(s) = t.status.as_mut() {
        s.error_code = Some(code.into());
        s.error_message = Some(message.into());
        s.finished_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    }
    t
}

#[tokio::test]
async fn a_failed_job_names_its_failed_task_in_its_condition_and_event() {
    let job = job(json!({}), in_progress(2, 2));
    let (ctx, mut server) = context(vec![
        failed("t1", "ERROR_TOKEN", "the token expired"),
        task("t2", "IN_PROGRESS"),
    ]);
    let said = "ERROR_JOB_TASK: One or more job tasks have failed. \
                Failed task: job-1.t1 (ERROR_TOKEN: the token expired)";
    let (run, written) = start(&job, &ctx, &mut server).await;
    let status = &written.body["status"];
    assert_eq!(status["status"], "FAILURE");
    // JobInfo's own error stays SpaceONE's; the conditions say which task and why.
    assert_eq!(status["errorCode"], "ERROR_JOB_TASK");
    assert_eq!(status["errorMessage"], "One or more job tasks have failed.");
    let conditions = status["conditions"].as_array().unwrap();
    let failed_condition = conditions.iter().find(|c| c["type"] == "Failed").unwrap();
    assert_eq!(
        (&failed_condition["status"], &failed_condition["reason"]),
        (&json!("True"), &json!("Failed"))
    );
    assert_eq!(failed_condition["message"], said);
    // The Failed event says the same; the unfinished task is canceled.
    let together = expect_event_and_t2_canceled(&mut server).await;
    let event = &together[0].body;
    assert_eq!(
        (&event["type"], &event["reason"], &event["note"]),
        (&json!("Warning"), &json!("Failed"), &json!(said))
    );
    assert_eq!(event["regarding"]["name"], "job-1");
    run.await.unwrap().expect("reconciled");
    server.expect_nothing_more(100).await;
}

#[tokio::test]
async fn tasks_are_created_once_and_the_event_counts_only_those_really_created() {
    let job = job(json!({}), Value::Null);
    let (ctx, mut server) = context(vec![]);
    let (run, written) = start(&job, &ctx, &mut server).await;
    assert_eq!(written.body["status"]["totalTasks"], 2);
    assert_eq!(written.body["status"]["remainedTasks"], 2);
    // Together; the cache had not seen t2 yet: it exists already.
    let mut names = Vec::new();
    for _ in 0..2 {
        let seen = server
            .expect_with("POST", TASKS, |seen| {
                match seen.body["metadata"]["name"].as_str() {
                    Some("job-1.t1") => (201, serde_json::to_value(task("t1", "PENDING")).unwrap()),
                    _ => (409, status(409, "AlreadyExists")),
                }
            })
            .await;
        assert_eq!(seen.body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        names.push(
            seen.body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    names.sort();
    assert_eq!(names, ["job-1.t1", "job-1.t2"]);
    let mut notes = Vec::new();
    while notes.len() < 2 {
        let event = server.expect("POST", EVENTS, 201, json!({})).await;
        notes.push(event.body["note"].as_str().unwrap_or_default().to_string());
        if notes.iter().any(|n| n.starts_with("Created ")) {
            break;
        }
    }
    assert!(
        notes.iter().any(|n| n == "Created 1 of 2 tasks"),
        "{notes:?}"
    );
    run.await.unwrap().expect("reconciled");
    server.expect_nothing_more(100).await;
}

#[tokio::test]
async fn a_settled_job_costs_no_request() {
    let mut job = job(json!({}), Value::Null);
    let done = |id: &str| {
        let mut t = task(id, "SUCCESS");
        if let Some(s) = t.status.as_mut() {
            s.finished_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
        }
        t
    };
    let tasks = vec![done("t1"), done("t2")];
    // Settle the job as the controller would have: apply its decisions until there is nothing
    // left to write.
    let views: Vec<lifecycle::TaskView> = tasks
        .iter()
        .map(|t| lifecycle::TaskView::of(&t.spec.task_id, t))
        .collect();
    for _ in 0..3 {
        let view = lifecycle::JobView::of(&job).expect("created");
        let decision = lifecycle::decide(
            &view,
            &views,
            chrono::Utc::now(),
            &lifecycle::Config::default(),
        );
        if !decision.status_changed {
            break;
        }
        job.status = Some(decision.status);
    }
    assert_eq!(
        job.status.as_ref().and_then(|s| s.status),
        Some(crate::resources::JobStatus::Success)
    );
    let (ctx, mut server) = context(tasks);
    reconcile_inner(&job, &ctx, &Traced::new(&job))
        .await
        .expect("reconciled");
    server.expect_nothing_more(200).await;
    assert_eq!(ctx.metrics.status_writes.get(), 0);
}

/// The job as the API server stores it after the status write `written`: a new resourceVersion.
fn as_written(job: &CostAnalysisJob, written: &fake_apiserver::Seen) -> CostAnalysisJob {
    let mut stored = job.clone();
    stored.metadata.resource_version = Some("11".into());
    stored.status = Some(serde_json::from_value(written.body["status"].clone()).unwrap());
    stored
}

#[tokio::test]
async fn a_look_before_the_cache_shows_its_own_writes_sends_nothing() {
    let job = job(json!({"cancel": true}), in_progress(2, 1));
    let (ctx, mut server) = context(vec![task("t1", "SUCCESS"), task("t2", "IN_PROGRESS")]);
    let (run, written) = start(&job, &ctx, &mut server).await;
    expect_event_and_t2_canceled(&mut server).await;
    run.await.unwrap().expect("reconciled");
    // Another event of the job comes before the watch brought the status write: the cached job
    // is the one decided from. Without the memory this is a conditional write bound to fail.
    let again = reconcile_inner(&job, &ctx, &Traced::new(&job))
        .await
        .expect("reconciled");
    assert_eq!(
        again,
        kube::runtime::controller::Action::requeue(crate::own_writes::GRACE)
    );
    server.expect_nothing_more(100).await;
    // The job's write arrived, the task's not yet: the task is not canceled a second time.
    let written = as_written(&job, &written);
    reconcile_inner(&written, &ctx, &Traced::new(&written))
        .await
        .expect("reconciled");
    server.expect_nothing_more(100).await;
    assert_eq!(ctx.metrics.status_writes.get(), 1);
    assert_eq!(ctx.metrics.task_cancels.get(), 1);
}

#[tokio::test]
async fn tasks_created_a_moment_ago_are_not_created_again() {
    let job = job(json!({}), Value::Null);
    let (ctx, mut server) = context(vec![]);
    let (run, written) = start(&job, &ctx, &mut server).await;
    for _ in 0..2 {
        let created = serde_json::to_value(task("t1", "PENDING")).unwrap();
        server.expect("POST", TASKS, 201, created).await;
    }
    server.expect("POST", EVENTS, 201, json!({})).await;
    run.await.unwrap().expect("reconciled");
    // The status write is in the cache, the two tasks not yet.
    let written = as_written(&job, &written);
    reconcile_inner(&written, &ctx, &Traced::new(&written))
        .await
        .expect("reconciled");
    server.expect_nothing_more(100).await;
    assert_eq!(ctx.metrics.task_creates.get(), 2);
}

/// A request that never answers holds one reconcile for at most `RECONCILE_TIMEOUT`; then it is
/// an error (retried with backoff), counted as such.
#[tokio::test(start_paused = true)]
async fn a_reconcile_stuck_on_a_request_is_cut_off() {
    let job = job(json!({"cancel": true}), in_progress(2, 1));
    let (ctx, _server) = context(vec![task("t1", "SUCCESS"), task("t2", "IN_PROGRESS")]);
    let started = tokio::time::Instant::now();
    // `_server` is alive and never answers the status write.
    let result = super::reconcile(std::sync::Arc::new(job), ctx.clone()).await;
    assert!(
        matches!(result, Err(super::ReconcileError::TimedOut(t)) if t == super::RECONCILE_TIMEOUT),
        "{result:?}"
    );
    assert_eq!(started.elapsed(), super::RECONCILE_TIMEOUT);
    let errors = ctx
        .metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ErrorLabels { error: "timeout" })
        .get();
    assert_eq!(errors, 1);
}
