//! The worker's side of the task contract (docs/architecture.md, "The worker's contract") against
//! a real kube-apiserver: a worker claims a PENDING task by writing IN_PROGRESS and `startedAt`
//! with the object's resourceVersion as a precondition, so of several workers racing for one task
//! exactly one wins; it reports SUCCESS or FAILURE with `finishedAt` (and an error); and a finished
//! task never changes state again: the CRD's transition rule makes the API server refuse it.
//!   cargo test --test worker -- --nocapture   (prints the race figures)
//! `WORKER_RACES` (1,000) and `WORKER_CLAIMERS` (4) size the race.

#![allow(clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobTask, FINISHED_TASK_MESSAGE, TaskState,
};
use cost_analysis_operator::testing::TaskBuilder;
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{cluster, create, eventually, job_yaml, shared_operator};

const WAIT: Duration = Duration::from_secs(30);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> String {
    cost_analysis_operator::timestamp::format(&chrono::Utc::now())
}

/// The task object `<job>.<id>` as the controller creates it (no owner needed here: no operator
/// runs).
fn task_object(name: &str) -> CostAnalysisJobTask {
    let (job, id) = name.rsplit_once('.').unwrap_or(("job-race", name));
    TaskBuilder::new(job, id).build()
}

/// A status write as a worker sends it: a merge patch of the status subresource, conditional on
/// `resource_version` when there is one.
async fn write_status(
    api: &Api<CostAnalysisJobTask>,
    name: &str,
    resource_version: Option<&str>,
    status: Value,
) -> Result<CostAnalysisJobTask, kube::Error> {
    let mut patch = json!({ "status": status });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// How one worker's claim ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    Won,
    /// The write was refused with 409: another worker's claim changed the task first.
    Conflict,
    /// The task was no longer PENDING when read.
    Taken,
}

/// One worker's claim: read the task, and if it is PENDING, write IN_PROGRESS and `startedAt`
/// conditional on the version read.
async fn claim(
    api: &Api<CostAnalysisJobTask>,
    name: &str,
    barrier: &tokio::sync::Barrier,
) -> Result<Claim, kube::Error> {
    let task = api.get_status(name).await?;
    let pending = task.state() == TaskState::Pending;
    // Every claimer of this task has read it before any writes: the race is real.
    barrier.wait().await;
    if !pending {
        return Ok(Claim::Taken);
    }
    match write_status(
        api,
        name,
        task.metadata.resource_version.as_deref(),
        json!({"status": "IN_PROGRESS", "startedAt": now()}),
    )
    .await
    {
        Ok(_) => Ok(Claim::Won),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Claim::Conflict),
        Err(e) => Err(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_n_workers_racing_for_a_task_exactly_one_claims_it() {
    let c = cluster();
    let ns = c.namespace("race");
    let api: Api<CostAnalysisJobTask> = Api::namespaced(c.client().await, &ns);
    let races = env_usize("WORKER_RACES", 1000);
    let claimers = env_usize("WORKER_CLAIMERS", 4);
    let names: Vec<String> = (0..races).map(|i| format!("job-race.t{i:04}")).collect();
    futures::stream::iter(names.iter().map(|n| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &task_object(n))
                .await
                .expect("create task")
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;

    // Each race: `claimers` workers read the task, then all write at once.
    let started = Instant::now();
    let results: Vec<(String, Vec<Claim>)> = futures::stream::iter(names.iter().map(|n| {
        let api = api.clone();
        async move {
            let barrier = Arc::new(tokio::sync::Barrier::new(claimers));
            let handles: Vec<_> = (0..claimers)
                .map(|_| {
                    let (api, n, barrier) = (api.clone(), n.clone(), barrier.clone());
                    tokio::spawn(async move { claim(&api, &n, &barrier).await })
                })
                .collect();
            let mut claims = Vec::new();
            for h in handles {
                claims.push(h.await.expect("claimer").expect("claim"));
            }
            (n.clone(), claims)
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    let elapsed = started.elapsed();
    let count = |c: Claim| -> usize {
        results
            .iter()
            .map(|r| r.1.iter().filter(|x| **x == c).count())
            .sum()
    };
    let (wins, conflicts, taken) = (
        count(Claim::Won),
        count(Claim::Conflict),
        count(Claim::Taken),
    );
    let winners = |n: usize| {
        results
            .iter()
            .filter(|r| r.1.iter().filter(|x| **x == Claim::Won).count() == n)
            .count()
    };
    eprintln!(
        "worker races: {races} tasks x {claimers} claimers in {elapsed:.1?}: {wins} wins, {} \
         losses ({conflicts} refused 409, {taken} found it taken); tasks with 0 winners: {}, \
         1: {}, 2 or more: {}",
        conflicts + taken,
        winners(0),
        winners(1),
        races - winners(0) - winners(1)
    );
    for (name, claims) in &results {
        let w = claims.iter().filter(|c| **c == Claim::Won).count();
        assert_eq!(w, 1, "{name}: {w} workers claimed it ({claims:?})");
    }
    assert_eq!((wins, conflicts + taken), (races, races * (claimers - 1)));

    // The winner's claim is what is stored; it reports the outcome with finishedAt (and an error
    // for a failure), conditional on the version it holds.
    let outcomes: Vec<()> = futures::stream::iter(names.iter().enumerate().map(|(i, n)| {
        let api = api.clone();
        async move {
            let task = api.get_status(n).await.expect("get");
            let s = task.status.clone().expect("status");
            assert_eq!(s.status, Some(TaskState::InProgress), "{n}");
            assert!(s.started_at.is_some(), "{n}: startedAt");
            let report = if i % 2 == 0 {
                json!({"status": "SUCCESS", "finishedAt": now(), "createdCount": 7})
            } else {
                json!({"status": "FAILURE", "finishedAt": now(),
                       "errorCode": "ERROR_TEST", "errorMessage": format!("task {i} broke")})
            };
            let done = write_status(&api, n, task.metadata.resource_version.as_deref(), report)
                .await
                .expect("report");
            let s = done.status.expect("status");
            assert!(s.finished_at.is_some() && s.started_at.is_some(), "{n}");
            assert!(s.status.is_some_and(TaskState::is_finished), "{n}");
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    assert_eq!(outcomes.len(), races);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_precondition_every_racer_would_win() {
    // Why the precondition: an unconditional write succeeds for every racer.
    let c = cluster();
    let ns = c.namespace("norv");
    let api: Api<CostAnalysisJobTask> = Api::namespaced(c.client().await, &ns);
    api.create(&PostParams::default(), &task_object("job-race.t1"))
        .await
        .expect("create");
    let mut ok = 0;
    for _ in 0..4 {
        if write_status(&api, "job-race.t1", None, json!({"status": "IN_PROGRESS"}))
            .await
            .is_ok()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 4);
}

/// The API server's refusal of a write, with its message.
fn refusal(result: Result<CostAnalysisJobTask, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        Ok(t) => panic!("the write was accepted: {:?}", t.status),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_task_never_changes_state_again() {
    let c = cluster();
    let ns = c.namespace("final");
    let api: Api<CostAnalysisJobTask> = Api::namespaced(c.client().await, &ns);
    for n in ["job-f.ok", "job-f.bad"] {
        api.create(&PostParams::default(), &task_object(n))
            .await
            .expect("create");
    }
    // The normal transitions: PENDING -> IN_PROGRESS -> SUCCESS, PENDING -> IN_PROGRESS -> FAILURE.
    for (n, end) in [("job-f.ok", "SUCCESS"), ("job-f.bad", "FAILURE")] {
        write_status(&api, n, None, json!({"status": "PENDING"}))
            .await
            .expect("PENDING");
        write_status(
            &api,
            n,
            None,
            json!({"status": "IN_PROGRESS", "startedAt": now()}),
        )
        .await
        .expect("IN_PROGRESS");
        write_status(
            &api,
            n,
            None,
            json!({"status": end, "finishedAt": now(), "errorCode": "E"}),
        )
        .await
        .unwrap_or_else(|e| panic!("{end}: {e}"));
    }
    // A confused worker: IN_PROGRESS, FAILURE or PENDING over SUCCESS, SUCCESS over FAILURE,
    // removing the state: refused (422) with the rule's message, with or without a precondition.
    for (n, state) in [
        ("job-f.ok", json!("IN_PROGRESS")),
        ("job-f.ok", json!("FAILURE")),
        ("job-f.ok", json!("PENDING")),
        ("job-f.ok", Value::Null),
        ("job-f.bad", json!("SUCCESS")),
    ] {
        let (code, message) = refusal(
            write_status(&api, n, None, json!({"status": state, "startedAt": now()})).await,
        );
        assert_eq!(code, 422, "{n} -> {state}: {message}");
        assert!(
            message.contains(FINISHED_TASK_MESSAGE),
            "{n} -> {state}: {message}"
        );
        let rv = api.get_status(n).await.unwrap().metadata.resource_version;
        let (code, _) =
            refusal(write_status(&api, n, rv.as_deref(), json!({"status": state})).await);
        assert_eq!(code, 422, "{n} -> {state} with its resourceVersion");
    }
    // Nor can the whole status be removed.
    let (code, message) = refusal(
        api.patch_status(
            "job-f.ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": null})),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(message.contains(FINISHED_TASK_MESSAGE), "{message}");
    // kubectl shows the same message to a person trying it.
    let out = c.kubectl(&[
        "patch",
        "cajt",
        "job-f.ok",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"status":"IN_PROGRESS"}}"#,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(FINISHED_TASK_MESSAGE), "{stderr}");
    // The state stays; other fields of a finished task may still be written (a late count).
    let t = write_status(&api, "job-f.ok", None, json!({"createdCount": 12}))
        .await
        .expect("createdCount of a finished task");
    let s = t.status.expect("status");
    assert_eq!(
        (s.status, s.created_count),
        (Some(TaskState::Success), Some(12))
    );
    assert_eq!(
        api.get_status("job-f.bad").await.unwrap().state(),
        TaskState::Failure
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controllers_cancel_still_works_and_then_stays() {
    let c = cluster();
    shared_operator();
    let ns = c.namespace("cancel-final");
    let client = c.client().await;
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &ns);
    let api: Api<CostAnalysisJobTask> = Api::namespaced(client, &ns);
    create(c, &ns, &job_yaml("job-c", &["a", "b"], ""));
    eventually(WAIT, "the tasks of job-c", || async {
        api.get_opt("job-c.b").await.ok().flatten()?;
        api.get_opt("job-c.a").await.ok().flatten()
    })
    .await;
    // A worker claims b; the job is canceled: the controller writes CANCELED over IN_PROGRESS
    // (and over PENDING a) without hitting the rule.
    write_status(
        &api,
        "job-c.b",
        None,
        json!({"status": "IN_PROGRESS", "startedAt": now()}),
    )
    .await
    .expect("claim");
    jobs.patch(
        "job-c",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"cancel": true}})),
    )
    .await
    .expect("cancel");
    for n in ["job-c.a", "job-c.b"] {
        eventually(WAIT, &format!("{n} to be CANCELED"), || async {
            (api.get_status(n).await.ok()?.state() == TaskState::Canceled).then_some(())
        })
        .await;
    }
    // The worker of b, not knowing, reports SUCCESS: refused; the task stays CANCELED.
    let (code, message) = refusal(
        write_status(
            &api,
            "job-c.b",
            None,
            json!({"status": "SUCCESS", "finishedAt": now()}),
        )
        .await,
    );
    assert_eq!(code, 422);
    assert!(message.contains(FINISHED_TASK_MESSAGE), "{message}");
    assert_eq!(
        api.get_status("job-c.b").await.unwrap().state(),
        TaskState::Canceled
    );
}
