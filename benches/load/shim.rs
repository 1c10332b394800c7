//! The API shim under load over REST and gRPC while jobs are created and canceled (see load.rs).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cost_analysis_operator::api::grpc::pb;
use cost_analysis_operator::resources::{CostAnalysisJob, JobStatus};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use pb::job::job_client::JobClient;
use serde_json::json;

use super::common::*;
use super::{DOMAIN, env, support};

/// Prints one window of the shim load: answers, errors, the shim's CPU per answer, latency per
/// kind of request.
fn report(
    protocol: &str,
    results: &[Vec<(usize, f64)>],
    seconds: usize,
    errors: &[String],
    shim_ticks: u64,
) {
    let mut all: Vec<f64> = results.iter().flatten().map(|(_, ms)| *ms).collect();
    let n = all.len();
    println!(
        "shim under load over {protocol}: {n} answers ({:.0}/s), {} errors; shim CPU {:.1} s, {:.0} us per answer",
        n as f64 / seconds as f64,
        errors.len(),
        shim_ticks as f64 / 100.0,
        shim_ticks as f64 * 1e4 / n.max(1) as f64
    );
    for (kind, name) in [
        (0, "list (filter, sort, page 100)"),
        (1, "stat (group by status)"),
        (2, "get one job"),
    ] {
        let mut ms: Vec<f64> = results
            .iter()
            .flatten()
            .filter(|(k, _)| *k == kind)
            .map(|(_, ms)| *ms)
            .collect();
        println!("  {name:<32} ms: {}", summary(&mut ms));
    }
    println!("  {:<32} ms: {}", "all", summary(&mut all));
}

fn with_token<M>(message: M, token: &str) -> tonic::Request<M> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().expect("token metadata"));
    request
}

/// The REST list's request as a JobQuery: filter on a data source, newest first, page of 100.
fn grpc_list(i: usize) -> pb::job::JobQuery {
    use pb::core::{Filter, Page, Query, Sort, filter};
    pb::job::JobQuery {
        domain_id: DOMAIN.into(),
        query: Some(Query {
            filter: vec![Filter {
                key_alias: Some(filter::KeyAlias::K("data_source_id".into())),
                value_alias: Some(filter::ValueAlias::V(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(format!(
                        "ds-{}",
                        i % 10
                    ))),
                })),
                operator_alias: Some(filter::OperatorAlias::O("eq".into())),
            }],
            sort: Some(Sort {
                key: "created_at".into(),
                desc: true,
                keys: Vec::new(),
            }),
            page: Some(Page {
                start: 1,
                limit: 100,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The REST stat's request as a JobStatQuery: count per status.
fn grpc_stat() -> pb::job::JobStatQuery {
    use pb::core::{
        AggregateGroup, AggregateGroupField, AggregateGroupKey, StatisticsAggregate,
        StatisticsQuery, aggregate_group_field as field, aggregate_group_key as key,
        statistics_aggregate::AggregateAlias,
    };
    pb::job::JobStatQuery {
        domain_id: DOMAIN.into(),
        query: Some(StatisticsQuery {
            aggregate: vec![StatisticsAggregate {
                aggregate_alias: Some(AggregateAlias::Group(AggregateGroup {
                    keys: vec![AggregateGroupKey {
                        key_alias: Some(key::KeyAlias::Key("status".into())),
                        name_alias: Some(key::NameAlias::Name("status".into())),
                        ..Default::default()
                    }],
                    fields: vec![AggregateGroupField {
                        operator_alias: Some(field::OperatorAlias::Operator("count".into())),
                        name_alias: Some(field::NameAlias::Name("n".into())),
                        ..Default::default()
                    }],
                })),
            }],
            ..Default::default()
        }),
    }
}

pub async fn shim(c: &'static support::Cluster, client: &Client, ns: &str, background: usize) {
    let clients = env("LOAD_SHIM_CLIENTS", 16);
    let seconds = env("LOAD_SHIM_SECONDS", 30);
    let port = support::free_port();
    let grpc_port = support::free_port();
    let tls = support::serving_cert(&c.dir, "load", "cost-analysis-system");
    let api = Proc::start(
        c,
        &[
            "api",
            "--api-addr",
            &format!("127.0.0.1:{port}"),
            "--api-namespace",
            ns,
            "--tls-cert-file",
            &tls.cert.to_string_lossy(),
            "--tls-key-file",
            &tls.key.to_string_lossy(),
            "--grpc-plaintext-addr",
            &format!("127.0.0.1:{grpc_port}"),
        ],
        "load-shim.log",
    );
    let t = Instant::now();
    while !support::http_get(&api.metrics, "/readyz").contains("200 OK") {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the shim did not sync"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), ns);
    let total = jobs
        .list_metadata(&ListParams::default())
        .await
        .expect("LIST")
        .items
        .len();
    println!(
        "== shim: {total} jobs indexed in {:.1} s; {clients} clients for {seconds} s (list/stat/get) while jobs are created and canceled",
        t.elapsed().as_secs_f64()
    );
    c.kubectl_ok(&["create", "serviceaccount", "load", "-n", ns]);
    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {ns}}}\nrules:\n- apiGroups: [query.cost-analysis.spaceone.dev]\n  resources: [domains]\n  verbs: [get, cancel]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}}}\nsubjects: [{{kind: ServiceAccount, name: load, namespace: {ns}}}]\n"
    );
    c.kubectl_stdin(&["apply", "-f", "-"], &rbac);
    let token = c
        .kubectl_ok(&["create", "token", "load", "-n", ns, "--duration=2h"])
        .trim()
        .to_string();
    let mut config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().expect("url"));
    config.root_cert = Some(vec![tls.der.clone()]);
    config.auth_info.token = Some(token.clone().into());
    let shim_client = Client::try_from(config).expect("shim client");
    let (rss0, hwm0) = api.memory();

    // The changes: a new job and a cancel of a job in flight every 50 ms.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changer = {
        let (jobs, stop) = (jobs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                create(&jobs, &job_object(&format!("new-{i:05}"), 1, 86_400, i)).await;
                let p = json!({"spec": {"cancel": true}});
                if i < background {
                    jobs.patch(
                        &format!("bg-{i:06}"),
                        &PatchParams::default(),
                        &Patch::Merge(&p),
                    )
                    .await
                    .expect("cancel");
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            i
        })
    };
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let ticks0 = api.cpu_ticks();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let results: Vec<Vec<(usize, f64)>> = futures::future::join_all((0..clients).map(|w| {
        let (shim_client, errors) = (shim_client.clone(), errors.clone());
        async move {
            let mut out = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let kind = i % 3;
                let req = match kind {
                    0 => http::Request::post("/cost-analysis/v1/jobs/search").body(
                        serde_json::to_vec(&json!({"domain_id": DOMAIN, "query": {
                            "filter": [{"k": "data_source_id", "v": format!("ds-{}", i % 10), "o": "eq"}],
                            "sort": [{"key": "created_at", "desc": true}],
                            "page": {"start": 1, "limit": 100}}}))
                        .expect("json"),
                    ),
                    1 => http::Request::post("/cost-analysis/v1/jobs/stat").body(
                        serde_json::to_vec(&json!({"domain_id": DOMAIN, "query": {"aggregate": [
                            {"group": {"keys": [{"key": "status", "name": "status"}],
                                       "fields": [{"operator": "count", "name": "n"}]}}]}}))
                        .expect("json"),
                    ),
                    _ => http::Request::get(format!(
                        "/cost-analysis/v1/job/bg-{:06}?domain_id={DOMAIN}",
                        (i * 7919) % background.max(1)
                    ))
                    .body(Vec::new()),
                }
                .expect("request");
                let t = Instant::now();
                match shim_client.request_text(req).await {
                    Ok(body) if body.contains("\"error_code\"") => {
                        errors.lock().unwrap().push(body)
                    }
                    Ok(_) => out.push((kind, t.elapsed().as_secs_f64() * 1e3)),
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
                i += clients;
            }
            out
        }
    }))
    .await;
    let rest_errors = std::mem::take(&mut *errors.lock().unwrap());
    let ticks1 = api.cpu_ticks();
    report("REST", &results, seconds, &rest_errors, ticks1 - ticks0);

    // The same requests over gRPC (the plaintext h2c port, one multiplexed channel, the token in
    // the `token` metadata as SpaceONE clients send it), while the changes go on.
    let channels = env("LOAD_SHIM_GRPC_CHANNELS", 1).max(1);
    let mut channel = Vec::new();
    for _ in 0..channels {
        channel.push(
            tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("gRPC channel"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let ticks1 = api.cpu_ticks();
    let grpc_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let grpc_results: Vec<Vec<(usize, f64)>> = futures::future::join_all((0..clients).map(|w| {
        let (channel, errors, token) = (
            channel[w % channels].clone(),
            grpc_errors.clone(),
            token.clone(),
        );
        async move {
            let mut client = JobClient::new(channel);
            let mut out = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let kind = i % 3;
                let t = Instant::now();
                let answer = match kind {
                    0 => client
                        .list(with_token(grpc_list(i), &token))
                        .await
                        .map(|_| ()),
                    1 => client
                        .stat(with_token(grpc_stat(), &token))
                        .await
                        .map(|_| ()),
                    _ => client
                        .get(with_token(
                            pb::job::GetJobRequest {
                                job_id: format!("bg-{:06}", (i * 7919) % background.max(1)),
                                domain_id: DOMAIN.into(),
                                only: Vec::new(),
                            },
                            &token,
                        ))
                        .await
                        .map(|_| ()),
                };
                match answer {
                    Ok(()) => out.push((kind, t.elapsed().as_secs_f64() * 1e3)),
                    Err(e) => errors.lock().unwrap().push(format!("{e:?}")),
                }
                i += clients;
            }
            out
        }
    }))
    .await;
    let grpc_errors = std::mem::take(&mut *grpc_errors.lock().unwrap());
    report(
        "gRPC",
        &grpc_results,
        seconds,
        &grpc_errors,
        api.cpu_ticks() - ticks1,
    );

    stop.store(true, Ordering::Relaxed);
    let changes = changer.await.expect("changer");
    let (rss1, hwm1) = api.memory();
    println!(
        "{changes} jobs created and {changes} canceled during the two windows; shim memory: VmRSS {} -> {} MiB, VmHWM {} -> {} MiB (indexed, then after the load)",
        rss0 / 1024,
        rss1 / 1024,
        hwm0 / 1024,
        hwm1 / 1024
    );
    for (protocol, errors) in [("REST", &rest_errors), ("gRPC", &grpc_errors)] {
        assert!(
            errors.is_empty(),
            "shim errors over {protocol}: {:?}",
            &errors[..errors.len().min(5)]
        );
    }

    // The index follows the changes: its counts per state equal a fresh LIST (once settled).
    let stat_body = serde_json::to_vec(&json!({"domain_id": DOMAIN, "query": {"aggregate": [
        {"group": {"keys": [{"key": "status", "name": "status"}],
                   "fields": [{"operator": "count", "name": "n"}]}}]}}))
    .expect("json");
    let t = Instant::now();
    loop {
        let listed: BTreeMap<String, u64> = jobs
            .list(&ListParams::default())
            .await
            .expect("LIST")
            .items
            .iter()
            .fold(BTreeMap::new(), |mut m, j| {
                let s = j
                    .status
                    .as_ref()
                    .and_then(|s| s.status)
                    .map_or("", JobStatus::as_str);
                *m.entry(s.to_string()).or_insert(0) += 1;
                m
            });
        let answer = shim_client
            .request_text(
                http::Request::post("/cost-analysis/v1/jobs/stat")
                    .body(stat_body.clone())
                    .expect("req"),
            )
            .await
            .expect("stat");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("json");
        let indexed: BTreeMap<String, u64> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["status"].as_str().unwrap_or_default().to_string(),
                    r["n"].as_f64().unwrap_or(0.0) as u64,
                )
            })
            .collect();
        if listed == indexed {
            println!("shim counts equal a fresh LIST: {indexed:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the shim's counts {indexed:?} never matched the LIST {listed:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    c.kubectl(&[
        "delete",
        "clusterrolebinding,clusterrole",
        ns,
        "--ignore-not-found",
    ]);
}
