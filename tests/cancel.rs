//! The synchronous cancel through the API shim (authorized, read-your-writes, the controller
//! cancels the job's tasks) and its races with completion and with the timeout: each raced job
//! ends in exactly one terminal state and the API's answer tells the truth about which.

#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod support;

use std::process::Command;
use std::time::Duration;

use cost_analysis_operator::resources::JobStatus;
use kube::Api;
use serde_json::json;
use support::shim::{Reply, WAIT, World, d, job, rest, rest_via, shim_client, wait_listed, world};
use support::{cluster, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn cancel_is_synchronous_authorized_and_reads_its_own_write() {
    let w = world("cancel").await;
    let d1 = d(&w, 1);
    wait_listed(&w, &d1, 2).await;
    let body = json!({"domain_id": d1});
    let r = rest(
        "POST",
        "/cost-analysis/v1/job/job-a1/cancel",
        Some(&w.reader),
        Some(&body),
        &[],
    );
    assert_eq!(r.status, 403, "a reader may not cancel: {}", r.body);

    let r = rest(
        "POST",
        "/cost-analysis/v1/job/job-a1/cancel",
        Some(&w.canceler),
        Some(&body),
        &[],
    );
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("CANCELED")),
        "{}",
        r.body
    );
    assert!(r.body["finished_at"].is_string());
    // Read-your-writes: the next answer already shows it.
    let g = rest(
        "GET",
        &format!("/cost-analysis/v1/job/job-a1?domain_id={d1}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(g.body["status"], "CANCELED", "{}", g.body);
    let stored = w.jobs.get("job-a1").await.expect("job");
    assert_eq!(
        stored.status.and_then(|s| s.status),
        Some(JobStatus::Canceled)
    );

    let again = rest(
        "POST",
        "/cost-analysis/v1/job/cancel",
        Some(&w.canceler),
        Some(&json!({"job_id": "job-a1", "domain_id": d1})),
        &[],
    );
    assert_eq!(again.status, 500);
    assert_eq!(
        again.body["detail"],
        json!({"code": "ERROR_JOB_STATE", "message": " Only running jobs can be canceled. (job_state = CANCELED)"})
    );
    let done = rest(
        "POST",
        "/cost-analysis/v1/job/job-a2/cancel",
        Some(&w.canceler),
        Some(&body),
        &[],
    );
    assert_eq!(
        done.body["detail"]["message"], " Only running jobs can be canceled. (job_state = SUCCESS)",
        "{}",
        done.body
    );
    // The controller cancels the unfinished task of the canceled job.
    let tasks: Api<cost_analysis_operator::resources::CostAnalysisJobTask> =
        Api::namespaced(cluster().client().await, &w.ns);
    eventually(WAIT, "task of job-a1 CANCELED", || async {
        (tasks.get("job-a1.t").await.ok()?.state()
            == cost_analysis_operator::resources::TaskState::Canceled)
            .then_some(())
    })
    .await;
}

/// How many jobs each race test races: 12 in the suite; `RACE_JOBS=1000` for the full run
/// (docs/reliability.md).
fn race_jobs() -> usize {
    std::env::var("RACE_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// The start of both race tests: a world and [`race_jobs`] more jobs in its first domain, named
/// `{prefix}-{i}` with one task `t` and `extra_spec` appended to their spec, all indexed.
async fn race_world(world_prefix: &str, prefix: &str, extra_spec: &str) -> (World, String, usize) {
    let w = world(world_prefix).await;
    let d1 = d(&w, 1);
    let n = race_jobs();
    let yaml: String = (0..n)
        .map(|i| job(&format!("{prefix}-{i}"), &d1, &["t"]) + extra_spec)
        .collect();
    let out = cluster().apply_yaml(&w.ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_listed(&w, &d1, 2 + n as u64).await;
    (w, d1, n)
}

/// The first terminal state of job `name`.
async fn terminal(w: &World, name: &str) -> JobStatus {
    eventually(WAIT, &format!("{name} terminal"), || async {
        let s = w.jobs.get(name).await.ok()?.status?.status?;
        s.is_terminal().then_some(s)
    })
    .await
}

/// The cancel's answer tells the truth: 200 only for a job that ended CANCELED, otherwise
/// `ERROR_JOB_STATE` naming the state that won.
fn assert_answer_agrees(name: &str, answer: &Reply, final_state: JobStatus) {
    match answer.status {
        200 => assert_eq!(
            final_state,
            JobStatus::Canceled,
            "{name}: the API said CANCELED"
        ),
        500 => assert_eq!(
            answer.body["detail"]["message"],
            format!(
                " Only running jobs can be canceled. (job_state = {})",
                final_state.as_str()
            ),
            "{name}"
        ),
        other => panic!("{name}: unexpected answer {other}: {}", answer.body),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_racing_completion_ends_in_exactly_one_terminal_state() {
    let (w, d1, n) = race_world("race", "race", "").await;
    let c = cluster();
    eventually(WAIT, "all race tasks created", || async {
        let out = c.kubectl(&["get", "cajt", "-n", &w.ns, "-o", "name"]);
        (String::from_utf8_lossy(&out.stdout)
            .matches("race-")
            .count()
            == n)
            .then_some(())
    })
    .await;
    let mut outcomes = Vec::new();
    for i in 0..n {
        let name = format!("race-{i}");
        let (ns, token, d1c) = (w.ns.clone(), w.canceler.clone(), d1.clone());
        let kubeconfig = c.kubeconfig.clone();
        let kubectl = c.bin.join("kubectl");
        let task = format!("{name}.t");
        // The worker reports success while the client cancels.
        let worker = std::thread::spawn(move || {
            let now = cost_analysis_operator::timestamp::format(&chrono::Utc::now());
            let patch = format!(r#"{{"status":{{"status":"SUCCESS","finishedAt":"{now}"}}}}"#);
            Command::new(kubectl)
                .args([
                    "patch",
                    "cajt",
                    &task,
                    "-n",
                    &ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ])
                .env("KUBECONFIG", kubeconfig)
                .output()
        });
        let name2 = name.clone();
        let canceler = std::thread::spawn(move || {
            rest(
                "POST",
                &format!("/cost-analysis/v1/job/{name2}/cancel"),
                Some(&token),
                Some(&json!({"domain_id": d1c})),
                &[],
            )
        });
        let _ = worker.join();
        let answer = canceler.join().expect("cancel thread");
        outcomes.push((name, answer));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (name, answer) in outcomes {
        let final_state = terminal(&w, &name).await;
        // Settled: it never changes again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = w.jobs.get(&name).await.ok().and_then(|j| j.status?.status);
        assert_eq!(later, Some(final_state), "{name} changed after settling");
        if answer.status == 200 {
            assert_eq!(answer.body["status"], "CANCELED");
        }
        assert_answer_agrees(&name, &answer, final_state);
        assert!(
            matches!(final_state, JobStatus::Canceled | JobStatus::Success),
            "{name}: {final_state:?}"
        );
        *seen
            .entry((final_state.as_str(), answer.status))
            .or_insert(0) += 1;
    }
    println!("cancel against completion, {n} jobs (final state, cancel answer): {seen:?}");
}

/// Issue 10: a cancel racing the timeout. Jobs with a 1 s timeout are canceled around their
/// deadline (plus the 1 s clock-skew allowance): each ends CANCELED or TIMEOUT, never changes
/// again, and the API's answer tells the truth about which.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_racing_timeout_ends_in_exactly_one_terminal_state() {
    // 1 s in the suite; longer for many jobs, so that every job is created and indexed before its
    // own deadline (otherwise most of them time out before any cancel is sent, and race nothing).
    let timeout = 1 + race_jobs() / 50;
    let (w, d1, n) = race_world("tmrace", "tm", &format!("  timeoutSeconds: {timeout}\n")).await;
    // Cancels spread over the moment each job's timeout fires (created + timeout + 1 s
    // allowance).
    let created: std::collections::HashMap<String, i64> = w
        .jobs
        .list(&Default::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter_map(|j| {
            let at = j.metadata.creation_timestamp.as_ref()?.0.as_millisecond();
            Some((j.metadata.name?, at))
        })
        .collect();
    // One in-process client (a connection pool, as a SpaceONE client has): a curl process per
    // cancel, a thousand of them within a few seconds, starved a 2-core machine (no answer in 20 s).
    let client = shim_client(&w.canceler);
    let mut handles = Vec::new();
    for i in 0..n {
        let (client, d1c) = (client.clone(), d1.clone());
        let fire = created[&format!("tm-{i}")] + (timeout as i64 + 1) * 1_000;
        let at = fire - 600 + i64::try_from(i % 12).unwrap_or(0) * 100;
        handles.push(tokio::spawn(async move {
            let now = chrono::Utc::now().timestamp_millis();
            if at > now {
                tokio::time::sleep(Duration::from_millis((at - now) as u64)).await;
            }
            let answer = rest_via(
                &client,
                "POST",
                &format!("/cost-analysis/v1/job/tm-{i}/cancel"),
                &json!({"domain_id": d1c}),
            )
            .await;
            (format!("tm-{i}"), answer)
        }));
    }
    let mut seen = std::collections::BTreeMap::new();
    let mut finals = Vec::new();
    for h in handles {
        let (name, answer) = h.await.expect("cancel task");
        let final_state = terminal(&w, &name).await;
        assert_answer_agrees(&name, &answer, final_state);
        assert!(
            matches!(final_state, JobStatus::Canceled | JobStatus::Timeout),
            "{name}: {final_state:?}"
        );
        *seen.entry(final_state.as_str()).or_insert(0) += 1;
        finals.push((name, final_state));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, state) in finals {
        let later = w.jobs.get(&name).await.ok().and_then(|j| j.status?.status);
        assert_eq!(later, Some(state), "{name} changed after settling");
    }
    println!("cancel against timeout, {n} jobs: {seen:?}");
}
