//! SpaceONE's JobTask API (issue 19) against the real control plane, through the API shim: the
//! tasks the controller creates are served on REST (every path of the seed and the later POST
//! forms) with the Job API's per-domain authorization, SpaceONE's errors, and answers equal to
//! the offline `query --tasks` command's over `kubectl get cajt -o json`.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::shim::{WAIT, d, rest, world};
use support::{cluster, eventually};

/// The offline command's answer to `request` over `tasks` (a `kubectl get cajt -o json` list).
fn offline(verb: &str, tasks: &str, request: &Value) -> (Value, i32) {
    let dir = cluster()
        .dir
        .join(format!("jobtask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tasks.json");
    std::fs::write(&file, tasks).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .args(["query", verb, "--tasks"])
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        out.status.code().unwrap_or(-1),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_serves_the_tasks_of_jobs_like_spaceone() {
    let w = world("jobtask").await;
    let c = cluster();
    let (d1, d2) = (d(&w, 1), d(&w, 2));
    // job-a1 (domain 1) has one task, "t"; the controller creates its object.
    let task = "job-a1.t";
    let listed = eventually(WAIT, "the task in the catalog", || {
        let (token, d1) = (w.reader.clone(), d1.clone());
        async move {
            let r = rest(
                "GET",
                &format!("/cost-analysis/v1/job-tasks?domain_id={d1}"),
                Some(&token),
                None,
                &[],
            );
            (r.body["total_count"] == 1).then_some(r.body)
        }
    })
    .await;
    let info = &listed["results"][0];
    assert_eq!(info["job_task_id"], task, "{listed}");
    assert_eq!(info["status"], "PENDING");
    assert_eq!(info["job_id"], "job-a1");
    assert_eq!(info["domain_id"], d1.as_str());
    assert_eq!(info["options"], json!({}));
    // created_at to the millisecond, as SpaceONE prints it.
    let created = info["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2024-01-01T00:00:00.000Z".len(), "{created}");
    assert!(info.get("error_code").is_none() && info.get("finished_at").is_none());

    // Every path of the seed and the later POST forms give the same task.
    let get = rest(
        "GET",
        &format!("/cost-analysis/v1/job-task/{task}?domain_id={d1}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(get.status, 200, "{}", get.body);
    assert_eq!(&get.body, info);
    let post_get = rest(
        "POST",
        "/cost-analysis/v1/job-task/get",
        Some(&w.reader),
        Some(&json!({"job_task_id": task, "domain_id": d1})),
        &[],
    );
    assert_eq!(&post_get.body, info);
    for path in [
        "/cost-analysis/v1/job-tasks/search",
        "/cost-analysis/v1/job-task/list",
    ] {
        let r = rest(
            "POST",
            path,
            Some(&w.reader),
            Some(&json!({"domain_id": d1, "job_id": "job-a1"})),
            &[],
        );
        assert_eq!(r.body, listed, "{path}");
    }
    let other_job = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/search",
        Some(&w.reader),
        Some(&json!({"domain_id": d1, "job_id": "job-a2"})),
        &[],
    );
    assert_eq!(other_job.body["total_count"], 0, "{}", other_job.body);
    let minimal = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/search",
        Some(&w.reader),
        Some(&json!({"domain_id": d1, "query": {"minimal": true}})),
        &[],
    );
    let mut keys: Vec<_> = minimal.body["results"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["data_source_id", "job_id", "job_task_id", "status"],
        "{}",
        minimal.body
    );

    // Authorization as for jobs: another domain's reader learns nothing, not even existence.
    let denied = rest(
        "GET",
        &format!("/cost-analysis/v1/job-task/{task}?domain_id={d2}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(denied.body["detail"]["code"], "ERROR_PERMISSION_DENIED");
    let nobody = rest(
        "GET",
        &format!("/cost-analysis/v1/job-tasks?domain_id={d1}"),
        Some(&w.nobody),
        None,
        &[],
    );
    assert_eq!(nobody.status, 403, "{}", nobody.body);
    let anonymous = rest(
        "GET",
        &format!("/cost-analysis/v1/job-tasks?domain_id={d1}"),
        None,
        None,
        &[],
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    // SpaceONE's errors: required parameters, an unknown task.
    let missing = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/search",
        Some(&w.reader),
        Some(&json!({})),
        &[],
    );
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert_eq!(missing.body["detail"]["code"], "ERROR_REQUIRED_PARAMETER");
    let unknown = rest(
        "GET",
        &format!("/cost-analysis/v1/job-task/no-such-task?domain_id={d1}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(
        unknown.body["detail"]["code"], "ERROR_NOT_FOUND",
        "{}",
        unknown.body
    );
    let message = unknown.body["detail"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("job_task_id") && message.contains("no-such-task"),
        "{message}"
    );

    // A worker fails it: the task says why, and the job names it.
    c.kubectl_ok(&[
        "patch",
        "cajt",
        task,
        "-n",
        &w.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"status":"FAILURE","errorCode":"ERROR_PLUGIN","errorMessage":"the plugin timed out"}}"#,
    ]);
    let failed = eventually(WAIT, "the task FAILURE in the catalog", || {
        let (token, d1) = (w.reader.clone(), d1.clone());
        async move {
            let r = rest(
                "POST",
                "/cost-analysis/v1/job-tasks/search",
                Some(&token),
                Some(&json!({"domain_id": d1, "status": "FAILURE"})),
                &[],
            );
            (r.body["total_count"] == 1).then_some(r.body)
        }
    })
    .await;
    assert_eq!(failed["results"][0]["error_code"], "ERROR_PLUGIN");
    assert_eq!(
        failed["results"][0]["error_message"],
        "the plugin timed out"
    );

    // stat: counts by status.
    let stat_request = json!({"domain_id": d1, "query": {"aggregate": [{"group": {
        "keys": [{"key": "status", "name": "status"}],
        "fields": [{"operator": "count", "name": "n"}]}}]}});
    let stat = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/stat",
        Some(&w.reader),
        Some(&stat_request),
        &[],
    );
    assert_eq!(stat.status, 200, "{}", stat.body);
    // A Struct holds doubles.
    assert_eq!(
        stat.body["results"],
        json!([{"status": "FAILURE", "n": 1.0}])
    );
    let post_stat = rest(
        "POST",
        "/cost-analysis/v1/job-task/stat",
        Some(&w.reader),
        Some(&stat_request),
        &[],
    );
    assert_eq!(post_stat.body, stat.body);

    // The offline command answers the same over what kubectl lists.
    let tasks = c.kubectl_ok(&["get", "cajt", "-n", &w.ns, "-o", "json"]);
    let list_request = json!({"domain_id": d1});
    let now = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/search",
        Some(&w.reader),
        Some(&list_request),
        &[],
    );
    assert_eq!(offline("list", &tasks, &list_request), (now.body, 0));
    assert_eq!(offline("stat", &tasks, &stat_request), (stat.body, 0));
    let (refused, code) = offline(
        "get",
        &tasks,
        &json!({"job_task_id": "nope", "domain_id": d1}),
    );
    assert_ne!(code, 0);
    assert_eq!(refused["error"]["code"], "ERROR_NOT_FOUND", "{refused}");
}
