//! The controller's I/O shell against a scripted API server: which requests one reconcile sends,
//! in which order, with which preconditions. The decisions themselves are tested in
//! `lifecycle_tests.rs`; the whole loop against a real API server in `tests/controller*.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

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
        config: lifecycle::Config::default(),
        metrics: Arc::new(Metrics::default()),
        backoff: Mutex::new(HashMap::new()),
    };
    (Arc::new(ctx), server)
}

fn in_progress(total: i32, remained: i32) -> Value {
    json!({"status": "IN_PROGRESS", "totalTasks": total, "remainedTasks": remained})
}

#[tokio::test]
async fn a_cancel_writes_the_job_status_before_it_touches_a_task() {
    let job = job(json!({"cancel": true}), in_progress(2, 1));
    let (ctx, mut server) = context(vec![task("t1", "SUCCESS"), task("t2", "IN_PROGRESS")]);
    let run = tokio::spawn({
        let (job, ctx) = (job.clone(), ctx.clone());
        async move { reconcile_inner(&job, &ctx).await.map_err(|e| e.to_string()) }
    });
    // 1. The job's status, by server-side apply, forced, conditional on the version decided from.
    let answer = serde_json::to_value(&job).unwrap();
    let written = server
        .expect("PATCH", &format!("{JOBS}/job-1/status"), 200, answer)
        .await;
    assert!(written.path.contains("fieldManager=cost-analysis-operator"));
    assert!(written.path.contains("force=true"));
    assert_eq!(written.body["metadata"]["resourceVersion"], "10");
    assert_eq!(written.body["status"]["status"], "CANCELED");
    assert_eq!(written.body["status"]["remainedTasks"], 1);
    // 2. The event saying so.
    let event = server.expect("POST", EVENTS, 201, json!({})).await;
    assert_eq!(event.body["regarding"]["name"], "job-1");
    // 3. Only then the unfinished task, conditional on the version the decision saw.
    let canceled = server
        .expect(
            "PATCH",
            &format!("{TASKS}/job-1.t2/status"),
            200,
            serde_json::to_value(task("t2", "CANCELED")).unwrap(),
        )
        .await;
    assert_eq!(canceled.body["status"]["status"], "CANCELED");
    assert_eq!(canceled.body["metadata"]["resourceVersion"], "2t2");
    run.await.unwrap().expect("reconciled");
    server.expect_nothing_more(100).await;
    assert_eq!(ctx.metrics.task_cancels.get(), 1);
}

#[tokio::test]
async fn tasks_are_created_once_and_the_event_counts_only_those_really_created() {
    let job = job(json!({}), Value::Null);
    let (ctx, mut server) = context(vec![]);
    let run = tokio::spawn({
        let (job, ctx) = (job.clone(), ctx.clone());
        async move { reconcile_inner(&job, &ctx).await.map_err(|e| e.to_string()) }
    });
    let answer = serde_json::to_value(&job).unwrap();
    let written = server
        .expect("PATCH", &format!("{JOBS}/job-1/status"), 200, answer)
        .await;
    assert_eq!(written.body["status"]["totalTasks"], 2);
    assert_eq!(written.body["status"]["remainedTasks"], 2);
    let created = serde_json::to_value(task("t1", "PENDING")).unwrap();
    let first = server.expect("POST", TASKS, 201, created).await;
    assert_eq!(first.body["metadata"]["name"], "job-1.t1");
    assert_eq!(first.body["metadata"]["ownerReferences"][0]["uid"], "u-1");
    // The cache had not seen this one yet: it exists already.
    let second = server
        .expect("POST", TASKS, 409, status(409, "AlreadyExists"))
        .await;
    assert_eq!(second.body["metadata"]["name"], "job-1.t2");
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
        .map(|t| lifecycle::TaskView {
            task_id: t.spec.task_id.clone(),
            state: t.state(),
            finished_at: t.status.as_ref().and_then(|s| s.finished_at),
        })
        .collect();
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(crate::timestamp::from_k8s)
        .expect("created");
    for _ in 0..3 {
        let view = lifecycle::JobView {
            generation: job.metadata.generation,
            created,
            spec: &job.spec,
            status: job.status.as_ref(),
        };
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
    reconcile_inner(&job, &ctx).await.expect("reconciled");
    server.expect_nothing_more(200).await;
    assert_eq!(ctx.metrics.status_writes.get(), 0);
}
