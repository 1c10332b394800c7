//! SpaceONE's JobTask on the aggregated API (issue 19) through the real kube-aggregator, driven
//! with kubectl: `jobtasks` tables and objects, label and field selectors and `?query=`, pages,
//! a `jobtaskstats` create, the group's OpenAPI for `kubectl explain`, a forbidden caller, and
//! answers equal to the REST API's.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::shim::{WAIT, d, rest, urlencode, world};
use support::{cluster, eventually};

const TASKS: &str = "jobtasks.query.cost-analysis.spaceone.dev";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_reads_jobtasks_and_creates_jobtaskstats_like_rest_answers() {
    let w = world("aggtask").await;
    let c = cluster();
    let d1 = d(&w, 1);
    let task = "job-a1.t";
    let base = format!(
        "/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{}/jobtasks",
        w.ns
    );
    let raw = |path: &str| -> Value {
        serde_json::from_str(&c.kubectl_ok(&["get", "--raw", path])).unwrap()
    };
    // The controller creates job-a1's task; the catalog sees it.
    eventually(WAIT, "the task in the aggregated list", || {
        let listed = raw(&base);
        async move { (listed["items"].as_array().map(Vec::len) == Some(1)).then_some(()) }
    })
    .await;

    // A worker fails it, so that every column has something to show.
    c.kubectl_ok(&[
        "patch",
        "cajt",
        task,
        "-n",
        &w.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"status":"FAILURE","createdCount":3,"errorCode":"ERROR_PLUGIN","errorMessage":"the plugin timed out"}}"#,
    ]);
    eventually(WAIT, "the FAILURE on the aggregated API", || {
        let one = raw(&format!("{base}/{task}"));
        async move { (one["jobTask"]["status"] == "FAILURE").then_some(()) }
    })
    .await;

    // The Table: JOB, STATUS, CREATED (cost rows), ERROR, AGE.
    let table = c.kubectl_ok(&["get", TASKS, "-A"]);
    let header = table.lines().next().unwrap_or_default().to_string();
    for col in [
        "NAMESPACE",
        "NAME",
        "JOB",
        "STATUS",
        "CREATED",
        "ERROR",
        "AGE",
    ] {
        assert!(header.contains(col), "{col} missing: {header}");
    }
    let row = table
        .lines()
        .find(|l| l.contains(task) && l.contains(&w.ns))
        .unwrap_or_else(|| panic!("{task} missing:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..6],
        [
            w.ns.as_str(),
            task,
            "job-a1",
            "FAILURE",
            "3",
            "ERROR_PLUGIN"
        ],
        "{table}"
    );
    let named = c.kubectl_ok(&["get", TASKS, task, "-n", &w.ns]);
    assert!(named.contains("ERROR_PLUGIN"), "{named}");

    // The object: metadata, and the JobTaskInfo exactly as REST renders it.
    let one: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", TASKS, task, "-n", &w.ns, "-o", "json"]))
            .unwrap();
    assert_eq!(one["kind"], "JobTask", "{one}");
    assert_eq!(one["apiVersion"], "query.cost-analysis.spaceone.dev/v1");
    assert_eq!(one["metadata"]["name"], task);
    assert_eq!(one["metadata"]["namespace"], w.ns.as_str());
    assert_eq!(
        one["metadata"]["labels"]["cost-analysis.spaceone.dev/job"],
        "job-a1"
    );
    assert!(one["metadata"]["creationTimestamp"].is_string(), "{one}");
    let rest_get = rest(
        "GET",
        &format!("/cost-analysis/v1/job-task/{task}?domain_id={d1}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(rest_get.status, 200, "{}", rest_get.body);
    assert_eq!(one["jobTask"], rest_get.body);
    let rest_list = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/search",
        Some(&w.reader),
        Some(&json!({"domain_id": d1})),
        &[],
    );
    let list = raw(&base);
    assert_eq!(list["kind"], "JobTaskList", "{list}");
    let infos: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["jobTask"].clone())
        .collect();
    assert_eq!(Value::from(infos), rest_list.body["results"]);

    // Selection: labels, the CRD's selectable fields (the same answer as on cajt), `?query=`.
    let names = |args: &[&str]| {
        let mut all = vec!["get", TASKS, "-n", &w.ns, "-o", "name"];
        all.extend_from_slice(args);
        let out = c.kubectl_ok(&all);
        out.lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&["-l", "cost-analysis.spaceone.dev/job=job-a1"]),
        [task]
    );
    assert!(names(&["-l", "cost-analysis.spaceone.dev/job=job-a2"]).is_empty());
    for (selector, expected) in [
        ("status.status=FAILURE", vec![task]),
        ("status.status=PENDING", vec![]),
        ("spec.jobName=job-a1,status.status!=SUCCESS", vec![task]),
        ("metadata.name=job-a1.t", vec![task]),
        ("spec.jobName=job-a2", vec![]),
    ] {
        let via_crd = c.kubectl_ok(&[
            "get",
            "cajt",
            "-n",
            &w.ns,
            "--field-selector",
            selector,
            "-o",
            "name",
        ]);
        assert_eq!(via_crd.lines().count(), expected.len(), "{selector}");
        assert_eq!(
            names(&["--field-selector", selector]),
            expected,
            "{selector}"
        );
    }
    let refused = c.kubectl(&[
        "get",
        TASKS,
        "-n",
        &w.ns,
        "--field-selector",
        "spec.domainId=x",
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("field label not supported: spec.domainId"),
        "{err}"
    );
    for (query, n) in [
        (
            r#"{"filter":[{"k":"error_code","v":"ERROR_PLUGIN","o":"eq"}]}"#,
            1,
        ),
        (r#"{"filter":[{"k":"status","v":"SUCCESS","o":"eq"}]}"#, 0),
        (r#"{"filter":[{"k":"created_count","v":3,"o":"gte"}]}"#, 1),
    ] {
        let selected = raw(&format!("{base}?query={}", urlencode(query)));
        assert_eq!(
            selected["items"].as_array().map(Vec::len),
            Some(n),
            "{query}: {selected}"
        );
    }
    let bad = c.kubectl(&[
        "get",
        "--raw",
        &format!(
            "{base}?query={}",
            urlencode(r#"{"filter":[{"k":"nope","v":1,"o":"eq"}]}"#)
        ),
    ]);
    assert!(!bad.status.success());
    // A page of one, with nothing after it.
    let page = raw(&format!("{base}?limit=1"));
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(page["metadata"].get("continue").is_none(), "{page}");

    // jobtaskstats: counts by status, the REST stat's answer.
    let query = json!({"aggregate": [{"group": {
        "keys": [{"key": "status", "name": "status"}],
        "fields": [{"operator": "count", "name": "n"}]}}]});
    let stat = json!({
        "apiVersion": "query.cost-analysis.spaceone.dev/v1", "kind": "JobTaskStat",
        "metadata": {"name": "by-status"},
        "spec": {"query": query, "domainId": d1},
    });
    let out = c.kubectl_stdin(
        &["create", "-n", &w.ns, "-f", "-", "-o", "json"],
        &stat.to_string(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["kind"], "JobTaskStat", "{created}");
    let rest_stat = rest(
        "POST",
        "/cost-analysis/v1/job-tasks/stat",
        Some(&w.reader),
        Some(&json!({"domain_id": d1, "query": query})),
        &[],
    );
    assert_eq!(rest_stat.status, 200, "{}", rest_stat.body);
    let as_numbers = |v: &Value| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["status"].clone(), r["n"].as_f64()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        as_numbers(&created["status"]),
        [(json!("FAILURE"), Some(1.0))],
        "{created}"
    );
    assert_eq!(as_numbers(&created["status"]), as_numbers(&rest_stat.body));

    // A caller without RBAC on jobtasks gets a Kubernetes Status 403.
    let env = std::fs::read_to_string(c.dir.join("env")).unwrap_or_default();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let as_nobody = |args: &[&str]| {
        Command::new(c.bin.join("kubectl"))
            .args(["--kubeconfig=/dev/null", "--server", &var("API_SERVER")])
            .args([
                "--certificate-authority",
                &format!("{}/ca.crt", var("PKI")),
                "--token",
                &w.nobody,
            ])
            .args(args)
            .output()
            .expect("kubectl")
    };
    for (args, verb) in [
        (vec!["get", TASKS, "-n", &w.ns], "list"),
        (vec!["get", TASKS, task, "-n", &w.ns], "get"),
    ] {
        let out = as_nobody(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("(Forbidden)")
                && err.contains(&format!("cannot {verb} resource \"jobtasks\"")),
            "{err}"
        );
    }
    let out = as_nobody(&["get", "--raw", &base, "-v=6"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("403"), "{err}");
}

/// The group's OpenAPI reaches kubectl through the aggregator: `kubectl explain` describes a
/// JobTask's JobTaskInfo field by field, and the JobTaskStat's spec.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_explains_jobtasks_and_jobtaskstats() {
    let _w = world("explaintask").await;
    let c = cluster();
    let explained = c.kubectl_ok(&["explain", &format!("{TASKS}.jobTask")]);
    for field in [
        "job_task_id",
        "status",
        "job_id",
        "error_code",
        "error_message",
        "started_at",
        "finished_at",
    ] {
        assert!(explained.contains(field), "{field} in:\n{explained}");
    }
    assert!(!explained.contains("created_count"), "{explained}");
    let kind = c.kubectl_ok(&["explain", TASKS]);
    assert!(kind.contains("JobTask"), "{kind}");
    let stat = c.kubectl_ok(&[
        "explain",
        "jobtaskstats.query.cost-analysis.spaceone.dev.spec",
    ]);
    assert!(
        stat.contains("query") && stat.contains("domainId"),
        "{stat}"
    );
    let resources = c.kubectl_ok(&[
        "api-resources",
        "--api-group",
        "query.cost-analysis.spaceone.dev",
        "-o",
        "name",
    ]);
    for r in ["jobtasks", "jobtaskstats", "jobs", "jobstats"] {
        assert!(
            resources
                .lines()
                .any(|l| l == format!("{r}.query.cost-analysis.spaceone.dev")),
            "{r} in:\n{resources}"
        );
    }
}

/// The shim itself authorizes every `jobtasks`/`jobtaskstats` request with a SubjectAccessReview
/// (a direct caller, not only the aggregator, is refused with a Kubernetes Status 403), and a
/// JobTaskStat's answer is counted in the answer budget like a JobStat's.
#[tokio::test(flavor = "multi_thread")]
async fn the_shim_authorizes_jobtasks_itself_and_budgets_their_answers() {
    let w = world("aggtask-authz").await;
    let c = cluster();
    let base = format!(
        "/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{}",
        w.ns
    );
    let (list, one, stats) = (
        format!("{base}/jobtasks"),
        format!("{base}/jobtasks/job-a1.t"),
        format!("{base}/jobtaskstats"),
    );
    let stat = |filler: usize| {
        json!({
            "apiVersion": "query.cost-analysis.spaceone.dev/v1",
            "kind": "JobTaskStat",
            "metadata": {"name": "big", "annotations": {"filler": "x".repeat(filler)}},
            "spec": {"query": {"aggregate": [{"count": {"name": "n"}}]}},
        })
    };
    // The reader may read domain 1 through SpaceONE, but nothing of the aggregated group.
    for (method, path, verb, resource) in [
        ("GET", &list, "list", "jobtasks"),
        ("GET", &one, "get", "jobtasks"),
        ("POST", &stats, "create", "jobtaskstats"),
    ] {
        let body = (method == "POST").then(|| stat(0));
        let r = rest(method, path, Some(&w.reader), body.as_ref(), &[]);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.body["kind"], "Status", "{}", r.body);
        assert_eq!(r.body["reason"], "Forbidden", "{}", r.body);
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("cannot {verb} resource \"{resource}\"")),
            "{message}"
        );
    }

    // Granted in the namespace, the canceler reads them.
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: tasks, namespace: {ns}}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [jobtasks]\n  verbs: [get, list]\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [jobtaskstats]\n  verbs: [create]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tasks, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: tasks}}\nsubjects: [{{kind: ServiceAccount, name: canceler, namespace: {ns}}}]\n",
        ns = w.ns
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = eventually(WAIT, "the canceler to list the task", || {
        let (token, list) = (w.canceler.clone(), list.clone());
        async move {
            let r = rest("GET", &list, Some(&token), None, &[]);
            (r.status == 200 && r.body["items"].as_array().map(Vec::len) == Some(1))
                .then_some(r.body)
        }
    })
    .await;
    assert_eq!(listed["kind"], "JobTaskList");
    let got = rest("GET", &one, Some(&w.canceler), None, &[]);
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body, listed["items"][0]);

    // A JobTaskStat whose answer is just over a 1 MiB answer budget is refused; the shared shim,
    // with the default budget, answers it.
    let tight = support::shim::tight_shim(&["--max-answer-bytes", "1048576"]).await;
    let filler = 1_048_576 - 10 - stat(0).to_string().len();
    let body = stat(filler);
    let short = |v: &Value| v.to_string().chars().take(300).collect::<String>();
    let post = |port: u16| {
        support::shim::rest_at(port, "POST", &stats, Some(&w.canceler), Some(&body), &[])
    };
    let refused = post(tight.port);
    assert_eq!(refused.status, 500, "{}", short(&refused.body));
    assert_eq!(refused.body["kind"], "Status", "{}", short(&refused.body));
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ERROR_DB_QUERY") && message.contains("max_answer_bytes = 1048576"),
        "{message}"
    );
    let created = post(support::shim::shim().port);
    assert_eq!(created.status, 201, "{}", short(&created.body));
    assert_eq!(created.body["kind"], "JobTaskStat");
    assert_eq!(
        created.body["status"]["results"][0]["n"].as_f64(),
        Some(1.0),
        "{}",
        short(&created.body)
    );
}
