//! The worker's side of the task contract against a real kube-apiserver: a finished task never
//! changes state again, the CRD's transition rule makes the API server refuse it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

mod support;

use std::time::Duration;

use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobTask, CostAnalysisJobTaskSpec, FINISHED_TASK_MESSAGE, TaskState,
};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::{cluster, create, eventually, job_yaml, shared_operator};

const WAIT: Duration = Duration::from_secs(30);

fn now() -> String {
    cost_analysis_operator::timestamp::format(&chrono::Utc::now())
}

/// A task object as the controller creates it (no owner needed here: no operator runs).
fn task_object(name: &str) -> CostAnalysisJobTask {
    CostAnalysisJobTask::new(
        name,
        CostAnalysisJobTaskSpec {
            job_name: "job-race".into(),
            task_id: name.rsplit('.').next().unwrap_or(name).into(),
            domain_id: "domain-1".into(),
            data_source_id: "ds-1".into(),
            options: None,
            created_at: None,
        },
    )
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
