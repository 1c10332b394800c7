//! The API shim under load over REST and gRPC while jobs are created and canceled (see load.rs).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cost_analysis_operator::api::grpc::pb;
use cost_analysis_operator::resources::{CostAnalysisJob, JobStatus};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

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
        if !ms.is_empty() {
            println!("  {name:<32} ms: {}", summary(&mut ms));
        }
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

/// One client's connection to the shim: REST requests on an HTTP/2 connection, or gRPC calls on
/// a channel.
enum Wire {
    Rest(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Grpc(tonic::client::Grpc<Channel>),
}

/// The list and stat requests of the mix, encoded once for each protocol (the list for each of the
/// ten data sources, then the stat), so that the load tool's work per request is the same for
/// both: send bytes, read the whole answer as bytes, check it; neither side decodes answers.
struct Bodies {
    rest: Vec<Bytes>,
    grpc: Vec<Bytes>,
}

impl Bodies {
    fn new() -> Self {
        use prost::Message;
        let rest_list = |ds: usize| {
            json!({"domain_id": DOMAIN, "query": {
                "filter": [{"k": "data_source_id", "v": format!("ds-{ds}"), "o": "eq"}],
                "sort": [{"key": "created_at", "desc": true}],
                "page": {"start": 1, "limit": 100}}})
        };
        let rest_stat = json!({"domain_id": DOMAIN, "query": {"aggregate": [
            {"group": {"keys": [{"key": "status", "name": "status"}],
                       "fields": [{"operator": "count", "name": "n"}]}}]}});
        let mut rest: Vec<Bytes> = (0..10)
            .map(|ds| Bytes::from(serde_json::to_vec(&rest_list(ds)).expect("json")))
            .collect();
        rest.push(Bytes::from(serde_json::to_vec(&rest_stat).expect("json")));
        let mut grpc: Vec<Bytes> = (0..10)
            .map(|ds| Bytes::from(grpc_list(ds).encode_to_vec()))
            .collect();
        grpc.push(Bytes::from(grpc_stat().encode_to_vec()));
        Bodies { rest, grpc }
    }
}

/// What every client of a window sends: the kinds of request in turn (0 list, 1 stat, 2 get),
/// their bodies, the token, the shim's port and how many `bg-*` jobs a get picks from.
struct Mix {
    kinds: Vec<usize>,
    bodies: Bodies,
    token: String,
    port: u16,
    background: usize,
}

/// A tonic codec that passes message bytes through: requests encoded beforehand, answers read
/// whole and not decoded.
struct BytesCodec;
struct BytesEncoder;
struct BytesDecoder;

impl tonic::codec::Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}

impl tonic::codec::Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// An HTTP/2 connection over TLS (ALPN h2) to the shim's HTTPS port, trusting its certificate.
async fn h2_over_tls(
    port: u16,
    der: &[u8],
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(der.to_vec()))
        .expect("trust the shim's certificate");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "the shim did not choose HTTP/2"
    );
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// A gRPC channel over TLS to the same HTTPS port (tonic's own HTTP/2 over rustls).
async fn grpc_over_tls(port: u16, pem: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS config")
        .connect()
        .await
        .expect("gRPC channel over TLS")
}

/// Request `i` of the mix as REST: list (filter, sort, page of 100), stat (count per status) or
/// get one job, by `kind` (0, 1, 2).
fn rest_request(kind: usize, i: usize, mix: &Mix) -> http::Request<Full<Bytes>> {
    let (bodies, token, port, background) = (&mix.bodies, &mix.token, mix.port, mix.background);
    let base = format!("https://localhost:{port}/cost-analysis/v1");
    let (method, uri, body) = match kind {
        0 => (
            "POST",
            format!("{base}/jobs/search"),
            bodies.rest[i % 10].clone(),
        ),
        1 => ("POST", format!("{base}/jobs/stat"), bodies.rest[10].clone()),
        _ => (
            "GET",
            format!(
                "{base}/job/bg-{:06}?domain_id={DOMAIN}",
                (i * 7919) % background.max(1)
            ),
            Bytes::new(),
        ),
    };
    http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("request")
}

/// One window: every client sends the mix on its wire as fast as it is answered for `seconds`.
/// Returns the latencies per client (kind, ms), the errors and the shim's CPU ticks meanwhile.
async fn window(
    api: &Proc,
    wires: Vec<Wire>,
    seconds: usize,
    mix: &Mix,
) -> (Vec<Vec<(usize, f64)>>, Vec<String>, u64) {
    let clients = wires.len();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let ticks0 = api.cpu_ticks();
    let results = futures::future::join_all(wires.into_iter().enumerate().map(|(w, mut wire)| {
        let errors = errors.clone();
        async move {
            let mut out = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let kind = mix.kinds[i % mix.kinds.len()];
                let t = Instant::now();
                let answer = match &mut wire {
                    Wire::Rest(send) => rest_call(send, rest_request(kind, i, mix)).await,
                    Wire::Grpc(client) => grpc_call(client, kind, i, mix).await,
                };
                match answer {
                    Ok(()) => out.push((kind, t.elapsed().as_secs_f64() * 1e3)),
                    Err(e) => errors.lock().unwrap().push(e),
                }
                i += clients;
            }
            out
        }
    }))
    .await;
    let ticks = api.cpu_ticks() - ticks0;
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    (results, errors, ticks)
}

/// Sends one REST request and reads its whole answer; an error is a transport error, a non-2xx
/// status or a SpaceONE error body.
async fn rest_call(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<(), String> {
    send.ready().await.map_err(|e| e.to_string())?;
    let answer = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() || text.contains("\"error_code\"") {
        return Err(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(())
}

/// Request `i` of the mix as gRPC, the token in the `token` metadata as SpaceONE clients send it;
/// the answer is read whole, not decoded.
async fn grpc_call(
    client: &mut tonic::client::Grpc<Channel>,
    kind: usize,
    i: usize,
    mix: &Mix,
) -> Result<(), String> {
    use prost::Message;
    let (bodies, token, background) = (&mix.bodies, mix.token.as_str(), mix.background);
    let (path, body) = match kind {
        0 => (
            "/spaceone.api.cost_analysis.v1.Job/list",
            bodies.grpc[i % 10].clone(),
        ),
        1 => (
            "/spaceone.api.cost_analysis.v1.Job/stat",
            bodies.grpc[10].clone(),
        ),
        _ => (
            "/spaceone.api.cost_analysis.v1.Job/get",
            Bytes::from(
                pb::job::GetJobRequest {
                    job_id: format!("bg-{:06}", (i * 7919) % background.max(1)),
                    domain_id: DOMAIN.into(),
                    only: Vec::new(),
                }
                .encode_to_vec(),
            ),
        ),
    };
    client.ready().await.map_err(|e| e.to_string())?;
    client
        .unary(
            with_token(body, token),
            http::uri::PathAndQuery::from_static(path),
            BytesCodec,
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

pub async fn shim(c: &'static support::Cluster, client: &Client, ns: &str, background: usize) {
    let clients = env("LOAD_SHIM_CLIENTS", 16);
    let seconds = env("LOAD_SHIM_SECONDS", 15);
    let port = support::free_port();
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
        "== shim: {total} jobs indexed in {:.1} s; {clients} clients, windows of {seconds} s alternating REST and gRPC on the HTTPS port (list/stat/get) while jobs are created and canceled",
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
    // Both protocols over the same HTTPS port, by the same HTTP/2 client stack (hyper's h2 over
    // rustls, ALPN h2), on as many connections each, with the same clients and request mix; the
    // windows alternate so that drift of the shared machine falls on both alike.
    let connections = env("LOAD_SHIM_CONNECTIONS", 1).max(1);
    let windows = env("LOAD_SHIM_WINDOWS", 2).max(1);
    let mut rest = Vec::new();
    let mut grpc = Vec::new();
    for _ in 0..connections {
        rest.push(h2_over_tls(port, &tls.der).await);
        grpc.push(grpc_over_tls(port, &tls.pem).await);
    }
    // The mix: list, stat and get in turn, or only those LOAD_SHIM_KINDS names.
    let wanted = std::env::var("LOAD_SHIM_KINDS").unwrap_or_else(|_| "list,stat,get".into());
    let kinds: Vec<usize> = ["list", "stat", "get"]
        .iter()
        .enumerate()
        .filter(|(_, k)| wanted.split(',').any(|w| w.trim() == **k))
        .map(|(n, _)| n)
        .collect();
    assert!(
        !kinds.is_empty(),
        "LOAD_SHIM_KINDS names none of list, stat, get"
    );
    let mix = Mix {
        kinds,
        bodies: Bodies::new(),
        token: token.clone(),
        port,
        background,
    };
    let mut errors: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for round in 0..windows {
        for protocol in ["REST", "gRPC"] {
            let wires: Vec<Wire> = (0..clients)
                .map(|w| match protocol {
                    "REST" => Wire::Rest(rest[w % connections].clone()),
                    _ => Wire::Grpc(tonic::client::Grpc::new(grpc[w % connections].clone())),
                })
                .collect();
            let (results, window_errors, ticks) = window(&api, wires, seconds, &mix).await;
            report(
                &format!("{protocol} (window {}/{windows})", round + 1),
                &results,
                seconds,
                &window_errors,
                ticks,
            );
            let total = totals.entry(protocol).or_default();
            total.0 += results.iter().map(Vec::len).sum::<usize>();
            total.1 += ticks;
            errors.entry(protocol).or_default().extend(window_errors);
        }
    }
    let per = |p: &str| {
        let (n, ticks) = totals.get(p).copied().unwrap_or_default();
        let rate = n as f64 / (seconds * windows) as f64;
        (rate, ticks as f64 * 1e4 / n.max(1) as f64)
    };
    let ((rest_rate, rest_us), (grpc_rate, grpc_us)) = (per("REST"), per("gRPC"));
    println!(
        "shim over the wire (same HTTPS port, {wanted}, {clients} clients, {connections} HTTP/2 connection(s) per protocol, {windows} x {seconds} s per protocol): REST {rest_rate:.0}/s at {rest_us:.0} us CPU per answer, gRPC {grpc_rate:.0}/s at {grpc_us:.0} us; gRPC/REST: answers/s {:.2}x, CPU per answer {:.2}x",
        grpc_rate / rest_rate.max(f64::MIN_POSITIVE),
        grpc_us / rest_us.max(f64::MIN_POSITIVE)
    );

    stop.store(true, Ordering::Relaxed);
    let changes = changer.await.expect("changer");
    let (rss1, hwm1) = api.memory();
    println!(
        "{changes} jobs created and {changes} canceled during the windows; shim memory: VmRSS {} -> {} MiB, VmHWM {} -> {} MiB (indexed, then after the load)",
        rss0 / 1024,
        rss1 / 1024,
        hwm0 / 1024,
        hwm1 / 1024
    );
    for (protocol, errors) in &errors {
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
