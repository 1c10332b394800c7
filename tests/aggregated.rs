//! The aggregated API through the real kube-aggregator (ExternalName Service + APIService),
//! driven with kubectl: tables, pages, label and field selectors, JobStats, the group's OpenAPI,
//! an index loaded in pages, and `last_changed_at` as the creator's datum.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::shim::{WAIT, d, job, rest, rest_at, shim, urlencode, wait_listed, world};
use support::{cluster, eventually, free_port};

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_reads_jobs_and_creates_jobstats_through_the_aggregator() {
    let log_from = std::fs::metadata(cluster().dir.join("apiserver.log")).map_or(0, |m| m.len());
    let w = world("agg").await;
    let c = cluster();
    let d1 = d(&w, 1);
    wait_listed(&w, &d1, 2).await;

    let table = c.kubectl_ok(&["get", "jobs.query.cost-analysis.spaceone.dev", "-A"]);
    let header = table.lines().next().unwrap_or_default().to_string();
    for col in [
        "NAMESPACE",
        "NAME",
        "STATUS",
        "PROGRESS",
        "DATA SOURCE",
        "DOMAIN",
        "AGE",
    ] {
        assert!(header.contains(col), "{col} missing: {header}");
    }
    assert!(table.contains("job-b1") && table.contains(&w.ns), "{table}");
    let one = c.kubectl_ok(&[
        "get",
        "jobs.query.cost-analysis.spaceone.dev",
        "job-a2",
        "-n",
        &w.ns,
        "-o",
        "json",
    ]);
    let one: Value = serde_json::from_str(&one).unwrap_or_default();
    assert_eq!(one["job"]["status"], "SUCCESS", "{one}");

    let base = format!(
        "/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{}/jobs",
        w.ns
    );
    let page: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "--raw", &format!("{base}?limit=2")]))
            .unwrap_or_default();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    let token = page["metadata"]["continue"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!token.is_empty(), "{page}");
    let rest_page: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "--raw",
        &format!("{base}?limit=2&continue={token}"),
    ]))
    .unwrap_or_default();
    assert_eq!(
        rest_page["items"].as_array().map(Vec::len),
        Some(1),
        "{rest_page}"
    );
    let selected = c.kubectl_ok(&[
        "get",
        "jobs.query.cost-analysis.spaceone.dev",
        "-n",
        &w.ns,
        "-l",
        &format!("team={}", d(&w, 2)),
        "-o",
        "name",
    ]);
    assert_eq!(
        selected.trim(),
        "job.query.cost-analysis.spaceone.dev/job-b1"
    );
    let q = r#"{"filter":[{"k":"status","v":"SUCCESS","o":"eq"}]}"#;
    let filtered: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "--raw",
        &format!("{base}?query={}", urlencode(q)),
    ]))
    .unwrap_or_default();
    assert_eq!(
        filtered["items"].as_array().map(Vec::len),
        Some(2),
        "{filtered}"
    );
    let missing = c.kubectl(&[
        "get",
        "jobs.query.cost-analysis.spaceone.dev",
        "nope",
        "-n",
        &w.ns,
    ]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("NotFound")
            || String::from_utf8_lossy(&missing.stderr).contains("not found")
    );

    let stat = "apiVersion: query.cost-analysis.spaceone.dev/v1\nkind: JobStat\nmetadata: {name: by-status}\nspec:\n  query:\n    aggregate:\n    - group:\n        keys: [{key: status, name: status}]\n        fields: [{name: jobs, operator: count}]\n    - sort: [{key: status}]\n";
    let out = c.kubectl_stdin(&["create", "-n", &w.ns, "-f", "-", "-o", "json"], stat);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let results = created["status"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        results.iter().any(|r| r["status"] == "SUCCESS"),
        "{created}"
    );

    // The group's OpenAPI reaches kubectl through the aggregator: `kubectl explain` describes the
    // Job's JobInfo field by field, and the API server holds our v3 document.
    let explained = c.kubectl_ok(&["explain", "jobs.query.cost-analysis.spaceone.dev.job"]);
    for field in ["job_id", "status", "remained_tasks", "last_changed_at"] {
        assert!(explained.contains(field), "{field} in:\n{explained}");
    }
    let v3: Value = serde_json::from_str(&c.kubectl_ok(&[
        "get",
        "--raw",
        "/openapi/v3/apis/query.cost-analysis.spaceone.dev/v1",
    ]))
    .unwrap();
    assert!(
        v3["components"]["schemas"]["dev.spaceone.cost-analysis.query.v1.JobStat"].is_object(),
        "{v3}"
    );
    let v2 = c.kubectl_ok(&["get", "--raw", "/openapi/v2"]);
    assert!(v2.contains("dev.spaceone.cost-analysis.query.v1.Job"));
    // Since this test started: a document the aggregator could not load (a 404 before the group
    // served OpenAPI). An unreachable backend is not one: a control plane reused across runs
    // still has the previous run's APIService, whose shim is gone, until `world` replaces it.
    let apiserver_log = std::fs::read(c.dir.join("apiserver.log")).unwrap_or_default();
    let since = String::from_utf8_lossy(apiserver_log.get(log_from as usize..).unwrap_or(&[]));
    let failed: Vec<&str> = since
        .lines()
        .filter(|l| {
            l.contains("v1.query.cost-analysis.spaceone.dev")
                && l.contains("OpenAPI")
                && l.contains("failed")
                && !l.contains("ResponseCode: 503")
                && !l.contains("could not get list of group versions")
        })
        .collect();
    assert!(
        failed.is_empty(),
        "the aggregator failed to load the group's OpenAPI: {failed:?}"
    );

    // Without RBAC on jobs, the aggregated API refuses like any Kubernetes API.
    let env = std::fs::read_to_string(c.dir.join("env")).unwrap_or_default();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let out = Command::new(c.bin.join("kubectl"))
        .args(["--kubeconfig=/dev/null", "--server", &var("API_SERVER")])
        .args([
            "--certificate-authority",
            &format!("{}/ca.crt", var("PKI")),
            "--token",
            &w.nobody,
        ])
        .args(["get", "jobs.query.cost-analysis.spaceone.dev", "-n", &w.ns])
        .output()
        .expect("kubectl");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The paged initial list (what API servers without WatchList get) loads the same index as the
/// streaming one the shared shim uses, and the watch that follows it keeps it current.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_loaded_in_pages_answers_like_a_streamed_one() {
    let w = world("paged").await;
    let domain = d(&w, 1);
    wait_listed(&w, &domain, 2).await;
    let (c, s) = (cluster(), shim());
    let (port, metrics) = (free_port(), free_port());
    let log = std::fs::File::create(c.dir.join(format!("paged-{}.log", std::process::id())))
        .expect("log");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _paged = Killed(
        Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
            .args(["api", "--initial-list", "paged"])
            .args(["--api-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
            .arg("--tls-cert-file")
            .arg(&s.tls.cert)
            .arg("--tls-key-file")
            .arg(&s.tls.key)
            .env("KUBECONFIG", &c.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a paged shim"),
    );
    let health = format!("127.0.0.1:{metrics}");
    eventually(WAIT, "the paged shim to be ready", || {
        let health = health.clone();
        async move {
            support::http_get(&health, "/readyz")
                .contains("200 OK")
                .then_some(())
        }
    })
    .await;
    let search = |port: u16| {
        rest_at(
            port,
            "POST",
            "/cost-analysis/v1/jobs/search",
            Some(&w.reader),
            Some(&json!({"domain_id": domain})),
            &[],
        )
    };
    let (streamed, paged) = (search(s.port), search(port));
    assert_eq!(paged.status, 200, "{}", paged.body);
    assert_eq!(paged.body["total_count"], 2, "{}", paged.body);
    assert_eq!(paged.body, streamed.body);

    let out = c.apply_yaml(&w.ns, &job("job-a3", &domain, &[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(WAIT, "the paged shim to see a new job", || {
        let r = search(port);
        async move { (r.body["total_count"] == 3).then_some(()) }
    })
    .await;
}

/// Issue 11, item 5: `last_changed_at` is the creator's datum. It comes from `spec.lastChangedAt`,
/// a cancel through the API and the controller's transitions leave it alone, a job created without
/// it has none, and it cannot be changed afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn last_changed_at_is_data_from_the_creator() {
    let w = world("changed").await;
    let c = cluster();
    let d1 = d(&w, 1);
    let with =
        job("changed-since", &d1, &["t"]) + "  lastChangedAt: \"2023-12-01T00:00:00.000Z\"\n";
    let out = c.apply_yaml(&w.ns, &with);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_listed(&w, &d1, 3).await;
    let get = |id: &str| {
        rest(
            "GET",
            &format!("/cost-analysis/v1/job/{id}?domain_id={d1}"),
            Some(&w.reader),
            None,
            &[],
        )
    };
    assert_eq!(
        get("changed-since").body["last_changed_at"],
        "2023-12-01T00:00:00.000Z"
    );
    let r = rest(
        "POST",
        "/cost-analysis/v1/job/changed-since/cancel",
        Some(&w.canceler),
        Some(&json!({"domain_id": d1})),
        &[],
    );
    assert_eq!(r.body["status"], "CANCELED", "{}", r.body);
    assert_eq!(
        r.body["last_changed_at"], "2023-12-01T00:00:00.000Z",
        "{}",
        r.body
    );
    // A job without it: absent before and after the controller moved it to SUCCESS.
    eventually(WAIT, "job-a2 to succeed", || async {
        let r = get("job-a2");
        (r.body["status"] == "SUCCESS").then_some(())
    })
    .await;
    assert!(get("job-a2").body.get("last_changed_at").is_none());
    // It is immutable once set, and cannot be added later.
    let changed = with.replace("2023-12-01", "2024-01-01");
    let out = c.apply_yaml(&w.ns, &changed);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lastChangedAt is immutable"));
    let added = job("job-a2", &d1, &[]) + "  lastChangedAt: \"2024-01-01T00:00:00.000Z\"\n";
    let out = c.apply_yaml(&w.ns, &added);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lastChangedAt is immutable"));
    // The controller settled the canceled job without touching it either.
    let stored = w.jobs.get("changed-since").await.expect("job");
    assert_eq!(
        stored.spec.last_changed_at.map(|t| t.to_rfc3339()),
        Some("2023-12-01T00:00:00+00:00".to_string())
    );
    assert_eq!(
        get("changed-since").body["last_changed_at"],
        "2023-12-01T00:00:00.000Z"
    );
}

/// Issue 11, item 6: field selectors work on `jobs.query...` exactly as on `caj` (same names), and
/// an unsupported field is refused with kube-apiserver's 400, naming it.
#[tokio::test(flavor = "multi_thread")]
async fn field_selectors_select_like_on_the_custom_resource() {
    let w = world("fields").await;
    let c = cluster();
    let d1 = d(&w, 1);
    wait_listed(&w, &d1, 2).await;
    eventually(WAIT, "job-a2 and job-b1 to succeed", || async {
        let out = c.kubectl_ok(&[
            "get",
            "caj",
            "-n",
            &w.ns,
            "--field-selector",
            "status.status=SUCCESS",
            "-o",
            "name",
        ]);
        (out.lines().count() == 2).then_some(())
    })
    .await;
    let names = |resource: &str, selector: &str| {
        let out = c.kubectl_ok(&[
            "get",
            resource,
            "-n",
            &w.ns,
            "--field-selector",
            selector,
            "-o",
            "name",
        ]);
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    for selector in [
        "status.status=SUCCESS".to_string(),
        "status.status!=SUCCESS".to_string(),
        format!("spec.domainId={d1}"),
        format!("spec.domainId!={d1},status.status=SUCCESS"),
        "metadata.name=job-a1".to_string(),
        format!("metadata.namespace={}", w.ns),
        "spec.dataSourceId==ds-1".to_string(),
    ] {
        let via_crd = names("caj", &selector);
        let via_query = names("jobs.query.cost-analysis.spaceone.dev", &selector);
        assert_eq!(via_query, via_crd, "{selector}");
    }
    assert_eq!(
        names(
            "jobs.query.cost-analysis.spaceone.dev",
            "status.status=FAILURE"
        ),
        Vec::<String>::new()
    );
    for bad in ["foo=bar", "spec.tasks=x"] {
        let out = c.kubectl(&[
            "get",
            "jobs.query.cost-analysis.spaceone.dev",
            "-n",
            &w.ns,
            "--field-selector",
            bad,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        let field = bad.split('=').next().unwrap_or_default();
        assert!(!out.status.success(), "{bad} accepted");
        assert!(
            err.contains("BadRequest")
                && err.contains(&format!("field label not supported: {field}")),
            "{err}"
        );
    }
}
