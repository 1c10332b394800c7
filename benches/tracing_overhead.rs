//! What tracing costs (issue 21), tracing off (the default: JSON logs at `info`, no exporter)
//! against on (the same plus spans exported over OTLP HTTP/protobuf to a running Jaeger, always
//! sampled), side by side in one run:
//! - the shim's list as P1 measures it: a REST list (filter by data source, newest first, a page
//!   of 100 of BENCH_REST_JOBS jobs) over HTTPS with a ServiceAccount token, against two `api`
//!   processes on one control plane, one exporting and one not, called alternately,
//!   BENCH_REST_ROUNDS (3,000) rounds;
//! - in process, BENCH_ROUNDS (300) rounds of each of the following. One request span and one
//!   reconcile span part by part, per span: no subscriber, the JSON logs (off), the
//!   OpenTelemetry span built and dropped at its end, and handed to the exporter (on);
//! - what one REST `list` adds around the engine: the `request` span continuing a
//!   `traceparent`, its fields (domain, code), the request metric, then the engine's list of one
//!   domain's jobs (a 100-job page, newest first, of BENCH_JOBS jobs) and the JSON answer;
//! - reconcile passes as the controller makes them: BENCH_PASS settled IN_PROGRESS jobs (nothing
//!   to write: no span, `telemetry::Traced`), and BENCH_PASS jobs whose decision writes
//!   (a new job: its status and its task; each gets its `reconcile` span; the API writes
//!   themselves are left out, so the ratio is the span's cost against the decision alone).
//!
//! Prints medians and p99 and the ratio on / off at the median; the in-process parts also under
//! a third subscriber whose spans are built and dropped at their end, not exported.
//!   cargo bench --bench tracing_overhead     (Jaeger from hack/observability-bin.sh; a control
//!                                             plane as in tests/, or COST_ANALYSIS_CLUSTER_DIR)
//!   BENCH_REST=0 ...   (no control plane: the in-process parts only)
//!   BENCH_NO_LOGS=1 ...   (the in-process parts without the JSON log layer)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use cost_analysis_operator::lifecycle::{self, JobView, TaskView};
use cost_analysis_operator::metrics::Metrics;
use cost_analysis_operator::metrics::outcomes::CallLabels;
use cost_analysis_operator::resources::{CostAnalysisJob, TaskState};
use cost_analysis_operator::testing::JobBuilder;
use cost_analysis_operator::{job_metrics, telemetry};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use serde_json::json;
use spaceone_query::{Index, Job, JobStatus, Limits, Scope, calls as api};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn index(n: usize) -> Index {
    let mut index = Index::new();
    for i in 0..n {
        let status = if i % 10 == 1 {
            JobStatus::InProgress
        } else {
            JobStatus::Success
        };
        let created = Utc
            .timestamp_opt(1_700_000_000 + (i as i64) * 7, 0)
            .single();
        index.upsert(Job {
            namespace: "ns".into(),
            job_id: format!("job-{i:012x}"),
            status,
            error_code: None,
            error_message: None,
            total_tasks: 1,
            remained_tasks: 0,
            data_source_id: format!("ds-{}", i % 10),
            domain_id: format!("domain-{}", i % 2),
            options: serde_json::Map::new(),
            created_at: created,
            updated_at: created,
            finished_at: created,
            last_changed_at: None,
        });
    }
    index
}

fn jobs(n: usize) -> Vec<CostAnalysisJob> {
    (0..n)
        .map(|i| {
            JobBuilder::new(format!("job-{i:06}"))
                .namespace("ns")
                .domain("domain-0")
                .data_source("ds-0")
                .tasks(["t1"])
                .timeout(3600)
                .generation(1)
                .created(Utc::now())
                .build()
        })
        .collect()
}

fn stats(mut s: Vec<Duration>) -> (f64, f64) {
    s.sort();
    let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn tool(name: &str) -> std::path::PathBuf {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("hack/observability-bin.sh"))
        .arg(name)
        .output()
        .expect("hack/observability-bin.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join(name)
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Jaeger v2 with in-memory storage; its OTLP HTTP address.
fn jaeger(dir: &std::path::Path) -> (std::process::Child, String) {
    let [otlp, query, query_grpc] = [0; 3].map(|_| format!("127.0.0.1:{}", port()));
    let config = dir.join("jaeger.yaml");
    std::fs::write(
        &config,
        format!(
            "service:\n  extensions: [jaeger_storage, jaeger_query]\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [jaeger_storage_exporter]\n  telemetry:\n    metrics:\n      level: none\n    logs:\n      level: warn\nextensions:\n  jaeger_query:\n    storage:\n      traces: mem\n    http:\n      endpoint: \"{query}\"\n    grpc:\n      endpoint: \"{query_grpc}\"\n  jaeger_storage:\n    backends:\n      mem:\n        memory:\n          max_traces: 100000\nreceivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: \"{otlp}\"\nprocessors:\n  batch:\nexporters:\n  jaeger_storage_exporter:\n    trace_storage: mem\n"
        ),
    )
    .unwrap();
    let child = Command::new(tool("jaeger"))
        .arg(format!("--config={}", config.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start jaeger");
    // Until it accepts connections.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&otlp).is_err() {
        assert!(Instant::now() < deadline, "jaeger did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, otlp)
}

fn main() {
    let n = env_or("BENCH_JOBS", 10_000);
    let pass = env_or("BENCH_PASS", 1_000);
    let rounds = env_or("BENCH_ROUNDS", 300);
    // The exporter reads its endpoint from the environment, as in production: this process starts
    // Jaeger and runs itself again with the OTEL_* variables set (the workspace forbids the
    // unsafe `set_var`).
    if std::env::var_os("TRACING_OVERHEAD_CHILD").is_none() {
        let dir = std::env::temp_dir().join(format!("tracing-overhead-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut jaeger, otlp) = jaeger(&dir);
        if std::env::var("BENCH_REST").as_deref() != Ok("0") {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // A list takes a quarter of a millisecond: many rounds cost little and steady the
            // medians against whatever else runs on the machine.
            runtime.block_on(rest_list(
                &otlp,
                env_or("BENCH_REST_JOBS", 10_000),
                env_or("BENCH_REST_ROUNDS", 3_000),
            ));
        }
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env("TRACING_OVERHEAD_CHILD", "1")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .status()
            .unwrap();
        let _ = jaeger.kill();
        let _ = jaeger.wait();
        let _ = std::fs::remove_dir_all(&dir);
        std::process::exit(status.code().unwrap_or(1));
    }

    // The exporter's batches run on this runtime; the measured work runs on this thread, under
    // one subscriber or the other (thread-local defaults).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let provider = {
        let _entered = runtime.enter();
        telemetry::provider_from_env()
            .unwrap()
            .expect("an exporter")
    };
    let off = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(logs());
    let on = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(telemetry::otel_layer(&provider))
        .with(logs());
    // The same as `on` with each finished span dropped instead of handed to the exporter: the
    // span's own cost, apart from the hand-off.
    let discarding = SdkTracerProvider::builder()
        .with_span_processor(Discard)
        .build();
    let built = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(telemetry::otel_layer(&discarding))
        .with(logs());
    let off = tracing::Dispatch::new(off);
    let on = tracing::Dispatch::new(on);
    let built = tracing::Dispatch::new(built);

    let index = index(n);
    let scope = Scope {
        namespace: None,
        domains: Some(vec!["domain-0".into()]),
    };
    let limits = Limits::default();
    let metrics = Metrics::default();
    let request = json!({"domain_id": "domain-0", "query": {
        "sort": {"key": "created_at", "desc": true}, "page": {"start": 1, "limit": 100}}});
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let list = || {
        let started = Instant::now();
        let span = telemetry::request_span("rest", "list", &headers);
        let answer = span.in_scope(|| {
            telemetry::record_domain("domain-0");
            api::list_as::<api::Encoded>(&index, &scope, &request, Utc::now(), &limits)
                .unwrap()
                .0
        });
        telemetry::record_code_on(&span, "OK");
        metrics.outcomes.call(
            &CallLabels {
                protocol: "rest",
                method: "list",
                code: "OK",
            },
            started.elapsed().as_secs_f64(),
        );
        drop(span);
        std::hint::black_box(answer.len());
    };

    let objects = jobs(pass);
    let config = lifecycle::Config::default();
    let running = [TaskView {
        state: TaskState::InProgress,
        ..TaskView::pending("t1", "job.t1".into())
    }];
    // As the controller reconciles: decide, and open the span only when there is something to
    // trace (`telemetry::Traced`).
    let reconcile = |job: &CostAnalysisJob, tasks: &[TaskView]| {
        let view = JobView::of(job).unwrap();
        let decision = lifecycle::decide(&view, tasks, Utc::now(), &config);
        if !job_metrics::is_settled(&decision) {
            let span = telemetry::reconcile_span("ns", job.metadata.name.as_deref().unwrap());
            job_metrics::record_decision(&span, &decision);
            span.in_scope(|| std::hint::black_box(decision.create_tasks.len()));
        }
        std::hint::black_box(decision.requeue_after);
    };
    let settled: Vec<CostAnalysisJob> = objects
        .iter()
        .map(|job| {
            let mut job = job.clone();
            let view = JobView::of(&job).unwrap();
            job.status = Some(lifecycle::decide(&view, &running, Utc::now(), &config).status);
            job
        })
        .collect();
    let settled_pass = || {
        for job in &settled {
            reconcile(job, &running);
        }
    };
    let deciding_pass = || {
        for job in &objects {
            reconcile(job, &[]);
        }
    };

    println!(
        "{n} jobs in the catalog, a pass of {pass} jobs, {rounds} rounds, interleaved (medians and p99 in microseconds)"
    );
    // What one span costs, part by part, 100 at a time, per span: a request span alone (created
    // continuing a `traceparent`, its domain and code recorded, closed) and a reconcile span alone
    // (created, a decision that writes recorded, closed).
    let request_span = || {
        for _ in 0..100 {
            let span = telemetry::request_span("rest", "list", &headers);
            span.in_scope(|| telemetry::record_domain("domain-0"));
            telemetry::record_code_on(&span, "OK");
            drop(span);
        }
    };
    let writing = {
        let view = JobView::of(&objects[0]).unwrap();
        lifecycle::decide(&view, &[], Utc::now(), &config)
    };
    assert!(!job_metrics::is_settled(&writing));
    let reconcile_span = || {
        for _ in 0..100 {
            let span = telemetry::reconcile_span("ns", "job-000000");
            job_metrics::record_decision(&span, &writing);
            span.in_scope(|| std::hint::black_box(writing.create_tasks.len()));
            drop(span);
        }
    };
    let none = tracing::Dispatch::none();
    let parts = [
        ("no subscriber", &none),
        ("JSON logs (off)", &off),
        ("+ OpenTelemetry span, dropped at its end", &built),
        ("+ handed to the exporter (on)", &on),
    ];
    for (what, work) in [
        ("request span", &request_span as &dyn Fn()),
        ("reconcile span", &reconcile_span as &dyn Fn()),
    ] {
        for (_, d) in parts {
            tracing::dispatcher::with_default(d, || (0..10).for_each(|_| work()));
        }
        let mut times = parts.map(|_| Vec::new());
        for _ in 0..rounds {
            for ((_, d), out) in parts.iter().zip(times.iter_mut()) {
                tracing::dispatcher::with_default(d, || {
                    let t = Instant::now();
                    work();
                    out.push(t.elapsed() / 100);
                });
            }
        }
        let medians: Vec<String> = parts
            .iter()
            .zip(times)
            .map(|((name, _), t)| format!("{name} {:.2}", stats(t).0))
            .collect();
        println!("{what} alone, per span: {}", medians.join("; "));
    }
    for (name, work) in [
        ("shim list (100 of one domain)", &list as &dyn Fn()),
        ("reconcile pass, settled jobs", &settled_pass as &dyn Fn()),
        (
            "reconcile pass, jobs whose decision writes",
            &deciding_pass as &dyn Fn(),
        ),
    ] {
        // Warm-up under each.
        for d in [&off, &built, &on] {
            tracing::dispatcher::with_default(d, || (0..10).for_each(|_| work()));
        }
        let (mut t_off, mut t_built, mut t_on) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (d, out) in [(&off, &mut t_off), (&built, &mut t_built), (&on, &mut t_on)] {
                tracing::dispatcher::with_default(d, || {
                    let t = Instant::now();
                    work();
                    out.push(t.elapsed());
                });
            }
        }
        let ((m_off, p_off), (m_built, _), (m_on, p_on)) =
            (stats(t_off), stats(t_built), stats(t_on));
        println!(
            "{name}: off median {m_off:.1} p99 {p_off:.1}; on median {m_on:.1} p99 {p_on:.1}; on/off at the median {:.3} (spans built, not exported: median {m_built:.1}, {:.3})",
            m_on / m_off,
            m_built / m_off
        );
    }
    let exported = runtime.spawn_blocking(move || provider.shutdown());
    let _ = runtime.block_on(exported);
}

/// The JSON log layer as `--log-format json` writes it, into a sink (none with BENCH_NO_LOGS).
fn logs<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::sink)
        .with_filter(tracing_subscriber::filter::filter_fn(|_| {
            std::env::var_os("BENCH_NO_LOGS").is_none()
        }))
}

/// Drops every finished span.
#[derive(Debug)]
struct Discard;

impl SpanProcessor for Discard {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, _: SpanData) {}
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The shim's list as P1 measures it, over HTTPS with a token, against two `api` processes on one
/// control plane (one exporting spans to `otlp`, one not), called alternately round by round.
async fn rest_list(otlp: &str, n: usize, rounds: usize) {
    use futures::StreamExt;
    use kube::Api;
    use kube::api::PostParams;
    let c = support::cluster();
    let ns = c.namespace("tracing");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(c.client().await, &ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let job = JobBuilder::new(format!("job-{i:08}"))
                    .domain("domain-bench")
                    .data_source(format!("ds-{}", i % 10))
                    .build();
                for _ in 0..5 {
                    match jobs.create(&PostParams::default(), &job).await {
                        Ok(_) => return,
                        Err(kube::Error::Api(e)) if e.code == 409 => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        })
        .buffer_unordered(48)
        .collect::<Vec<_>>()
        .await;
    let tls = support::serving_cert(&c.dir, "tracing", "cost-analysis-system");
    let shim = |exporting: bool| {
        let (port, metrics) = (support::free_port(), support::free_port());
        let log = std::fs::File::create(c.dir.join(format!("tracing-{exporting}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"));
        command
            .args(["api", "--log-format", "json"])
            .args(["--api-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
            .args(["--tls-cert-file", &tls.cert.to_string_lossy()])
            .args(["--tls-key-file", &tls.key.to_string_lossy()])
            .env("KUBECONFIG", &c.kubeconfig)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(log);
        if exporting {
            command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
                .env("OTEL_SERVICE_NAME", "tracing-overhead-bench");
        }
        let child = command.spawn().expect("start the shim");
        let started = Instant::now();
        while !support::http_get(&format!("127.0.0.1:{metrics}"), "/readyz").contains("200 OK") {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the shim did not sync"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        (child, port)
    };
    let (mut off_shim, off_port) = shim(false);
    let (mut on_shim, on_port) = shim(true);

    c.kubectl_ok(&["create", "serviceaccount", "bench", "-n", &ns]);
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [domains]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}}}\nsubjects: [{{kind: ServiceAccount, name: bench, namespace: {ns}}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    let token = c
        .kubectl_ok(&["create", "token", "bench", "-n", &ns, "--duration=2h"])
        .trim()
        .to_string();
    let client = |port: u16| {
        let mut config =
            kube::Config::new(format!("https://127.0.0.1:{port}").parse().expect("url"));
        config.root_cert = Some(vec![tls.der.clone()]);
        config.auth_info.token = Some(token.clone().into());
        kube::Client::try_from(config).expect("client")
    };
    let (off, on) = (client(off_port), client(on_port));
    let body = serde_json::to_vec(&json!({"domain_id": "domain-bench", "query": {
        "filter": [{"k": "data_source_id", "v": "ds-3", "o": "eq"}],
        "sort": [{"key": "created_at", "desc": true}], "page": {"start": 1, "limit": 100}}}))
    .unwrap();
    let list = |client: kube::Client| {
        let body = body.clone();
        async move {
            let request = http::Request::post("/cost-analysis/v1/jobs/search")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(body)
                .unwrap();
            let answer = client.request_text(request).await.expect("list");
            assert!(answer.contains("\"total_count\""), "{answer}");
        }
    };
    for _ in 0..10 {
        list(off.clone()).await;
        list(on.clone()).await;
    }
    let _ = support::settle(&c.dir, Duration::from_secs(300)).await;
    let (mut t_off, mut t_on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Which goes first alternates too, so neither always follows the other's work.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for exporting in order {
            let t = Instant::now();
            if exporting {
                list(on.clone()).await;
                t_on.push(t.elapsed());
            } else {
                list(off.clone()).await;
                t_off.push(t.elapsed());
            }
        }
    }
    let ((m_off, p_off), (m_on, p_on)) = (stats(t_off), stats(t_on));
    println!(
        "shim REST list as P1 (100 of {n} jobs, HTTPS, {rounds} rounds): off median {m_off:.1} p99 {p_off:.1}; on median {m_on:.1} p99 {p_on:.1}; on/off at the median {:.3}",
        m_on / m_off
    );
    for shim in [&mut off_shim, &mut on_shim] {
        let _ = shim.kill();
        let _ = shim.wait();
    }
    let _ = c.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
