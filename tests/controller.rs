//! The job lifecycle against a real kube-apiserver, driven the way users drive it: kubectl for
//! people, status patches for workers.

#![allow(clippy::expect_used)]

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobTask, FINISHED_TASK_MESSAGE, JobStatus, TaskState,
};
use kube::Api;
use kube::api::ListParams;
use support::{Cluster, cluster, create, eventually, job_yaml, report, shared_operator};

const WAIT: Duration = Duration::from_secs(30);

async fn job(api: &Api<CostAnalysisJob>, name: &str) -> CostAnalysisJob {
    api.get(name).await.expect("get job")
}

async fn wait_state(api: &Api<CostAnalysisJob>, name: &str, state: JobStatus) -> CostAnalysisJob {
    eventually(
        WAIT,
        &format!("{name} to become {}", state.as_str()),
        || async {
            let j = api.get(name).await.ok()?;
            (j.status.as_ref()?.status? == state).then_some(j)
        },
    )
    .await
}

async fn wait_tasks(
    api: &Api<CostAnalysisJobTask>,
    job: &str,
    n: usize,
) -> Vec<CostAnalysisJobTask> {
    eventually(WAIT, &format!("{n} tasks of {job}"), || async {
        let list = api
            .list(&ListParams::default().labels(&format!("cost-analysis.spaceone.dev/job={job}")))
            .await
            .ok()?;
        (list.items.len() == n).then_some(list.items)
    })
    .await
}

fn status_of(j: &CostAnalysisJob) -> &cost_analysis_operator::resources::CostAnalysisJobStatus {
    j.status.as_ref().expect("status")
}

struct Env {
    c: &'static Cluster,
    ns: String,
    jobs: Api<CostAnalysisJob>,
    tasks: Api<CostAnalysisJobTask>,
}

async fn env(prefix: &str) -> Env {
    let c = cluster();
    shared_operator();
    let ns = c.namespace(prefix);
    let client = c.client().await;
    Env {
        jobs: Api::namespaced(client.clone(), &ns),
        tasks: Api::namespaced(client, &ns),
        c,
        ns,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn job_without_tasks_succeeds_and_kubectl_wait_returns() {
    let e = env("zero").await;
    create(e.c, &e.ns, &job_yaml("job-zero", &[], ""));
    e.c.kubectl_ok(&[
        "wait",
        "-n",
        &e.ns,
        "caj/job-zero",
        "--for=condition=Complete",
        "--timeout=30s",
    ]);
    let j = job(&e.jobs, "job-zero").await;
    let s = status_of(&j);
    assert_eq!(s.status, Some(JobStatus::Success));
    assert_eq!((s.total_tasks, s.remained_tasks), (0, 0));
    assert!(s.finished_at.is_some());
    assert_eq!(s.observed_generation, j.metadata.generation);
    // The printer columns users see.
    let table = e.c.kubectl_ok(&["get", "caj", "-n", &e.ns]);
    let header = table.lines().next().unwrap_or_default();
    for col in ["NAME", "STATUS", "PROGRESS", "DATA SOURCE", "DOMAIN", "AGE"] {
        assert!(header.contains(col), "column {col} missing in {header}");
    }
    assert!(
        table.contains("SUCCESS") && table.contains("0/0"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tasks_count_down_to_success() {
    let e = env("three").await;
    create(e.c, &e.ns, &job_yaml("job-three", &["a", "b", "c"], ""));
    let tasks = wait_tasks(&e.tasks, "job-three", 3).await;
    for t in &tasks {
        let owner = t
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .expect("owner");
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("CostAnalysisJob", "job-three", Some(true))
        );
        assert_eq!(t.state(), TaskState::Pending);
    }
    let first = wait_state(&e.jobs, "job-three", JobStatus::InProgress).await;
    assert_eq!(
        (
            status_of(&first).total_tasks,
            status_of(&first).remained_tasks
        ),
        (3, 3)
    );
    for (task, remained) in [("job-three.a", 2), ("job-three.b", 1)] {
        report(e.c, &e.ns, task, "SUCCESS");
        eventually(WAIT, &format!("remainedTasks {remained}"), || async {
            let j = e.jobs.get("job-three").await.ok()?;
            let s = j.status?;
            (s.remained_tasks == remained && s.status == Some(JobStatus::InProgress)).then_some(())
        })
        .await;
    }
    report(e.c, &e.ns, "job-three.c", "SUCCESS");
    let done = wait_state(&e.jobs, "job-three", JobStatus::Success).await;
    let s = status_of(&done);
    assert_eq!((s.remained_tasks, s.progress.as_deref()), (0, Some("3/3")));
    assert!(s.finished_at >= s.created_at);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_fails_the_job() {
    let e = env("fail").await;
    create(e.c, &e.ns, &job_yaml("job-fail", &["a", "b"], ""));
    wait_tasks(&e.tasks, "job-fail", 2).await;
    // The worker reports FAILURE with its error.
    let now = cost_analysis_operator::timestamp::format(&chrono::Utc::now());
    let failure = format!(
        r#"{{"status":{{"status":"FAILURE","finishedAt":"{now}","errorCode":"ERROR_SYNC","errorMessage":"the data source answered 503"}}}}"#
    );
    e.c.kubectl_ok(&[
        "patch",
        "cajt",
        "job-fail.a",
        "-n",
        &e.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &failure,
    ]);
    // kubectl wait on Finished covers failures too.
    e.c.kubectl_ok(&[
        "wait",
        "-n",
        &e.ns,
        "caj/job-fail",
        "--for=condition=Finished",
        "--timeout=30s",
    ]);
    let j = wait_state(&e.jobs, "job-fail", JobStatus::Failure).await;
    let s = status_of(&j);
    assert_eq!(s.error_code.as_deref(), Some("ERROR_JOB_TASK"));
    assert_eq!(
        s.error_message.as_deref(),
        Some("One or more job tasks have failed.")
    );
    let failed = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .expect("Failed condition");
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "Failed")
    );
    // The job explains itself: the condition, the Failed event and kubectl describe name the
    // failed task and its error.
    let said = "ERROR_JOB_TASK: One or more job tasks have failed. \
                Failed task: job-fail.a (ERROR_SYNC: the data source answered 503)";
    assert_eq!(failed.message, said);
    let notes = eventually(WAIT, "the Failed event", || async {
        let out = e.c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &e.ns,
            "--field-selector",
            "involvedObject.name=job-fail,reason=Failed",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (!out.is_empty()).then_some(out)
    })
    .await;
    assert_eq!(notes, said);
    let described =
        e.c.kubectl_ok(&["describe", "caj", "job-fail", "-n", &e.ns]);
    assert!(
        described.contains("job-fail.a (ERROR_SYNC: the data source answered 503)"),
        "{described}"
    );
    eventually(WAIT, "the unfinished task to be CANCELED", || async {
        (e.tasks.get("job-fail.b").await.ok()?.state() == TaskState::Canceled).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_timeout_times_out_at_the_deadline() {
    let e = env("timeout").await;
    create(
        e.c,
        &e.ns,
        &job_yaml("job-slow", &["a", "b"], "  timeoutSeconds: 4\n"),
    );
    wait_tasks(&e.tasks, "job-slow", 2).await;
    report(e.c, &e.ns, "job-slow.a", "SUCCESS");
    let j = wait_state(&e.jobs, "job-slow", JobStatus::Timeout).await;
    let s = status_of(&j);
    let created: DateTime<Utc> = s.created_at.expect("createdAt");
    let finished = s.finished_at.expect("finishedAt");
    let took = (finished - created).num_milliseconds();
    // At the deadline (4 s + the 1 s skew allowance), not by polling later; creationTimestamp has
    // second precision, hence the slack below.
    assert!(
        (5_000..7_500).contains(&took),
        "timed out {took} ms after creation"
    );
    let b = eventually(WAIT, "task b CANCELED", || async {
        let t = e.tasks.get("job-slow.b").await.ok()?;
        (t.state() == TaskState::Canceled).then_some(t)
    })
    .await;
    assert!(b.status.and_then(|s| s.finished_at).is_some());
    assert_eq!(
        e.tasks.get("job-slow.a").await.expect("task a").state(),
        TaskState::Success
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_patch_cancel_cancels_a_running_job() {
    let e = env("cancel").await;
    create(e.c, &e.ns, &job_yaml("job-cancel", &["a", "b"], ""));
    wait_tasks(&e.tasks, "job-cancel", 2).await;
    report(e.c, &e.ns, "job-cancel.a", "SUCCESS");
    eventually(WAIT, "remained 1", || async {
        (e.jobs.get("job-cancel").await.ok()?.status?.remained_tasks == 1).then_some(())
    })
    .await;
    e.c.kubectl_ok(&[
        "patch",
        "caj",
        "job-cancel",
        "-n",
        &e.ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"cancel":true}}"#,
    ]);
    e.c.kubectl_ok(&[
        "wait",
        "-n",
        &e.ns,
        "caj/job-cancel",
        "--for=condition=Finished",
        "--timeout=30s",
    ]);
    let j = wait_state(&e.jobs, "job-cancel", JobStatus::Canceled).await;
    let s = status_of(&j);
    assert!(s.finished_at.is_some());
    assert_eq!(s.total_tasks, 2);
    eventually(WAIT, "task b CANCELED", || async {
        (e.tasks.get("job-cancel.b").await.ok()?.state() == TaskState::Canceled).then_some(())
    })
    .await;
    // A canceled job stays canceled when its last task reports later: the API server refuses the
    // late report (a finished task never changes state again), and the job does not move.
    let late = e.c.kubectl(&[
        "patch",
        "cajt",
        "job-cancel.b",
        "-n",
        &e.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"status":"SUCCESS"}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(
        !late.status.success() && stderr.contains(FINISHED_TASK_MESSAGE),
        "{stderr}"
    );
    assert_eq!(
        e.tasks.get("job-cancel.b").await.expect("task b").state(),
        TaskState::Canceled
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status_of(&job(&e.jobs, "job-cancel").await).status,
        Some(JobStatus::Canceled)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_after_success_changes_nothing_and_warns() {
    let e = env("late-cancel").await;
    create(e.c, &e.ns, &job_yaml("job-done", &[], ""));
    let before = wait_state(&e.jobs, "job-done", JobStatus::Success).await;
    e.c.kubectl_ok(&[
        "patch",
        "caj",
        "job-done",
        "-n",
        &e.ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"cancel":true}}"#,
    ]);
    let events = eventually(WAIT, "a CancelIgnored Warning event", || async {
        let out = e.c.kubectl(&[
            "get",
            "events",
            "-n",
            &e.ns,
            "--field-selector",
            "reason=CancelIgnored",
            "-o",
            "jsonpath={.items[*].type}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("Warning").then_some(text)
    })
    .await;
    assert!(events.contains("Warning"));
    let after = job(&e.jobs, "job-done").await;
    let (b, a) = (status_of(&before), status_of(&after));
    assert_eq!(a.status, Some(JobStatus::Success));
    assert_eq!(
        (a.finished_at, a.updated_at, &a.error_code),
        (b.finished_at, b.updated_at, &b.error_code)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_settled_job_is_not_written_again() {
    let e = env("settled").await;
    create(e.c, &e.ns, &job_yaml("job-settled", &["a"], ""));
    wait_tasks(&e.tasks, "job-settled", 1).await;
    report(e.c, &e.ns, "job-settled.a", "SUCCESS");
    wait_state(&e.jobs, "job-settled", JobStatus::Success).await;
    // A metadata change makes the controller reconcile the settled job once more.
    e.c.kubectl_ok(&["label", "caj", "job-settled", "-n", &e.ns, "touched=yes"]);
    let rv = job(&e.jobs, "job-settled").await.metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = job(&e.jobs, "job-settled").await;
    assert_eq!(
        again.metadata.resource_version, rv,
        "the controller wrote a settled job"
    );
    // Only the controller's field manager owns status; it never touches spec.
    let managers: Vec<(String, String)> = again
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.subresource.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("cost-analysis-operator".into(), "status".into())),
        "{managers:?}"
    );
    assert!(
        !managers
            .iter()
            .any(|(m, sub)| m == "cost-analysis-operator" && sub.is_empty()),
        "the controller wrote the main resource: {managers:?}"
    );
}

/// Applies `yaml` and asserts that the API server refuses it with a message holding `expected`.
fn assert_refused(e: &Env, yaml: &str, expected: &str) {
    let out = e.c.apply_yaml(&e.ns, yaml);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "accepted: {yaml}");
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_objects_are_refused_with_a_clear_message() {
    let e = env("invalid").await;
    let refused = |yaml: &str, expected: &str| assert_refused(&e, yaml, expected);
    refused(
        "apiVersion: cost-analysis.spaceone.dev/v1\nkind: CostAnalysisJob\nmetadata: {name: j1}\nspec: {dataSourceId: ds-1}\n",
        "spec.domainId: Required value",
    );
    refused(
        &job_yaml("j2", &[], "  timeoutSeconds: 0\n"),
        "spec.timeoutSeconds",
    );
    refused(&job_yaml("j3", &["a", "a"], ""), "Duplicate value");
    refused(&job_yaml("j4", &["Bad_Id"], ""), "spec.tasks[0].id");
    create(e.c, &e.ns, &job_yaml("j5", &["a"], "  cancel: true\n"));
    refused(
        &job_yaml("j5", &["a"], "  cancel: true\n").replace("domain-1", "domain-2"),
        "domainId is immutable",
    );
    refused(
        &job_yaml("j5", &["a", "b"], "  cancel: true\n"),
        "tasks are immutable",
    );
    refused(
        &job_yaml("j5", &["a"], "  cancel: false\n"),
        "cancel cannot be withdrawn once set",
    );
    let out = e.c.kubectl(&[
        "patch",
        "caj",
        "j5",
        "-n",
        &e.ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/cancel"}]"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancel cannot be withdrawn once set"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_job_deletes_its_tasks() {
    let e = env("delete").await;
    create(e.c, &e.ns, &job_yaml("job-del", &["a", "b"], ""));
    wait_tasks(&e.tasks, "job-del", 2).await;
    e.c.kubectl_ok(&["delete", "caj", "job-del", "-n", &e.ns, "--wait=true"]);
    eventually(
        Duration::from_secs(60),
        "the garbage collector to delete the tasks",
        || async {
            e.tasks
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let e = env("ttl").await;
    create(
        e.c,
        &e.ns,
        &job_yaml("job-ttl", &[], "  ttlSecondsAfterFinished: 2\n"),
    );
    wait_state(&e.jobs, "job-ttl", JobStatus::Success).await;
    eventually(WAIT, "the job to be deleted after its TTL", || async {
        match e.jobs.get_opt("job-ttl").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_are_served() {
    let e = env("metrics").await;
    create(e.c, &e.ns, &job_yaml("job-m", &[], ""));
    wait_state(&e.jobs, "job-m", JobStatus::Success).await;
    let op = shared_operator();
    let body = op.metrics();
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l == "cost_analysis_operator_leader 1"),
        "{body}"
    );
    assert!(
        body.contains("cost_analysis_operator_job_transitions_total{status=\"SUCCESS\"}"),
        "{body}"
    );
    assert!(support::http_get(&op.metrics_addr, "/readyz").contains("200 OK"));
    assert!(support::http_get(&op.metrics_addr, "/healthz").contains("200 OK"));
}

/// Issue 9, item 7: job `a` with task `b-c` and job `a-b` with task `c` each get their own task
/// object and both succeed (with `-` as the separator both claimed `a-b-c`).
#[tokio::test(flavor = "multi_thread")]
async fn task_names_never_collide_across_jobs() {
    let e = env("collide").await;
    create(e.c, &e.ns, &job_yaml("a", &["b-c"], ""));
    create(e.c, &e.ns, &job_yaml("a-b", &["c"], ""));
    for (job_name, task) in [("a", "a.b-c"), ("a-b", "a-b.c")] {
        let t = eventually(WAIT, &format!("task {task}"), || async {
            e.tasks.get(task).await.ok()
        })
        .await;
        assert_eq!(t.spec.job_name, job_name);
        report(e.c, &e.ns, task, "SUCCESS");
    }
    wait_state(&e.jobs, "a", JobStatus::Success).await;
    wait_state(&e.jobs, "a-b", JobStatus::Success).await;
}

/// Issue 9, item 1: the schema refuses numbers the controller cannot use, with a clear message;
/// and a job stored before the schema said so (here: stored while the maximum is lifted) neither
/// crashes the controller nor stalls: it is reconciled with the value clamped and a Warning.
#[tokio::test(flavor = "multi_thread")]
async fn numbers_the_controller_cannot_use_are_refused_or_clamped() {
    let e = env("huge").await;
    let refused = |yaml: &str, expected: &str| assert_refused(&e, yaml, expected);
    refused(
        &job_yaml("h1", &["a"], "  timeoutSeconds: 10000000000000\n"),
        "spec.timeoutSeconds: Invalid value",
    );
    refused(
        &job_yaml("h2", &["a"], "  ttlSecondsAfterFinished: 10000000000000\n"),
        "spec.ttlSecondsAfterFinished: Invalid value",
    );

    // Lift the maxima for a moment, as an older CRD would have had them, and store such jobs.
    let crd = "crd/costanalysisjobs.cost-analysis.spaceone.dev";
    let spec_props = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties";
    let lift = format!(
        r#"[{{"op":"remove","path":"{spec_props}/timeoutSeconds/maximum"}},{{"op":"remove","path":"{spec_props}/ttlSecondsAfterFinished/maximum"}}]"#
    );
    e.c.kubectl_ok(&["patch", crd, "--type=json", "-p", &lift]);
    eventually(WAIT, "the lifted schema to take effect", || async {
        let out = e.c.apply_yaml(
            &e.ns,
            &job_yaml(
                "huge-timeout",
                &["a"],
                "  timeoutSeconds: 10000000000000\n  ttlSecondsAfterFinished: 9000000000000000000\n",
            ),
        );
        out.status.success().then_some(())
    })
    .await;
    create(
        e.c,
        &e.ns,
        &job_yaml(
            "huge-canceled",
            &["a"],
            "  timeoutSeconds: 9223372036854775807\n  ttlSecondsAfterFinished: 9223372036854775807\n  cancel: true\n",
        ),
    );
    // Put the schema back as the project ships it.
    e.c.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &support::root().join("crds").to_string_lossy(),
    ]);

    let j = eventually(WAIT, "huge-timeout reconciled", || async {
        let j = e.jobs.get("huge-timeout").await.ok()?;
        (j.status.as_ref()?.status? == JobStatus::InProgress).then_some(j)
    })
    .await;
    assert_eq!(status_of(&j).total_tasks, 1);
    wait_state(&e.jobs, "huge-canceled", JobStatus::Canceled).await;
    let events = eventually(WAIT, "TimeoutClamped and TTLClamped warnings", || async {
        let out = e.c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &e.ns,
            "--field-selector",
            "type=Warning",
            "-o",
            "jsonpath={range .items[*]}{.reason} {.regarding.name}{.involvedObject.name}{\"\\n\"}{end}",
        ]);
        (out.contains("TimeoutClamped huge-timeout") && out.contains("TTLClamped huge-canceled"))
            .then_some(out)
    })
    .await;
    assert!(events.contains("TimeoutClamped huge-canceled"), "{events}");
    // The controller lived through it: it is still the leader and still reconciles.
    let op = shared_operator();
    assert!(support::http_get(&op.metrics_addr, "/healthz").contains("200 OK"));
    let metrics = op.metrics();
    assert!(
        metrics.contains("cost_analysis_operator_panics_total{component=\"reconcile\"} 0"),
        "{metrics}"
    );
    create(e.c, &e.ns, &job_yaml("after", &[], ""));
    wait_state(&e.jobs, "after", JobStatus::Success).await;
}
