//! The API shim against kube-apiserver, side by side in one run on the real control plane:
//! - a filtered, sorted, paged list (100 of N jobs of one data source) through the shim's SpaceONE
//!   REST API, and the same selection as a kube-apiserver LIST with a label selector and limit 100;
//! - the same list through the aggregated API (kube-apiserver proxying to the shim);
//! - the shim's floor (one job by id);
//! - the REST cancel against one plain PATCH round trip (and the cancel's own status PATCH sent
//!   directly, for reference).
//!
//! Each kind of call is timed in its own phase, once the control plane has settled.
//!   cargo bench --bench shim_vs_apiserver          (BENCH_JOBS=100000 by default)
//!
//! Reports median and p99 latencies and their ratios. Uses COST_ANALYSIS_CLUSTER_DIR if set,
//! otherwise starts a private control plane.

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cost_analysis_operator::resources::CostAnalysisJob;
use cost_analysis_operator::testing::JobBuilder;
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn time<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        if i >= WARM {
            out.push(t.elapsed());
        }
    }
    out
}

/// Untimed calls at the start of every phase (the first calls after the settling pause find
/// parked threads and cold caches on both sides).
const WARM: usize = 10;

/// Waits (up to 10 minutes) for a quiet control plane, so that loading and measuring start on a
/// quiet machine.
async fn settle(dir: &std::path::Path) {
    let (waited, used) = support::settle(dir, Duration::from_secs(600)).await;
    if waited > Duration::from_secs(5) {
        println!(
            "(waited {:.0} s for the control plane to settle; {used} ticks in the last 2 s)",
            waited.as_secs_f64()
        );
    }
}

fn report(name: &str, samples: &mut [Duration]) -> (f64, f64) {
    let (p50, p99) = (ms(percentile(samples, 0.5)), ms(percentile(samples, 0.99)));
    println!(
        "{name:<48} median {p50:>9.3} ms   p99 {p99:>9.3} ms   (n={})",
        samples.len()
    );
    (p50, p99)
}

fn main() {
    // One thread: a call and the client's connection tasks never wait for another thread to wake.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let n: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let c = support::cluster();
    let ns = c.namespace("bench");
    let client = c.client().await;
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &ns);

    settle(&c.dir).await;
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let job = JobBuilder::new(format!("job-{i:08}"))
                    .domain("domain-bench")
                    .data_source(format!("ds-{}", i % 10))
                    .label("data-source", format!("ds-{}", i % 10))
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
    println!("loaded {n} jobs in {:.1} s", t.elapsed().as_secs_f64());

    // The shim alone (no controller: the jobs stay IN_PROGRESS, so every cancel is real).
    let port = support::free_port();
    let metrics = support::free_port();
    let tls = support::serving_cert(&c.dir, "bench", "cost-analysis-system");
    let log = std::fs::File::create(c.dir.join("bench-shim.log")).expect("log");
    let mut shim = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .args([
            "api",
            "--api-addr",
            &format!("127.0.0.1:{port}"),
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
        ])
        .args([
            "--tls-cert-file",
            &tls.cert.to_string_lossy(),
            "--tls-key-file",
            &tls.key.to_string_lossy(),
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start shim");
    let t = Instant::now();
    while !support::http_get(&format!("127.0.0.1:{metrics}"), "/readyz").contains("200 OK") {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the shim did not sync"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("shim index synced in {:.1} s", t.elapsed().as_secs_f64());

    // A caller allowed to read and cancel the domain, with a real ServiceAccount token.
    c.kubectl_ok(&["create", "serviceaccount", "bench", "-n", &ns]);
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [domains]\n  verbs: [get, cancel]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}}}\nsubjects: [{{kind: ServiceAccount, name: bench, namespace: {ns}}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    let token = c
        .kubectl_ok(&["create", "token", "bench", "-n", &ns, "--duration=2h"])
        .trim()
        .to_string();
    let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().expect("url"));
    config.root_cert = Some(vec![tls.der.clone()]);
    config.auth_info.token = Some(token.into());
    let shim_client = Client::try_from(config).expect("shim client");

    let rounds = 300.min(n / 8);
    let search = json!({"domain_id": "domain-bench", "query": {
        "filter": [{"k": "data_source_id", "v": "ds-3", "o": "eq"}],
        "sort": [{"key": "created_at", "desc": true}], "page": {"start": 1, "limit": 100}}});
    let body = serde_json::to_vec(&search).expect("json");
    // Warm both paths (connections, caches) before timing.
    for _ in 0..5 {
        let req = http::Request::post("/cost-analysis/v1/jobs/search")
            .body(body.clone())
            .expect("req");
        let _ = shim_client.request_text(req).await;
        let _ = jobs
            .list(&ListParams::default().labels("data-source=ds-3").limit(100))
            .await;
    }
    let first = shim_client
        .request_text(
            http::Request::post("/cost-analysis/v1/jobs/search")
                .body(body.clone())
                .expect("req"),
        )
        .await
        .expect("shim list");
    let first: serde_json::Value = serde_json::from_str(&first).unwrap_or_default();
    assert_eq!(
        first["results"].as_array().map(Vec::len),
        Some(100.min(n / 10)),
        "{first}"
    );

    // The shim's own histogram around the timed rounds: how much of a list is spent inside it.
    let metrics_addr = format!("127.0.0.1:{metrics}");
    let inside = || {
        let exposed = support::http_get(&metrics_addr, "/metrics");
        let series = |what: &str| {
            let prefix = format!(
                "cost_analysis_operator_api_request_duration_seconds_{what}{{route=\"/cost-analysis/v1/jobs/search\",code=\"200\"}} "
            );
            exposed
                .lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some((series("sum")?, series("count")?))
    };
    // Each call is timed in a phase of its own, after the control plane has settled: interleaving
    // them would charge the shim for kube-apiserver's garbage collection after each LIST.
    settle(&c.dir).await;
    let inside_before = inside();
    let mut shim_list = Vec::new();
    for i in 0..WARM + rounds {
        let t = Instant::now();
        let req = http::Request::post("/cost-analysis/v1/jobs/search")
            .body(body.clone())
            .expect("req");
        shim_client.request_text(req).await.expect("shim list");
        if i >= WARM {
            shim_list.push(t.elapsed());
        }
    }
    let inside_after = inside();
    settle(&c.dir).await;
    let mut api_list = Vec::new();
    for i in 0..WARM + rounds {
        let t = Instant::now();
        jobs.list(&ListParams::default().labels("data-source=ds-3").limit(100))
            .await
            .expect("LIST");
        if i >= WARM {
            api_list.push(t.elapsed());
        }
    }
    // The floor of the shim's HTTP path: one job by id (TLS, HTTP, the auth caches, JSON).
    settle(&c.dir).await;
    let mut shim_get = Vec::new();
    for i in 0..WARM + rounds {
        let t = Instant::now();
        let req = http::Request::get(format!(
            "/cost-analysis/v1/job/job-{:08}?domain_id=domain-bench",
            (i * 7919) % n
        ))
        .body(Vec::new())
        .expect("req");
        shim_client.request_text(req).await.expect("shim get");
        if i >= WARM {
            shim_get.push(t.elapsed());
        }
    }
    let agg_path = format!(
        "/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{ns}/jobs?limit=100&query={}",
        "%7B%22filter%22%3A%5B%7B%22k%22%3A%22data_source_id%22%2C%22v%22%3A%22ds-3%22%2C%22o%22%3A%22eq%22%7D%5D%7D"
    );
    // Register this shim as the aggregated API (replacing whatever an earlier run left).
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&tls.pem);
    let apiservice = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: cost-analysis-system}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: api, namespace: cost-analysis-system}}\nspec: {{type: ExternalName, externalName: 127.0.0.1}}\n---\napiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata: {{name: v1.query.cost-analysis.spaceone.dev}}\nspec:\n  group: query.cost-analysis.spaceone.dev\n  version: v1\n  service: {{namespace: cost-analysis-system, name: api, port: {port}}}\n  caBundle: {ca}\n  groupPriorityMinimum: 1000\n  versionPriority: 15\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &apiservice);
    let aggregated_registered = c
        .kubectl(&[
            "wait",
            "--for=condition=Available",
            "--timeout=60s",
            "apiservice/v1.query.cost-analysis.spaceone.dev",
        ])
        .status
        .success();

    report(
        "shim REST get (one job: the HTTP path's floor)",
        &mut shim_get,
    );
    let (s50, s99) = report("shim REST list (filter+sort+page 100)", &mut shim_list);
    if let (Some(before), Some(after)) = (inside_before, inside_after) {
        println!(
            "  of which inside the shim (its histogram, mean of the timed rounds): {:.3} ms",
            (after.0 - before.0) / (after.1 - before.1).max(1.0) * 1e3
        );
    }
    let (a50, a99) = report(
        "kube-apiserver LIST (labelSelector, limit 100)",
        &mut api_list,
    );
    println!(
        "ratio apiserver/shim: median {:.1}x, p99 {:.1}x",
        a50 / s50,
        a99 / s99
    );
    if aggregated_registered {
        let mut agg = time(WARM + rounds / 2, |_| {
            let (client, path) = (client.clone(), agg_path.clone());
            async move {
                let req = http::Request::get(path).body(Vec::new()).expect("req");
                client.request_text(req).await.expect("aggregated list");
            }
        })
        .await;
        let (g50, g99) = report("aggregated API list (through kube-apiserver)", &mut agg);
        println!(
            "ratio apiserver LIST/aggregated list: median {:.1}x, p99 {:.1}x",
            a50 / g50,
            a99 / g99
        );
    }

    // Cancel (one conditional PATCH written from the index's copy) against one plain merge PATCH
    // of another job, and the cancel's own status write sent straight to kube-apiserver (on jobs
    // nobody touched yet: what of the cancel is the API server's). All three are writes through
    // kube-apiserver to etcd, whose fsync stalls come and go: they alternate, call by call, so the
    // stalls fall on each alike.
    settle(&c.dir).await;
    let (mut cancel, mut patch, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..WARM + rounds {
        let t = Instant::now();
        let req = http::Request::post(format!("/cost-analysis/v1/job/job-{i:08}/cancel"))
            .body(serde_json::to_vec(&json!({"domain_id": "domain-bench"})).expect("json"))
            .expect("req");
        let answer = shim_client.request_text(req).await.expect("cancel");
        if i >= WARM {
            cancel.push(t.elapsed());
        }
        assert!(answer.contains("CANCELED"), "{answer}");

        let t = Instant::now();
        let p = json!({"metadata": {"labels": {"touched": "yes"}}});
        jobs.patch(
            &format!("job-{:08}", n - 1 - i),
            &PatchParams::default(),
            &Patch::Merge(&p),
        )
        .await
        .expect("PATCH");
        if i >= WARM {
            patch.push(t.elapsed());
        }

        let name = format!("job-{:08}", 2 * (WARM + rounds) + i);
        let rv = jobs
            .get(&name)
            .await
            .expect("GET")
            .metadata
            .resource_version;
        let p = json!({"metadata": {"resourceVersion": rv}, "status": {
            "status": "CANCELED", "finishedAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z",
            "createdAt": "2026-01-01T00:00:00.000Z", "progress": "0/0",
            "conditions": [
                {"type": "Complete", "status": "False", "reason": "Canceled", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1},
                {"type": "Failed", "status": "True", "reason": "Canceled", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1},
                {"type": "Finished", "status": "True", "reason": "Canceled", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}});
        let t = Instant::now();
        jobs.patch_status(&name, &PatchParams::default(), &Patch::Merge(&p))
            .await
            .expect("status PATCH");
        if i >= WARM {
            direct.push(t.elapsed());
        }
    }
    let (c50, c99) = report("shim REST cancel", &mut cancel);
    report(
        "  its status PATCH sent directly (for reference)",
        &mut direct,
    );
    let (p50, p99) = report("kube-apiserver PATCH (one round trip)", &mut patch);
    println!(
        "ratio cancel/patch: median {:.2}x, p99 {:.2}x",
        c50 / p50,
        c99 / p99
    );
    let _ = shim.kill();
    let _ = shim.wait();
    // An APIService whose server is gone blocks namespace deletion (discovery fails).
    c.kubectl(&[
        "delete",
        "apiservice",
        "v1.query.cost-analysis.spaceone.dev",
        "--ignore-not-found",
    ]);
    c.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
