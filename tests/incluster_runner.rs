//! The task runner on a real node (issue 23): the operator image and a small task image (Debian's
//! static busybox, `FROM scratch`, `hack/task-image.sh`) imported into the node's containerd, the
//! chart installed with `taskRunner.enabled` for one namespace and its admission policy on, then:
//! templated tasks that exit 0 make their job SUCCESS (mixed with a task an external worker
//! reports); a task that always exits 1 with `backoffLimit: 2` runs 3 pods and fails the job with
//! its termination message in the task's error and the job's events; a job canceled while its task
//! sleeps leaves no pod within seconds; a job whose deadline passes while a task runs ends TIMEOUT
//! with the pod gone; the leader killed while batch Jobs run creates none twice; the admission
//! policy refuses a privileged template with a clear message. Also measured: job start latency
//! (CostAnalysisJob created -> its first pod Running) beside a plain batch/v1 Job.
//!
//! Needs a node cluster (`hack/cluster.sh up --node DIR`, `COST_ANALYSIS_NODE_CLUSTER_DIR=DIR`) and
//! the operator image archive (`hack/image.sh`); without the variable the test says so and passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::node::{Node, ok, step};
use support::root;

const NS: &str = "cao-runner-system";
const RELEASE: &str = "cao-runner";
const TASK_NS: &str = "runner-test";
const TASK_IMAGE: &str = "cao-task:1";

/// What the runner's tests read: objects of the task namespace, as JSON.
trait Reads {
    fn json(&self, args: &[&str]) -> Value;
    fn items(&self, args: &[&str]) -> Vec<Value>;
}

impl Reads for Node {
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-n", TASK_NS, "get"];
        a.extend(args);
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok("kubectl", &a)).expect("json")
    }

    fn items(&self, args: &[&str]) -> Vec<Value> {
        self.json(args)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pod_template(script: &str) -> Value {
    json!({"spec": {
        "containers": [{"name": "main", "image": TASK_IMAGE, "command": ["/bin/sh", "-c", script],
                        "securityContext": {"allowPrivilegeEscalation": false,
                                            "capabilities": {"drop": ["ALL"]}}}],
    }})
}

fn create_job(n: &Node, name: &str, tasks: Value, extra: Value) {
    let mut spec = json!({"domainId": "d1", "dataSourceId": "ds1", "tasks": tasks,
                          "options": {"sync_mode": "full"}});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let job = json!({"apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
                     "metadata": {"name": name, "namespace": TASK_NS}, "spec": spec});
    ok(
        n.kubectl_stdin(&["create", "-f", "-"], &job.to_string()),
        &format!("create job {name}"),
    );
}

fn job_status(n: &Node, name: &str) -> String {
    n.json(&["caj", name])["status"]["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn wait_job(n: &Node, name: &str, want: &str, timeout: Duration) {
    wait_until(timeout, &format!("job {name} {want}"), || {
        let s = job_status(n, name);
        assert!(
            s == want || s.is_empty() || s == "IN_PROGRESS",
            "job {name} ended {s}, wanted {want}"
        );
        (s == want).then_some(())
    });
}

/// Pods of the batch Job `batch` (by the label the Job controller puts on them).
fn pods_of(n: &Node, batch: &str) -> Vec<Value> {
    n.items(&[
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={batch}"),
    ])
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
}

#[test]
fn templated_tasks_run_as_batch_jobs_on_a_real_node() {
    let Some(n) = Node::from_env() else {
        eprintln!("skipped: COST_ANALYSIS_NODE_CLUSTER_DIR is not set (hack/cluster.sh up --node)");
        return;
    };
    let t0 = Instant::now();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));

    // The images, offline.
    let operator_archive = target.join("image/cost-analysis-operator.tar");
    assert!(
        operator_archive.exists(),
        "{} missing: run hack/image.sh",
        operator_archive.display()
    );
    let task_image = n.ok("bash", &["hack/task-image.sh"]);
    let task_archive = task_image
        .lines()
        .find_map(|l| l.strip_prefix("ARCHIVE="))
        .expect("ARCHIVE=")
        .trim_matches('\'')
        .to_string();
    for archive in [
        operator_archive.to_string_lossy().into_owned(),
        task_archive,
    ] {
        n.ok("ctr", &["-n", "k8s.io", "images", "import", &archive]);
    }
    step("runner", t0, "images imported");

    // The chart, with the runner on for one namespace and the admission policy.
    let _ = n.run("kubectl", &["create", "namespace", TASK_NS]);
    n.ok(
        "helm",
        &[
            "upgrade",
            "--install",
            RELEASE,
            "charts/cost-analysis-operator",
            "-n",
            NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
            "--set",
            "mode=combined,controller.replicas=2,apiService.enabled=false",
            "--set",
            &format!("taskRunner.enabled=true,taskRunner.namespaces={{{TASK_NS}}}"),
            "--set",
            "taskRunner.admissionPolicy.enabled=true",
            "--set-json",
            r#"taskRunner.admissionPolicy.allowedImagePrefixes=["cao-task:"]"#,
        ],
    );
    step("runner", t0, "chart installed with taskRunner.enabled");

    // The admission policy refuses a privileged template, with a message that says why.
    let mut privileged = pod_template("exit 0");
    privileged["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    let job = json!({"apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
        "metadata": {"name": "privileged", "namespace": TASK_NS},
        "spec": {"domainId": "d1", "dataSourceId": "ds1",
                 "tasks": [{"id": "t1", "template": privileged}]}});
    let refused = n.kubectl_stdin(&["create", "-f", "-"], &job.to_string());
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        !refused.status.success(),
        "a privileged template was admitted"
    );
    assert!(
        said.contains("task templates may not run privileged containers"),
        "{said}"
    );
    let mut elsewhere = pod_template("exit 0");
    elsewhere["spec"]["containers"][0]["image"] = json!("registry.example/other:1");
    let job = json!({"apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
        "metadata": {"name": "other-image", "namespace": TASK_NS},
        "spec": {"domainId": "d1", "dataSourceId": "ds1",
                 "tasks": [{"id": "t1", "template": elsewhere}]}});
    let refused = n.kubectl_stdin(&["create", "-f", "-"], &job.to_string());
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        said.contains("may only use images starting with cao-task:"),
        "{said}"
    );
    step(
        "runner",
        t0,
        "admission policy refuses a privileged template and a foreign image",
    );

    // Success, mixed with a task an external worker reports; the task sees its identity.
    let check = r#"test "$SPACEONE_JOB_ID" = ok-job && test "$SPACEONE_JOB_TASK_ID" = t1 \
        && test "$SPACEONE_DOMAIN_ID" = d1 && test "$SPACEONE_DATA_SOURCE_ID" = ds1 \
        && test "$SPACEONE_TASK_OPTIONS" = '{"start":"2026-01"}' && echo ok"#;
    create_job(
        &n,
        "ok-job",
        json!([{"id": "t1", "options": {"start": "2026-01"}, "template": pod_template(check)},
               {"id": "t2", "template": pod_template("exit 0")},
               {"id": "t3"}]),
        json!({"timeoutSeconds": 300}),
    );
    wait_until(
        Duration::from_secs(120),
        "ok-job's templated tasks SUCCESS",
        || {
            let tasks = n.items(&["cajt", "-l", "cost-analysis.spaceone.dev/job=ok-job"]);
            let done = tasks
                .iter()
                .filter(|t| {
                    t["status"]["status"] == "SUCCESS" && t["status"]["startedAt"].is_string()
                })
                .count();
            (done == 2).then_some(())
        },
    );
    assert_eq!(
        job_status(&n, "ok-job"),
        "IN_PROGRESS",
        "the plain task still waits"
    );
    n.ok(
        "kubectl",
        &[
            "-n",
            TASK_NS,
            "patch",
            "cajt",
            "ok-job.t3",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"status":"SUCCESS","finishedAt":"2026-01-01T00:00:00.000Z"}}"#,
        ],
    );
    wait_job(&n, "ok-job", "SUCCESS", Duration::from_secs(30));
    step(
        "runner",
        t0,
        "tasks exiting 0 (and a worker-reported one) made the job SUCCESS",
    );

    // Failure with retries: 3 pods, the termination message in the task's error and the events.
    create_job(
        &n,
        "fail-job",
        json!([{"id": "t1", "backoffLimit": 2,
                "template": pod_template("echo \"boom from $SPACEONE_JOB_TASK_ID\" >/dev/termination-log; exit 1")}]),
        json!({"timeoutSeconds": 300}),
    );
    wait_job(&n, "fail-job", "FAILURE", Duration::from_secs(180));
    let pods = pods_of(&n, "fail-job.t1");
    assert_eq!(pods.len(), 3, "backoffLimit 2 runs 3 pods");
    let task = n.json(&["cajt", "fail-job.t1"]);
    assert_eq!(task["status"]["status"], "FAILURE");
    assert_eq!(task["status"]["errorCode"], "ERROR_TASK_POD");
    let message = task["status"]["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("boom from t1"), "{message}");
    let events = n.ok(
        "kubectl",
        &[
            "-n",
            TASK_NS,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=fail-job",
            "-o",
            "json",
        ],
    );
    assert!(
        events.contains("TaskFailed") && events.contains("boom from t1"),
        "{events}"
    );
    step(
        "runner",
        t0,
        "a task exiting 1 with backoffLimit 2 ran 3 pods and failed the job with its message",
    );

    // Cancel while the task sleeps: the pod is gone within seconds.
    let sleeper = "trap 'exit 143' TERM; sleep 300 & wait";
    create_job(
        &n,
        "cancel-job",
        json!([{"id": "t1", "template": pod_template(sleeper)}]),
        json!({"timeoutSeconds": 300}),
    );
    wait_until(Duration::from_secs(60), "cancel-job's pod Running", || {
        pods_of(&n, "cancel-job.t1")
            .iter()
            .any(running)
            .then_some(())
    });
    let canceled_at = Instant::now();
    n.ok(
        "kubectl",
        &[
            "-n",
            TASK_NS,
            "patch",
            "caj",
            "cancel-job",
            "--type=merge",
            "-p",
            r#"{"spec":{"cancel":true}}"#,
        ],
    );
    wait_until(Duration::from_secs(20), "cancel-job's pod gone", || {
        pods_of(&n, "cancel-job.t1").is_empty().then_some(())
    });
    let cancel_cleanup = canceled_at.elapsed();
    assert_eq!(job_status(&n, "cancel-job"), "CANCELED");
    assert_eq!(
        n.json(&["cajt", "cancel-job.t1"])["status"]["status"],
        "CANCELED"
    );
    assert!(
        n.run("kubectl", &["-n", TASK_NS, "get", "job", "cancel-job.t1"])
            .status
            .code()
            != Some(0)
    );
    step(
        "runner",
        t0,
        &format!("a canceled job left no pod after {cancel_cleanup:?}"),
    );

    // Timeout while the task runs: TIMEOUT, the pod gone; the Job's deadline was the job's + margin.
    create_job(
        &n,
        "timeout-job",
        json!([{"id": "t1", "template": pod_template(sleeper)}]),
        json!({"timeoutSeconds": 20}),
    );
    let batch = wait_until(Duration::from_secs(30), "timeout-job's batch Job", || {
        n.items(&["jobs.batch"])
            .into_iter()
            .find(|j| j["metadata"]["name"] == "timeout-job.t1")
    });
    let deadline = batch["spec"]["activeDeadlineSeconds"].as_i64().unwrap();
    assert!(
        (30..=51).contains(&deadline),
        "activeDeadlineSeconds {deadline}"
    );
    wait_job(&n, "timeout-job", "TIMEOUT", Duration::from_secs(60));
    let timed_out_at = Instant::now();
    wait_until(Duration::from_secs(20), "timeout-job's pod gone", || {
        pods_of(&n, "timeout-job.t1").is_empty().then_some(())
    });
    step(
        "runner",
        t0,
        &format!(
            "a timed-out job left no pod after {:?}",
            timed_out_at.elapsed()
        ),
    );

    // The leader killed while batch Jobs run: none is created twice (one uid per name throughout).
    let tasks: Vec<Value> = (1..=5)
        .map(|i| json!({"id": format!("t{i}"), "template": pod_template("sleep 8")}))
        .collect();
    create_job(
        &n,
        "failover-job",
        Value::Array(tasks),
        json!({"timeoutSeconds": 300}),
    );
    let mut uids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut killed = false;
    wait_until(Duration::from_secs(180), "failover-job SUCCESS", || {
        for j in n.items(&["jobs.batch"]) {
            let name = j["metadata"]["name"].as_str().unwrap_or("").to_string();
            if name.starts_with("failover-job.") {
                uids.entry(name)
                    .or_default()
                    .insert(j["metadata"]["uid"].as_str().unwrap_or("").into());
            }
        }
        if !killed && !uids.is_empty() {
            let holder = n.ok(
                "kubectl",
                &[
                    "-n",
                    NS,
                    "get",
                    "lease",
                    &format!("{RELEASE}-cost-analysis-operator-controller"),
                    "-o",
                    "jsonpath={.spec.holderIdentity}",
                ],
            );
            if !holder.trim().is_empty() {
                n.ok(
                    "kubectl",
                    &[
                        "-n",
                        NS,
                        "delete",
                        "pod",
                        holder.trim(),
                        "--grace-period=0",
                        "--force",
                    ],
                );
                killed = true;
            }
        }
        (job_status(&n, "failover-job") == "SUCCESS").then_some(())
    });
    assert!(killed, "the leader was never killed");
    assert_eq!(uids.len(), 5, "{uids:?}");
    assert!(
        uids.values().all(|u| u.len() == 1),
        "a batch Job was created twice: {uids:?}"
    );
    let pods = n.items(&["pods", "-l", "cost-analysis.spaceone.dev/job=failover-job"]);
    assert_eq!(pods.len(), 5, "one pod per task");
    step(
        "runner",
        t0,
        "the leader killed while 5 batch Jobs ran: each created once, the job SUCCESS",
    );

    // Start latency: job created -> first pod Running, beside a plain batch/v1 Job.
    let mut figures = Vec::new();
    for i in 0..3 {
        let name = format!("latency-{i}");
        let started = Instant::now();
        create_job(
            &n,
            &name,
            json!([{"id": "t1", "template": pod_template("sleep 2")}]),
            json!({"timeoutSeconds": 120}),
        );
        wait_until(Duration::from_secs(60), "latency pod Running", || {
            pods_of(&n, &format!("{name}.t1"))
                .iter()
                .any(running)
                .then_some(())
        });
        let via_operator = started.elapsed();
        let plain = format!("plain-{i}");
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": plain, "namespace": TASK_NS},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": TASK_IMAGE, "command": ["/bin/sh", "-c", "sleep 2"]}]}}}});
        let started = Instant::now();
        ok(
            n.kubectl_stdin(&["create", "-f", "-"], &job.to_string()),
            "create plain Job",
        );
        wait_until(Duration::from_secs(60), "plain pod Running", || {
            pods_of(&n, &plain).iter().any(running).then_some(())
        });
        figures.push((via_operator, started.elapsed()));
    }
    for (op, plain) in &figures {
        eprintln!("[runner] start latency: CostAnalysisJob {op:?}, plain batch Job {plain:?}");
    }
    step("runner", t0, "start latency measured");

    let logs = n.ok(
        "kubectl",
        &[
            "-n",
            NS,
            "logs",
            "-l",
            "app.kubernetes.io/instance=cao-runner",
            "--tail=-1",
            "--prefix",
        ],
    );
    assert!(
        !logs.contains("forbidden"),
        "a 403 in the operator's logs:\n{logs}"
    );
    n.ok("kubectl", &["delete", "namespace", TASK_NS, "--wait=false"]);
    n.ok("helm", &["uninstall", RELEASE, "-n", NS, "--wait"]);
    step("runner", t0, "uninstalled");
}
