//! What tracing costs (issue 21): the shim's list and a reconcile pass, each measured with tracing
//! off (the default: JSON logs at `info`, no exporter) and on (the same plus spans exported over
//! OTLP HTTP/protobuf to a running Jaeger, always sampled), interleaved round by round in one run.
//! - list: what one REST `list` request adds around the engine: the `request` span continuing a
//!   `traceparent`, its fields (domain, code), the request metric, then the engine's list of one
//!   domain's jobs (a 100-job page, newest first, of BENCH_JOBS jobs) and the JSON answer.
//! - reconcile pass: BENCH_PASS IN_PROGRESS jobs of one task each, every one in its `reconcile`
//!   span with the decision recorded, as the controller's pass decides them (no API writes, which
//!   would only make the ratio smaller).
//!
//! TLS, HTTP and authentication are left out (they too only make the ratio smaller). Prints
//! medians and p99 and the ratio on / off at the median.
//!   cargo bench --bench tracing_overhead     (Jaeger from hack/observability-bin.sh)
//!   BENCH_NO_LOGS=1 cargo bench --bench tracing_overhead   (the same without the JSON log layer)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use cost_analysis_operator::lifecycle::{self, JobView, TaskView};
use cost_analysis_operator::metrics::Metrics;
use cost_analysis_operator::metrics::outcomes::CallLabels;
use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, TaskState, TaskTemplate,
};
use cost_analysis_operator::telemetry;
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
            let mut job = CostAnalysisJob::new(
                &format!("job-{i:06}"),
                CostAnalysisJobSpec {
                    domain_id: "domain-0".into(),
                    data_source_id: "ds-0".into(),
                    options: None,
                    tasks: vec![TaskTemplate {
                        id: "t1".into(),
                        options: None,
                        template: None,
                        backoff_limit: None,
                    }],
                    timeout_seconds: Some(3600),
                    cancel: false,
                    ttl_seconds_after_finished: None,
                    last_changed_at: None,
                },
            );
            job.metadata.namespace = Some("ns".into());
            job.metadata.generation = Some(1);
            job.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            job
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
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink)
                .with_filter(tracing_subscriber::filter::filter_fn(|_| {
                    std::env::var_os("BENCH_NO_LOGS").is_none()
                })),
        );
    let on = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(telemetry::otel_layer(&provider))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink)
                .with_filter(tracing_subscriber::filter::filter_fn(|_| {
                    std::env::var_os("BENCH_NO_LOGS").is_none()
                })),
        );
    let off = tracing::Dispatch::new(off);
    let on = tracing::Dispatch::new(on);

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
    let tasks = [TaskView {
        task_id: "t1".into(),
        state: TaskState::InProgress,
        finished_at: None,
    }];
    let reconcile_pass = || {
        for job in &objects {
            let span = telemetry::reconcile_span("ns", job.metadata.name.as_deref().unwrap());
            span.in_scope(|| {
                let view = JobView::of(job).unwrap();
                let decision = lifecycle::decide(&view, &tasks, Utc::now(), &config);
                let span = tracing::Span::current();
                span.record("decision", "IN_PROGRESS (written)");
                span.record("writes", decision.create_tasks.len() + 1);
                tracing::debug!(status = "IN_PROGRESS", "decided");
                std::hint::black_box(decision.requeue_after);
            });
        }
    };

    println!(
        "{n} jobs in the catalog, a pass of {pass} jobs, {rounds} rounds, interleaved (medians and p99 in microseconds)"
    );
    for (name, work) in [
        ("shim list (100 of one domain)", &list as &dyn Fn()),
        ("reconcile pass", &reconcile_pass as &dyn Fn()),
    ] {
        // Warm-up under both.
        for d in [&off, &on] {
            tracing::dispatcher::with_default(d, || (0..10).for_each(|_| work()));
        }
        let (mut t_off, mut t_on) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (d, out) in [(&off, &mut t_off), (&on, &mut t_on)] {
                tracing::dispatcher::with_default(d, || {
                    let t = Instant::now();
                    work();
                    out.push(t.elapsed());
                });
            }
        }
        let ((m_off, p_off), (m_on, p_on)) = (stats(t_off), stats(t_on));
        println!(
            "{name}: off median {m_off:.1} p99 {p_off:.1}; on median {m_on:.1} p99 {p_on:.1}; on/off at the median {:.3}",
            m_on / m_off
        );
    }
    let exported = runtime.spawn_blocking(move || provider.shutdown());
    let _ = runtime.block_on(exported);
}
