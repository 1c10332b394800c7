//! The task runner's requests against a scripted API server: a batch Job is created once (and a
//! 409 is success), a failed one is explained from its pods, a stopped one is deleted with
//! propagation Background. The decisions are tested in `runner_tests.rs`.

#![allow(clippy::arithmetic_side_effects)]

use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::{Done, Runner};
use crate::fake_apiserver::{self, FakeApiServer, status};
use crate::own_writes::OwnWrites;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask, JobStatus};
use crate::runner::RunnerConfig;

const BATCH: &str = "/apis/batch/v1/namespaces/ns/jobs";
const TASKS: &str = "/apis/cost-analysis.spaceone.dev/v1/namespaces/ns/costanalysisjobtasks";
const PODS: &str = "/api/v1/namespaces/ns/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

fn job() -> CostAnalysisJob {
    let created = chrono::Utc::now() - chrono::Duration::seconds(5);
    serde_json::from_value(json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
        "metadata": {"name": "job-1", "namespace": "ns", "uid": "u-1", "resourceVersion": "10",
                     "creationTimestamp": created.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
        "spec": {"domainId": "d1", "dataSourceId": "ds", "timeoutSeconds": 600,
                 "tasks": [{"id": "t1", "backoffLimit": 2, "template": {"spec": {"containers": [
                     {"name": "main", "image": "task:1", "command": ["sh", "-c", "exit 0"]}]}}},
                           {"id": "t2"}]},
    }))
    .unwrap()
}

fn task(id: &str, state: Option<&str>) -> Arc<CostAnalysisJobTask> {
    let mut t = json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJobTask",
        "metadata": {"name": format!("job-1.{id}"), "namespace": "ns", "uid": format!("u-{id}"),
                     "resourceVersion": "20"},
        "spec": {"jobName": "job-1", "taskId": id, "domainId": "d1", "dataSourceId": "ds"},
    });
    if let Some(s) = state {
        t["status"] = json!({"status": s});
    }
    Arc::new(serde_json::from_value(t).unwrap())
}

fn batch(status: Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "job-1.t1", "namespace": "ns", "uid": "u-batch", "resourceVersion": "30",
                     "annotations": {"cost-analysis.spaceone.dev/job": "job-1"},
                     "ownerReferences": [{"apiVersion": "cost-analysis.spaceone.dev/v1",
                        "kind": "CostAnalysisJobTask", "name": "job-1.t1", "uid": "u-t1",
                        "controller": true}]},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "task:1"}]}}},
        "status": status,
    }))
    .unwrap()
}

fn task_json() -> Value {
    serde_json::to_value(task("t1", None).as_ref()).unwrap()
}

struct Fixture {
    runner: Runner,
    server: FakeApiServer,
    own: Mutex<OwnWrites>,
    recorder: Recorder,
}

fn fixture(batches: Vec<Job>) -> Fixture {
    let (client, server) = fake_apiserver::client();
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for b in batches {
        writer.apply_watcher_event(&Event::InitApply(b));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let config = RunnerConfig {
        enabled: true,
        namespaces: vec![],
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "cost-analysis-operator".into(),
            instance: None,
        },
    );
    Fixture {
        runner: Runner::with_stores(config, client, vec![(None, reader)]),
        server,
        own: Mutex::new(OwnWrites::default()),
        recorder,
    }
}

/// Runs one runner reconcile of `job()` in the background.
fn reconcile(
    f: &Arc<Fixture>,
    state: JobStatus,
    tasks: Vec<Option<Arc<CostAnalysisJobTask>>>,
) -> tokio::task::JoinHandle<Result<Done, String>> {
    let f = f.clone();
    tokio::spawn(async move {
        f.runner
            .reconcile(
                &job(),
                state,
                &tasks,
                &f.own,
                &f.recorder,
                &crate::lifecycle::Config::default(),
            )
            .await
            .map_err(|e| e.to_string())
    })
}

/// The fixture's server is taken out of the shared fixture for the test to drive.
fn split(f: Fixture) -> (Arc<Fixture>, FakeApiServer) {
    let (client, dummy) = fake_apiserver::client();
    drop(client);
    let mut f = f;
    let server = std::mem::replace(&mut f.server, dummy);
    (Arc::new(f), server)
}

#[tokio::test]
async fn a_templated_task_gets_one_batch_job_and_a_restart_does_not_make_two() {
    let (f, mut server) = split(fixture(vec![]));
    let tasks = vec![Some(task("t1", None)), Some(task("t2", None))];
    let run = reconcile(&f, JobStatus::InProgress, tasks.clone());
    let seen = server
        .expect_with("POST", BATCH, |seen| (201, seen.body.clone()))
        .await;
    assert_eq!(
        run.await.unwrap(),
        Ok(Done {
            created: 1,
            reported: 0,
            deleted: 0
        })
    );
    assert!(
        seen.path.contains("fieldManager=cost-analysis-operator"),
        "{}",
        seen.path
    );
    let b = &seen.body;
    assert_eq!(b["metadata"]["name"], "job-1.t1");
    assert_eq!(b["metadata"]["ownerReferences"][0]["uid"], "u-t1");
    assert_eq!(b["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(b["spec"]["backoffLimit"], 2);
    let deadline = b["spec"]["activeDeadlineSeconds"].as_i64().unwrap();
    assert!((620..=630).contains(&deadline), "{deadline}");
    // Only the templated task runs; t2 waits for an external worker.
    server.expect_nothing_more(100).await;

    // The cache has not shown the new Job yet: the next look creates nothing.
    let run = reconcile(&f, JobStatus::InProgress, tasks.clone());
    assert_eq!(run.await.unwrap(), Ok(Done::default()));
    server.expect_nothing_more(100).await;

    // A restarted controller (its memory empty) whose cache has not shown it either: 409 is
    // success, and nothing else is sent.
    let (f2, mut server2) = split(fixture(vec![]));
    let run = reconcile(&f2, JobStatus::InProgress, tasks);
    server2
        .expect("POST", BATCH, 409, status(409, "AlreadyExists"))
        .await;
    assert_eq!(run.await.unwrap(), Ok(Done::default()));
    server2.expect_nothing_more(100).await;
}

#[tokio::test]
async fn a_running_batch_job_starts_its_task_conditionally() {
    let running = batch(json!({"active": 1, "startTime": "2026-01-01T00:00:05Z"}));
    let (f, mut server) = split(fixture(vec![running]));
    let run = reconcile(
        &f,
        JobStatus::InProgress,
        vec![Some(task("t1", None)), None],
    );
    let seen = server
        .expect(
            "PATCH",
            &format!("{TASKS}/job-1.t1/status"),
            200,
            task_json(),
        )
        .await;
    assert_eq!(
        seen.body,
        json!({"metadata": {"resourceVersion": "20"},
               "status": {"status": "IN_PROGRESS", "startedAt": "2026-01-01T00:00:05.000Z"}})
    );
    assert_eq!(
        run.await.unwrap(),
        Ok(Done {
            created: 0,
            reported: 1,
            deleted: 0
        })
    );
    server.expect_nothing_more(100).await;
}

#[tokio::test]
async fn a_failed_batch_job_fails_its_task_with_the_pods_message_and_says_so() {
    let failed = batch(
        json!({"startTime": "2026-01-01T00:00:05Z", "failed": 3, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit",
         "lastTransitionTime": "2026-01-01T00:01:00Z"}]}),
    );
    let (f, mut server) = split(fixture(vec![failed]));
    let run = reconcile(
        &f,
        JobStatus::InProgress,
        vec![Some(task("t1", Some("IN_PROGRESS"))), None],
    );
    let pods = server
        .expect("GET", PODS, 200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
            "items": [{"metadata": {"name": "job-1.t1-abcde", "creationTimestamp": "2026-01-01T00:00:40Z"},
                       "status": {"containerStatuses": [{"name": "main", "image": "x", "imageID": "",
                          "ready": false, "restartCount": 0,
                          "state": {"terminated": {"exitCode": 1, "message": "boom"}}}]}}]}))
        .await;
    assert!(
        pods.path
            .contains("labelSelector=batch.kubernetes.io%2Fcontroller-uid%3Du-batch"),
        "{}",
        pods.path
    );
    let patch = server
        .expect(
            "PATCH",
            &format!("{TASKS}/job-1.t1/status"),
            200,
            task_json(),
        )
        .await;
    assert_eq!(patch.body["status"]["status"], "FAILURE");
    assert_eq!(patch.body["status"]["errorCode"], "ERROR_TASK_POD");
    assert_eq!(
        patch.body["status"]["errorMessage"],
        "pod job-1.t1-abcde: boom (exit code 1)"
    );
    assert_eq!(patch.body["metadata"]["resourceVersion"], "20");
    let event = server.expect("POST", EVENTS, 201, json!({})).await;
    assert_eq!(event.body["reason"], "TaskFailed");
    assert_eq!(
        event.body["note"],
        "task t1: ERROR_TASK_POD: pod job-1.t1-abcde: boom (exit code 1)"
    );
    assert_eq!(
        run.await.unwrap(),
        Ok(Done {
            created: 0,
            reported: 1,
            deleted: 0
        })
    );
}

#[tokio::test]
async fn a_report_the_task_overtook_is_not_an_error() {
    let running = batch(json!({"active": 1, "startTime": "2026-01-01T00:00:05Z"}));
    let (f, mut server) = split(fixture(vec![running]));
    let run = reconcile(
        &f,
        JobStatus::InProgress,
        vec![Some(task("t1", None)), None],
    );
    server
        .expect(
            "PATCH",
            &format!("{TASKS}/job-1.t1/status"),
            409,
            status(409, "Conflict"),
        )
        .await;
    assert_eq!(run.await.unwrap(), Ok(Done::default()));
}

#[tokio::test]
async fn a_stopped_jobs_batch_jobs_are_deleted_in_the_background() {
    for state in [JobStatus::Canceled, JobStatus::Timeout, JobStatus::Failure] {
        let running = batch(json!({"active": 1}));
        let (f, mut server) = split(fixture(vec![running]));
        let run = reconcile(&f, state, vec![Some(task("t1", Some("CANCELED"))), None]);
        let seen = server
            .expect("DELETE", &format!("{BATCH}/job-1.t1"), 200, json!({}))
            .await;
        assert_eq!(seen.body["propagationPolicy"], "Background");
        assert_eq!(seen.body["preconditions"]["uid"], "u-batch");
        assert_eq!(
            run.await.unwrap(),
            Ok(Done {
                created: 0,
                reported: 0,
                deleted: 1
            })
        );
        server.expect_nothing_more(50).await;

        // Gone already (another replica, or the cache behind): not an error.
        let (f, mut server) = split(fixture(vec![batch(json!({"active": 1}))]));
        let run = reconcile(&f, state, vec![Some(task("t1", Some("CANCELED"))), None]);
        server
            .expect(
                "DELETE",
                &format!("{BATCH}/job-1.t1"),
                404,
                status(404, "NotFound"),
            )
            .await;
        assert_eq!(run.await.unwrap(), Ok(Done::default()));
    }
}

#[tokio::test]
async fn an_invalid_template_fails_the_task_with_the_api_servers_message() {
    let (f, mut server) = split(fixture(vec![]));
    let run = reconcile(
        &f,
        JobStatus::InProgress,
        vec![Some(task("t1", None)), None],
    );
    server
        .expect("POST", BATCH, 422, json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "Invalid", "code": 422,
            "message": "Job.batch \"job-1.t1\" is invalid: spec.template.spec.containers[0].image: Required value"}))
        .await;
    let patch = server
        .expect(
            "PATCH",
            &format!("{TASKS}/job-1.t1/status"),
            200,
            task_json(),
        )
        .await;
    assert_eq!(patch.body["status"]["errorCode"], "ERROR_TASK_TEMPLATE");
    assert!(
        patch.body["status"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Required value")
    );
    server.expect("POST", EVENTS, 201, json!({})).await;
    assert_eq!(
        run.await.unwrap(),
        Ok(Done {
            created: 0,
            reported: 1,
            deleted: 0
        })
    );
}

#[tokio::test]
async fn jobs_without_templates_or_outside_the_runners_namespaces_send_nothing() {
    let (client, mut server) = fake_apiserver::client();
    let (reader, _writer) = reflector::store::<Job>();
    let config = RunnerConfig {
        enabled: true,
        namespaces: vec!["elsewhere".into()],
    };
    let runner = Runner::with_stores(
        config,
        client.clone(),
        vec![(Some("elsewhere".into()), reader)],
    );
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: "x".into(),
            instance: None,
        },
    );
    let own = Mutex::new(OwnWrites::default());
    let done = runner
        .reconcile(
            &job(),
            JobStatus::InProgress,
            &[Some(task("t1", None)), None],
            &own,
            &recorder,
            &crate::lifecycle::Config::default(),
        )
        .await;
    assert_eq!(done.ok(), Some(Done::default()));
    server.expect_nothing_more(50).await;
}
