//! The dashboard and the alerts against a real Prometheus (issue 21): one `run` process (controller
//! and API shim) on the test control plane, demo jobs that reach every final state (SUCCESS,
//! FAILURE, TIMEOUT, CANCELED), requests over REST, gRPC and the aggregated API, and Prometheus
//! (built from its Go module by hack/observability-bin.sh, cached) scraping the process every
//! second. Then every expression of the Grafana dashboard must parse and return data, every alert
//! expression must parse, and no expression may name a metric the operator does not serve.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use cost_analysis_operator::api::grpc::pb;
use pb::job::job_client::JobClient;
use serde_json::Value;
use support::{Cluster, cluster, eventually, free_port, root};

const WAIT: Duration = Duration::from_secs(90);

/// A child process killed when the test process ends (or the value is dropped).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stack {
    _op: Proc,
    pub metrics_addr: String,
    pub api_port: u16,
    pub grpc_port: u16,
    pub tls: support::ServingCert,
    pub log: PathBuf,
}

/// The operator under test (`run`), with `env` (the OTEL_* variables of the trace test).
pub fn start_operator(c: &Cluster, command: &str, name: &str, env: &[(&str, String)]) -> Stack {
    let (metrics_port, api_port, grpc_port) = (free_port(), free_port(), free_port());
    let tls = support::serving_cert(&c.dir, name, "cost-analysis-system");
    let log = c.dir.join(format!("operator-{name}.log"));
    let identity = format!("{name}-{}", std::process::id());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"));
    cmd.args(["--log-format", "json", command])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")]);
    if command == "run" {
        cmd.args(["--identity", &identity]).args([
            "--lease-name",
            support::LEASE_NAME,
            "--lease-duration",
            "3",
        ]);
    }
    cmd.args(["--api-addr", &format!("127.0.0.1:{api_port}")])
        .args(["--grpc-plaintext-addr", &format!("127.0.0.1:{grpc_port}")])
        .arg("--tls-cert-file")
        .arg(&tls.cert)
        .arg("--tls-key-file")
        .arg(&tls.key)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("RUST_LOG", "info,cost_analysis_operator=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start the operator");
    // The stack may live in a static that is never dropped: the process must not outlive this
    // test binary (it would hold the test lease the next binaries wait for).
    support::watchdog(&format!("kill -TERM {} 2>/dev/null", child.id()));
    if command == "run" {
        support::wait_for_leader(c, &identity, WAIT);
    }
    Stack {
        _op: Proc(child),
        metrics_addr: format!("127.0.0.1:{metrics_port}"),
        api_port,
        grpc_port,
        tls,
        log,
    }
}

/// A namespace whose ServiceAccount `reader` may read the jobs of domain `<ns>-d1`; its token.
pub fn reader(c: &Cluster, prefix: &str) -> (String, String, String) {
    let ns = c.namespace(prefix);
    let domain = format!("{ns}-d1");
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}-reader}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [domains, jobs]\n  resourceNames: [{domain}]\n  verbs: [get, list]\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [jobs]\n  verbs: [get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {ns}-reader}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-reader}}\nsubjects: [{{kind: ServiceAccount, name: reader, namespace: {ns}}}]\n"
    );
    c.kubectl_ok(&["create", "serviceaccount", "reader", "-n", &ns]);
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = c
        .kubectl_ok(&["create", "token", "reader", "-n", &ns, "--duration", "2h"])
        .trim()
        .to_string();
    (ns, domain, token)
}

/// curl over TLS to the shim; returns (body, HTTP status). `headers` are extra `-H` values.
pub fn curl(
    s: &Stack,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
    headers: &[&str],
) -> (String, u16) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&s.tls.cert)
        .args(["-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if !body.is_empty() {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{}{path}", s.api_port))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (body.to_string(), code.trim().parse().unwrap_or(0))
}

pub async fn grpc_client(s: &Stack) -> JobClient<tonic::transport::Channel> {
    let url = format!("http://127.0.0.1:{}", s.grpc_port);
    let channel = eventually(WAIT, "the plaintext gRPC port", || {
        let url = url.clone();
        async move {
            tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect_timeout(Duration::from_secs(3))
                .connect()
                .await
                .ok()
        }
    })
    .await;
    JobClient::new(channel)
}

pub fn grpc_list(domain: &str, token: &str) -> tonic::Request<pb::job::JobQuery> {
    let mut r = tonic::Request::new(pb::job::JobQuery {
        domain_id: domain.to_string(),
        ..Default::default()
    });
    r.metadata_mut().insert("token", token.parse().unwrap());
    r
}

fn job(name: &str, domain: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: cost-analysis.spaceone.dev/v1\nkind: CostAnalysisJob\nmetadata:\n  name: {name}\nspec:\n  domainId: {domain}\n  dataSourceId: ds-demo\n  tasks:\n  - id: t1\n{extra}"
    )
}

fn statuses(c: &Cluster, ns: &str) -> String {
    String::from_utf8_lossy(
        &c.kubectl(&[
            "get",
            "caj",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.status} {end}",
        ])
        .stdout,
    )
    .into_owned()
}

/// Demo jobs of `domain` that end SUCCESS, FAILURE, TIMEOUT and CANCELED.
async fn every_final_state(c: &Cluster, ns: &str, domain: &str) {
    let yaml = job("demo-ok", domain, "")
        + &job("demo-bad", domain, "")
        + &job("demo-late", domain, "  timeoutSeconds: 2\n")
        + &job("demo-stop", domain, "");
    let out = c.apply_yaml(ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for task in ["demo-ok.t1", "demo-bad.t1", "demo-stop.t1"] {
        eventually(WAIT, &format!("task {task}"), || async move {
            c.kubectl(&["get", "cajt", task, "-n", ns])
                .status
                .success()
                .then_some(())
        })
        .await;
    }
    support::report(c, ns, "demo-ok.t1", "SUCCESS");
    support::report(c, ns, "demo-bad.t1", "FAILURE");
    c.kubectl_ok(&[
        "patch",
        "caj",
        "demo-stop",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"cancel":true}}"#,
    ]);
    eventually(WAIT, "every demo job in its final state", || async move {
        let s = statuses(c, ns);
        [
            "demo-ok=SUCCESS",
            "demo-bad=FAILURE",
            "demo-late=TIMEOUT",
            "demo-stop=CANCELED",
        ]
        .iter()
        .all(|want| s.contains(want))
        .then_some(())
    })
    .await;
}

struct Prometheus {
    _proc: Proc,
    addr: String,
}

fn start_prometheus(c: &Cluster, target: &str) -> Prometheus {
    let dir = c.dir.join(format!("prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: cost-analysis-operator\n  static_configs:\n  - targets: ['{target}']\n    labels: {{pod: operator-0}}\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(support::observability_tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("start prometheus");
    Prometheus {
        _proc: Proc(child),
        addr,
    }
}

impl Prometheus {
    /// An instant query; the whole API answer.
    fn query(&self, expr: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-G"])
            .arg(format!("http://{}/api/v1/query", self.addr))
            .args(["--data-urlencode", &format!("query={expr}")])
            .output()
            .expect("curl prometheus");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

/// The dashboard's expressions, with Grafana's `$__rate_interval` made concrete.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.replace("$__rate_interval", "30s"));
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(dashboard, &mut out);
    out
}

fn alert_exprs(path: &Path) -> Vec<String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

/// The operator's metric names an expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("cost_analysis_operator_") {
        let tail = &rest[i..];
        let end = tail
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The sample names in a /metrics answer (`x_total`, `x_bucket`, `x_count`, ...).
fn served_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Jaeger (v2, in-memory storage), built from its Go module by hack/observability-bin.sh.
struct Jaeger {
    _proc: Proc,
    otlp_grpc: String,
    otlp_http: String,
    query: String,
}

fn start_jaeger(c: &Cluster) -> Jaeger {
    let dir = c.dir.join(format!("jaeger-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let [otlp_grpc, otlp_http, query, query_grpc] =
        [0; 4].map(|_| format!("127.0.0.1:{}", free_port()));
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: "{query}"
    grpc:
      endpoint: "{query_grpc}"
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "{otlp_grpc}"
      http:
        endpoint: "{otlp_http}"
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
        ),
    )
    .unwrap();
    let child = Command::new(support::observability_tool("jaeger"))
        .arg(format!("--config={}", config.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("jaeger.log")).unwrap())
        .spawn()
        .expect("start jaeger");
    // It lives in a static, which is never dropped: stopped once this test process has exited.
    support::watchdog(&format!("kill -TERM {} 2>/dev/null", child.id()));
    Jaeger {
        _proc: Proc(child),
        otlp_grpc,
        otlp_http,
        query,
    }
}

impl Jaeger {
    /// The trace's spans as Jaeger's query API returns them (`/api/traces/<id>`); empty until
    /// it has them.
    fn spans(&self, trace_id: &str) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .arg(format!("http://{}/api/traces/{trace_id}", self.query))
            .output()
            .expect("curl jaeger");
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        answer["data"][0]["spans"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// The shared Jaeger and the operator exporting to it over OTLP HTTP/protobuf (both tests use it:
/// Prometheus scrapes the operator with tracing on).
static STACK: OnceLock<(Jaeger, Stack)> = OnceLock::new();

fn stack() -> &'static (Jaeger, Stack) {
    STACK.get_or_init(|| {
        let c = cluster();
        let jaeger = start_jaeger(c);
        let env = [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", jaeger.otlp_http),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
            ("OTEL_SERVICE_NAME", "cao-under-test".to_string()),
        ];
        let op = start_operator(c, "run", "obs", &env);
        (jaeger, op)
    })
}

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-00f067aa0ba902b7-01")
}

/// A random 32-hex-digit trace id.
fn trace_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        id += &format!("{:016x}", h.finish());
    }
    id
}

async fn found(jaeger: &Jaeger, trace_id: &str, what: &str) -> Vec<Value> {
    eventually(
        WAIT,
        &format!("Jaeger has the trace of {what} ({trace_id})"),
        || async {
            let spans = jaeger.spans(trace_id);
            (!spans.is_empty()).then_some(spans)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_and_reconciles_are_traced_end_to_end() {
    let c = cluster();
    let (jaeger, s) = stack();
    let (ns, domain, token) = reader(c, "obs-trace");

    // A job, reconciled: its reconcile span's trace id is in the JSON log lines.
    let yaml = job("traced", &domain, "");
    let out = c.apply_yaml(&ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reconcile_trace = eventually(
        WAIT,
        "a JSON log line of the job's reconcile with its trace id",
        || async {
            support::read(&s.log).lines().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let span = &v["span"];
                (span["name"] == "reconcile"
                    && span["job"] == "traced"
                    && span["namespace"] == ns.as_str())
                .then(|| span["trace_id"].as_str().map(str::to_string))
                .flatten()
            })
        },
    )
    .await;
    let spans = found(jaeger, &reconcile_trace, "the reconcile").await;
    let reconcile = spans
        .iter()
        .find(|sp| sp["operationName"] == "reconcile")
        .unwrap_or_else(|| panic!("no reconcile span: {spans:?}"));
    assert_eq!(
        tag(reconcile, "job").and_then(Value::as_str),
        Some("traced")
    );
    assert!(tag(reconcile, "decision").is_some(), "{reconcile}");
    assert!(tag(reconcile, "writes").is_some(), "{reconcile}");

    // A REST call continuing the caller's trace.
    let rest_trace = trace_id();
    let body = format!(r#"{{"domain_id":"{domain}"}}"#);
    let header = format!("traceparent: {}", traceparent(&rest_trace));
    let (answer, code) = curl(
        s,
        "POST",
        "/cost-analysis/v1/jobs/search",
        &token,
        &body,
        &[&header],
    );
    assert_eq!(code, 200, "{answer}");
    let spans = found(jaeger, &rest_trace, "a REST call").await;
    let rest = &spans[0];
    assert_eq!(rest["operationName"], "rest list", "{rest}");
    assert_eq!(
        tag(rest, "code").and_then(Value::as_str),
        Some("OK"),
        "{rest}"
    );
    assert_eq!(
        tag(rest, "domain").and_then(Value::as_str),
        Some(domain.as_str()),
        "{rest}"
    );
    // The caller's span is the parent.
    assert!(
        rest["references"].to_string().contains("00f067aa0ba902b7"),
        "{rest}"
    );

    // A gRPC call continuing the caller's trace (metadata travels as HTTP/2 headers).
    let grpc_trace = trace_id();
    let mut grpc = grpc_client(s).await;
    let mut request = grpc_list(&domain, &token);
    request
        .metadata_mut()
        .insert("traceparent", traceparent(&grpc_trace).parse().unwrap());
    grpc.list(request).await.expect("gRPC list");
    let spans = found(jaeger, &grpc_trace, "a gRPC call").await;
    assert_eq!(spans[0]["operationName"], "grpc list", "{:?}", spans[0]);
    assert_eq!(tag(&spans[0], "code").and_then(Value::as_str), Some("OK"));

    // An error's SpaceONE code is on its span.
    let err_trace = trace_id();
    let header = format!("traceparent: {}", traceparent(&err_trace));
    let (_, code) = curl(
        s,
        "GET",
        "/cost-analysis/v1/job/job-missing",
        "not-a-token",
        "",
        &[&header],
    );
    assert_eq!(code, 401);
    let spans = found(jaeger, &err_trace, "a refused REST call").await;
    assert_eq!(
        tag(&spans[0], "code").and_then(Value::as_str),
        Some("ERROR_AUTHENTICATE_FAILURE")
    );

    // OTLP over gRPC: a second process (the shim alone) exports to Jaeger's gRPC receiver.
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", jaeger.otlp_grpc),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
    ];
    let shim = start_operator(c, "api", "obs-grpc-export", &env);
    let via_grpc = trace_id();
    let header = format!("traceparent: {}", traceparent(&via_grpc));
    eventually(WAIT, "the second shim answers", || {
        let (body, header, token) = (body.clone(), header.clone(), token.clone());
        let shim = &shim;
        async move {
            let (_, code) = curl(
                shim,
                "POST",
                "/cost-analysis/v1/jobs/search",
                &token,
                &body,
                &[&header],
            );
            (code == 200).then_some(())
        }
    })
    .await;
    let spans = found(jaeger, &via_grpc, "a REST call exported over OTLP/gRPC").await;
    assert!(
        spans.iter().any(|sp| sp["operationName"] == "rest list"),
        "{spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_and_alert_expression_works_against_a_real_prometheus() {
    let c = cluster();
    let s = &stack().1;
    let prometheus = start_prometheus(c, &s.metrics_addr);
    let (ns, domain, token) = reader(c, "obs-prom");
    every_final_state(c, &ns, &domain).await;

    // Requests of every protocol: REST (a success and an error), gRPC, the aggregated API.
    let body = format!(r#"{{"domain_id":"{domain}"}}"#);
    eventually(WAIT, "the shim lists the demo jobs", || {
        let (body, token) = (body.clone(), token.clone());
        async move {
            let (answer, code) = curl(
                s,
                "POST",
                "/cost-analysis/v1/jobs/search",
                &token,
                &body,
                &[],
            );
            (code == 200 && answer.contains("demo-late")).then_some(())
        }
    })
    .await;
    let (_, code) = curl(
        s,
        "GET",
        "/cost-analysis/v1/job/job-missing",
        &token,
        "",
        &[],
    );
    assert!(code >= 400, "{code}");
    let mut grpc = grpc_client(s).await;
    grpc.list(grpc_list(&domain, &token))
        .await
        .expect("gRPC list");
    let (_, code) = curl(
        s,
        "GET",
        &format!("/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{ns}/jobs"),
        &token,
        "",
        &[],
    );
    assert!(code > 0, "aggregated API call");

    // Prometheus has scraped the final states and the requests for a while.
    eventually(WAIT, "Prometheus has every final state and a request of every protocol", || async {
        let finished = prometheus.query("count(cost_analysis_operator_jobs_finished_total)");
        let protocols = prometheus
            .query("count(count by (protocol) (cost_analysis_operator_request_duration_seconds_count))");
        let value = |v: &Value| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        };
        (value(&finished) >= 4 && value(&protocols) >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let served = served_names(&support::http_get(&s.metrics_addr, "/metrics"));
    let files = root().join("charts/cost-analysis-operator/files");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("dashboard.json")).unwrap())
            .unwrap();
    let dashboard = dashboard_exprs(&dashboard);
    let alerts = alert_exprs(&files.join("alerts.yaml"));
    assert!(dashboard.len() >= 15, "{dashboard:?}");
    let mut failures = Vec::new();
    for (kind, expr) in dashboard
        .iter()
        .map(|e| ("dashboard", e))
        .chain(alerts.iter().map(|e| ("alert", e)))
    {
        for name in metric_names(expr) {
            if !served.contains(&name) {
                failures.push(format!(
                    "{kind} names {name}, which the operator does not serve: {expr}"
                ));
            }
        }
        let answer = prometheus.query(expr);
        if answer["status"] != "success" {
            failures.push(format!(
                "{kind} expression does not evaluate: {expr}: {answer}"
            ));
            continue;
        }
        let empty = answer["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if kind == "dashboard" && empty {
            failures.push(format!("dashboard expression returns no data: {expr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
