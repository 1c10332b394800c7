//! The largest answers a SpaceONE client can ask for, many at once (issue 22, finding 6): an API
//! shim over `LARGE_JOBS` jobs (default 20,000) with ~1.2 KB of options each, `LARGE_CLIENTS`
//! clients (default 16) repeating `stat {distinct: "options"}` for `LARGE_SECONDS` (default 20)
//! over REST, then as long over gRPC, while a probe asks `/healthz` every 20 ms. Reported per
//! protocol: answers, refusals (ERROR_UNAVAILAVBLE while the answer budget is taken), the probe's
//! p50/p99/max and the shim's VmHWM.
//!
//!   cargo bench --bench large_answers
//!   LARGE_JOBS=2000 LARGE_SECONDS=5 cargo bench --bench large_answers     (a quick run)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cost_analysis_operator::api::grpc::pb;
use cost_analysis_operator::resources::CostAnalysisJob;
use cost_analysis_operator::testing::JobBuilder;
use futures::StreamExt;
use kube::api::PostParams;
use kube::{Api, Client};
use pb::job::job_client::JobClient;
use serde_json::{Map, Value, json};

const DOMAIN: &str = "domain-large";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// About 1.2 KB of options, different for every job, as a cost data source's would be.
fn options(i: usize) -> Map<String, Value> {
    let accounts: Vec<Value> = (0..36)
        .map(|k| json!(format!("account-{:06}-{k:02}", (i * 31 + k) % 100_000)))
        .collect();
    let mut m = Map::new();
    m.insert("region".into(), json!(format!("region-{}", i % 17)));
    m.insert("start".into(), json!("2026-11-01"));
    m.insert("end".into(), json!("2026-11-30"));
    m.insert("accounts".into(), Value::Array(accounts));
    m.insert(
        "filters".into(),
        json!({"services": ["compute", "storage", "network", "database"],
               "tags": {"team": format!("team-{}", i % 40), "env": "production",
                        "cost-center": format!("cc-{:05}", i % 977)},
               "granularity": "DAILY", "currency": "USD", "include_credits": i.is_multiple_of(2)}),
    );
    m.insert(
        "secret_data_ref".into(),
        json!(format!(
            "secret/data/cost/{i:08}/{}",
            "x".repeat(200 + i % 50)
        )),
    );
    m
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hwm_mib(pid: u32) -> u64 {
    support::proc_memory(pid, "VmHWM") / 1_048_576
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `/healthz` every 20 ms on its own thread until `stop`; the latencies in ms.
fn probe(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let answer = support::http_get(&addr, "/healthz");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            out.push(if answer.contains("200 OK") {
                ms
            } else {
                f64::INFINITY
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    })
}

fn report(
    protocol: &str,
    answers: usize,
    refused: usize,
    errors: &[String],
    mut probe: Vec<f64>,
    hwm: u64,
) {
    probe.sort_by(f64::total_cmp);
    println!(
        "{protocol:>5}: {answers} answers, {refused} refused for load, {} other errors; /healthz p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} probes; shim VmHWM {hwm} MiB",
        errors.len(),
        percentile(&probe, 0.5),
        percentile(&probe, 0.99),
        probe.last().copied().unwrap_or(f64::NAN),
        probe.len(),
    );
    if let Some(e) = errors.first() {
        println!(
            "       first error: {}",
            e.chars().take(300).collect::<String>()
        );
    }
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn run() {
    let (n, clients, seconds) = (
        env("LARGE_JOBS", 20_000),
        env("LARGE_CLIENTS", 16),
        env("LARGE_SECONDS", 20) as u64,
    );
    let c = support::cluster();
    let client = c.client().await;
    let ns = c.namespace("large");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let jobs = jobs.clone();
            async move {
                let job = JobBuilder::new(format!("job-{i:06}"))
                    .domain(DOMAIN)
                    .data_source(format!("ds-{}", i % 10))
                    .options(options(i))
                    .timeout(86_400)
                    .build();
                for _ in 0..20 {
                    match jobs.create(&PostParams::default(), &job).await {
                        Ok(_) => return,
                        Err(kube::Error::Api(e)) if e.code == 409 => return,
                        Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                    }
                }
                panic!("cannot create job-{i:06}");
            }
        })
        .await;
    println!(
        "== large answers: {n} jobs with ~{} bytes of options created in {:.0} s; {clients} clients for {seconds} s per protocol",
        serde_json::to_vec(&options(0)).unwrap().len(),
        t.elapsed().as_secs_f64()
    );

    let (port, grpc_port, metrics_port) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let tls = support::serving_cert(&c.dir, "large", "cost-analysis-system");
    let health = format!("127.0.0.1:{metrics_port}");
    let log = std::fs::File::create(c.dir.join("large-answers-shim.log")).expect("log");
    let shim = Proc(
        Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
            .args(["api", "--metrics-addr", &health])
            .args(["--api-addr", &format!("127.0.0.1:{port}")])
            .args(["--grpc-plaintext-addr", &format!("127.0.0.1:{grpc_port}")])
            .args(["--api-namespace", &ns])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .env("KUBECONFIG", &c.kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the shim"),
    );
    let pid = shim.0.id();
    let t = Instant::now();
    while !support::http_get(&health, "/readyz").contains("200 OK") {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the shim did not sync"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.kubectl_ok(&["create", "serviceaccount", "large", "-n", &ns]);
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [domains]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}}}\nsubjects: [{{kind: ServiceAccount, name: large, namespace: {ns}}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    let token = c
        .kubectl_ok(&["create", "token", "large", "-n", &ns, "--duration=2h"])
        .trim()
        .to_string();
    let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().expect("url"));
    config.root_cert = Some(vec![tls.der.clone()]);
    config.auth_info.token = Some(token.clone().into());
    config.read_timeout = Some(Duration::from_secs(120));
    let rest = Client::try_from(config).expect("shim client");
    println!(
        "shim indexed in {:.1} s; VmHWM {} MiB before the load",
        t.elapsed().as_secs_f64(),
        hwm_mib(pid)
    );

    let body = serde_json::to_vec(&json!({"domain_id": DOMAIN, "query": {"distinct": "options"}}))
        .expect("json");
    // One answer first, to say how large it is.
    let answer = rest
        .request_text(
            http::Request::post("/cost-analysis/v1/jobs/stat")
                .body(body.clone())
                .expect("request"),
        )
        .await
        .expect("a distinct of every job's options");
    println!("one answer: {} bytes of JSON", answer.len());

    // REST.
    let stop = Arc::new(AtomicBool::new(false));
    let probing = probe(health.clone(), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let counts: Vec<(usize, usize)> = futures::future::join_all((0..clients).map(|_| {
        let (rest, body, errors) = (rest.clone(), body.clone(), errors.clone());
        async move {
            let (mut ok, mut refused) = (0, 0);
            while Instant::now() < deadline {
                let request = http::Request::post("/cost-analysis/v1/jobs/stat")
                    .body(body.clone())
                    .expect("request");
                match rest.request_text(request).await {
                    Ok(text) if text.starts_with("{\"results\"") => ok += 1,
                    Ok(text) if text.contains("ERROR_UNAVAILAVBLE") => refused += 1,
                    Ok(text) => errors.lock().unwrap().push(text),
                    Err(e) if e.to_string().contains("ERROR_UNAVAILAVBLE") => refused += 1,
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
            }
            (ok, refused)
        }
    }))
    .await;
    stop.store(true, Ordering::Relaxed);
    let probes = probing.join().expect("probe");
    let rest_errors = std::mem::take(&mut *errors.lock().unwrap());
    report(
        "REST",
        counts.iter().map(|c| c.0).sum(),
        counts.iter().map(|c| c.1).sum(),
        &rest_errors,
        probes,
        hwm_mib(pid),
    );

    // gRPC, on the plaintext port, one channel per client.
    let stop = Arc::new(AtomicBool::new(false));
    let probing = probe(health.clone(), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut channels = Vec::new();
    for _ in 0..clients {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("gRPC channel"),
        );
    }
    let counts: Vec<(usize, usize)> = futures::future::join_all(channels.into_iter().map(|ch| {
        let (token, errors) = (token.clone(), errors.clone());
        async move {
            let mut client = JobClient::new(ch).max_decoding_message_size(usize::MAX);
            let (mut ok, mut refused) = (0, 0);
            while Instant::now() < deadline {
                let mut request = tonic::Request::new(pb::job::JobStatQuery {
                    domain_id: DOMAIN.into(),
                    query: Some(pb::core::StatisticsQuery {
                        distinct: "options".into(),
                        ..Default::default()
                    }),
                });
                request
                    .metadata_mut()
                    .insert("token", token.parse().expect("token"));
                match client.stat(request).await {
                    Ok(_) => ok += 1,
                    Err(s) if s.code() == tonic::Code::Unavailable => refused += 1,
                    Err(s) => errors.lock().unwrap().push(format!("{s:?}")),
                }
            }
            (ok, refused)
        }
    }))
    .await;
    stop.store(true, Ordering::Relaxed);
    let probes = probing.join().expect("probe");
    let grpc_errors = std::mem::take(&mut *errors.lock().unwrap());
    report(
        "gRPC",
        counts.iter().map(|c| c.0).sum(),
        counts.iter().map(|c| c.1).sum(),
        &grpc_errors,
        probes,
        hwm_mib(pid),
    );
    c.kubectl(&[
        "delete",
        "clusterrolebinding,clusterrole",
        &ns,
        "--ignore-not-found",
    ]);
    assert!(
        rest_errors.is_empty() && grpc_errors.is_empty(),
        "errors other than refusals for load"
    );
}
