//! The load benchmarks of issue 10 on the real control plane (docs/reliability.md, "Load"):
//!
//! - **P5**: jobs with `LOAD_TASKS` tasks each are driven to completion by parallel test workers
//!   (each task marked SUCCESS by a status patch, `LOAD_WORKERS` at once). The same load is settled
//!   once by the controller and once by a *plain client*: a kube client in this process that makes
//!   the job status writes the controller would make (the same status document, computed by the
//!   same `lifecycle::decide`, one conditional server-side apply per change, one transition event
//!   per job), fed by a plain task watch, with the controller's concurrency (32, one job at a
//!   time per shard) and none of the controller machinery (queue, scheduler, store lookups,
//!   cache-sync waits). Rounds alternate (controller first in even rounds, plain first in odd
//!   ones) so that drift of the shared machine falls on both alike. Rate = jobs settled per second
//!   from the first worker write to the last job seen SUCCESS by a watch of the bench.
//! - **P6**: `LOAD_P6_JOBS` jobs in flight (`LOAD_P6_TASKS` tasks each, default 1): all but
//!   `LOAD_P6_TIMEOUTS` with a one-day timeout, and a batch of `LOAD_P6_TIMEOUTS` probes whose
//!   deadlines are spread at `LOAD_P6_RATE` per second from `LOAD_P6_LEAD` seconds on (whole
//!   seconds, as creationTimestamp and timeoutSeconds are); the delay from each deadline (creationTimestamp + timeoutSeconds +
//!   the 1 s clock-skew allowance) to the TIMEOUT status, by the status's `finishedAt` and by the
//!   time a watch of the bench saw it. Then the same again right after a failover: the leader is
//!   SIGKILLed `LOAD_P6_FAILOVER_LEAD` seconds before the first deadline of a second batch and the
//!   standby (running all along with warm caches, lease duration 3 s) takes over and decides
//!   everything.
//! - **shim**: the API shim over those jobs under `LOAD_SHIM_CLIENTS` concurrent clients sending
//!   list, stat and get for `LOAD_SHIM_SECONDS` over REST, then as long over gRPC (the same
//!   requests on the plaintext h2c port, over `LOAD_SHIM_GRPC_CHANNELS` connections, default 1),
//!   while jobs are created and canceled: errors, latency
//!   percentiles per protocol, the shim's RSS (VmRSS/VmHWM); afterwards the shim's counts must
//!   equal a fresh LIST.
//!
//!   cargo bench --bench load                    (full size: 10,000 jobs; see hack/reliability.sh)
//!   LOAD_PHASES=p5 LOAD_P5_JOBS=1000 cargo bench --bench load      (one phase, another size)
//!
//! Correctness (every job in the state the rules give, no job in two terminal states, 0 shim
//! errors) fails the run; timings are reported, never asserted. Uses COST_ANALYSIS_CLUSTER_DIR if
//! set, otherwise starts a private control plane.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use cost_analysis_operator::api::grpc::pb;
use cost_analysis_operator::lifecycle::{self, JobView, TaskView};
use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, CostAnalysisJobStatus, CostAnalysisJobTask,
    CostAnalysisJobTaskSpec, JOB_LABEL, JobStatus, TaskTemplate, task_object_name,
};
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use pb::job::job_client::JobClient;
use serde_json::json;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const DOMAIN: &str = "domain-load";
/// The controller's default clock-skew allowance (`--clock-skew-allowance-ms`, src/lifecycle.rs).
const ALLOWANCE: Duration = Duration::from_secs(1);
const LEASE_DURATION: &str = "3";

/// The controllers' `--resync-interval` (`LOAD_RESYNC`, default the controller's 300 s); a short
/// one makes every P6 batch run through passes over all jobs.
fn resync_interval() -> String {
    env("LOAD_RESYNC", 300).to_string()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let phases = std::env::var("LOAD_PHASES").unwrap_or_else(|_| "p5,p6,shim".into());
    let c = support::cluster();
    let client = c.client().await;
    let started = Instant::now();
    if phases.contains("p5") {
        p5(c, &client).await;
    }
    if phases.contains("p6") || phases.contains("shim") {
        let (ns, standby, background) = p6(c, &client, phases.contains("p6")).await;
        if phases.contains("shim") {
            shim(c, &client, &ns, background).await;
        }
        drop(standby);
        c.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
    }
    println!(
        "load bench done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------------------------------ helpers

/// An operator process of this bench (the binary of the bench's profile), killed on drop.
struct Proc {
    child: Child,
    metrics: String,
}

impl Proc {
    fn start(c: &support::Cluster, args: &[&str], log: &str) -> Proc {
        let port = support::free_port();
        let metrics = format!("127.0.0.1:{port}");
        let file = std::fs::File::create(c.dir.join(log)).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
            .args(&args[..1])
            .args(["--metrics-addr", &metrics])
            .args(&args[1..])
            .env("KUBECONFIG", &c.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start operator");
        Proc { child, metrics }
    }

    fn controller(c: &support::Cluster, ns: &str, identity: &str, lease: &str) -> Proc {
        Proc::start(
            c,
            &[
                "controller",
                "--namespace",
                ns,
                "--identity",
                identity,
                "--lease-name",
                lease,
                "--lease-duration",
                LEASE_DURATION,
                "--resync-interval",
                &resync_interval(),
            ],
            &format!("load-{identity}.log"),
        )
    }

    fn counter(&self, name: &str) -> f64 {
        let prefix = format!("cost_analysis_operator_{name} ");
        support::http_get(&self.metrics, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }

    fn memory(&self) -> (u64, u64) {
        let status = support::read(std::path::Path::new(&format!(
            "/proc/{}/status",
            self.child.id()
        )));
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    /// CPU time used so far, in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        support::process_cpu_ticks(&self.child.id().to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lease_holder(c: &support::Cluster, lease: &str) -> String {
    let out = c.kubectl(&[
        "get",
        "lease",
        lease,
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_leader(c: &support::Cluster, lease: &str, identity: &str) {
    let t = Instant::now();
    while lease_holder(c, lease) != identity {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{identity} never led"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn job_object(name: &str, tasks: usize, timeout: i64, ds: usize) -> CostAnalysisJob {
    CostAnalysisJob::new(
        name,
        CostAnalysisJobSpec {
            domain_id: DOMAIN.into(),
            data_source_id: format!("ds-{}", ds % 10),
            options: None,
            tasks: (0..tasks)
                .map(|k| TaskTemplate {
                    id: format!("t{k}"),
                    options: None,
                    template: None,
                    backoff_limit: None,
                })
                .collect(),
            timeout_seconds: Some(timeout),
            cancel: false,
            ttl_seconds_after_finished: None,
            last_changed_at: None,
        },
    )
}

/// Creates, retrying transient errors (the API server is loaded); an existing object is fetched.
async fn create<K>(api: &Api<K>, obj: &K) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let mut last = None;
    for _ in 0..20 {
        match api.create(&PostParams::default(), obj).await {
            Ok(o) => return o,
            Err(kube::Error::Api(e)) if e.code == 409 => {
                if let Ok(o) = api.get(&obj.name_any()).await {
                    return o;
                }
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("cannot create {}: {last:?}", obj.name_any());
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    format!(
        "p50 {:.3}  p99 {:.3}  max {:.3}  (n={})",
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
        samples.len()
    )
}

/// What a watch of the bench saw of each job: the first terminal state and when it was seen, the
/// latest status, and how many times a job already terminal was seen in another terminal state.
#[derive(Default)]
struct Seen {
    jobs: HashMap<String, Obs>,
    flips: u64,
}

#[derive(Clone)]
struct Obs {
    terminal: Option<(JobStatus, SystemTime)>,
    status: Option<CostAnalysisJobStatus>,
}

fn watch_jobs(api: Api<CostAnalysisJob>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while let Some(job) = stream.next().await {
            let Ok(job) = job else { continue };
            let now = SystemTime::now();
            let mut s = seen.lock().unwrap();
            let state = job.status.as_ref().and_then(|s| s.status);
            let obs = s.jobs.entry(job.name_any()).or_insert(Obs {
                terminal: None,
                status: None,
            });
            obs.status = job.status.clone();
            let mut flipped = false;
            if let Some(state) = state.filter(|s| s.is_terminal()) {
                match obs.terminal {
                    None => obs.terminal = Some((state, now)),
                    Some((first, _)) => flipped = first != state,
                }
            }
            if flipped {
                s.flips += 1;
            }
        }
    });
    out
}

/// A reflector of the tasks of `ns`; every applied task is also sent to `tx`, if given.
fn watch_tasks(
    api: Api<CostAnalysisJobTask>,
    tx: Option<tokio::sync::mpsc::UnboundedSender<Arc<CostAnalysisJobTask>>>,
) -> Store<CostAnalysisJobTask> {
    let (reader, writer) = reflector::store();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(
            reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff()
            )
            .applied_objects()
        );
        while let Some(task) = stream.next().await {
            if let (Ok(task), Some(tx)) = (task, &tx) {
                let _ = tx.send(Arc::new(task));
            }
        }
    });
    reader
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `LOAD_SETTLE_MAX` seconds, default 300) for a quiet control plane.
async fn settle(dir: &std::path::Path) {
    let max = Duration::from_secs(env("LOAD_SETTLE_MAX", 300) as u64);
    support::settle(dir, max).await;
}

// ----------------------------------------------------------------------------------------- P5

struct PlainJob {
    spec: CostAnalysisJobSpec,
    created: DateTime<Utc>,
    generation: Option<i64>,
    status: Option<CostAnalysisJobStatus>,
    resource_version: Option<String>,
    reference: k8s_openapi::api::core::v1::ObjectReference,
}

/// The plain client: per change of a task, the job's status as the controller would write it.
struct Plain {
    ns: String,
    jobs: Arc<Mutex<HashMap<String, PlainJob>>>,
    writes: Arc<AtomicU64>,
}

const PLAIN_MANAGER: &str = "load-plain-client";
/// The controller's (`CONCURRENCY` in src/controller.rs).
const CONCURRENCY: usize = 32;

impl Plain {
    fn start(
        client: &Client,
        ns: &str,
        mut tasks_rx: tokio::sync::mpsc::UnboundedReceiver<Arc<CostAnalysisJobTask>>,
        store: Store<CostAnalysisJobTask>,
    ) -> Plain {
        let plain = Plain {
            ns: ns.into(),
            jobs: Arc::new(Mutex::new(HashMap::new())),
            writes: Arc::new(AtomicU64::new(0)),
        };
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: PLAIN_MANAGER.into(),
                instance: None,
            },
        );
        let mut shards = Vec::new();
        for _ in 0..CONCURRENCY {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            shards.push(tx);
            let (jobs, writes, store, recorder) = (
                plain.jobs.clone(),
                plain.writes.clone(),
                store.clone(),
                recorder.clone(),
            );
            let api: Api<CostAnalysisJob> = Api::namespaced(client.clone(), ns);
            let ns = ns.to_string();
            tokio::spawn(async move {
                let config = lifecycle::Config::default();
                while let Some(name) = rx.recv().await {
                    let Some((decision, rv, before, reference)) = ({
                        let jobs = jobs.lock().unwrap();
                        jobs.get(&name).map(|job| {
                            let observed: Vec<TaskView> = job
                                .spec
                                .tasks
                                .iter()
                                .filter_map(|t| {
                                    let task = store.get(
                                        &ObjectRef::new(&task_object_name(&name, &t.id))
                                            .within(&ns),
                                    )?;
                                    Some(TaskView {
                                        task_id: t.id.clone(),
                                        state: task.state(),
                                        finished_at: task
                                            .status
                                            .as_ref()
                                            .and_then(|s| s.finished_at),
                                    })
                                })
                                .collect();
                            let view = JobView {
                                generation: job.generation,
                                created: job.created,
                                spec: &job.spec,
                                status: job.status.as_ref(),
                            };
                            (
                                lifecycle::decide(&view, &observed, Utc::now(), &config),
                                job.resource_version.clone(),
                                job.status.as_ref().and_then(|s| s.status),
                                job.reference.clone(),
                            )
                        })
                    }) else {
                        continue;
                    };
                    if !decision.status_changed {
                        continue;
                    }
                    let patch = json!({
                        "apiVersion": "cost-analysis.spaceone.dev/v1",
                        "kind": "CostAnalysisJob",
                        "metadata": { "name": name, "resourceVersion": rv },
                        "status": decision.status,
                    });
                    let written = api
                        .patch_status(
                            &name,
                            &PatchParams::apply(PLAIN_MANAGER).force(),
                            &Patch::Apply(&patch),
                        )
                        .await
                        .unwrap_or_else(|e| panic!("plain client: status of {name}: {e}"));
                    writes.fetch_add(1, Ordering::Relaxed);
                    if let Some(job) = jobs.lock().unwrap().get_mut(&name) {
                        job.status = written.status.clone();
                        job.resource_version = written.resource_version();
                    }
                    let after = decision.status.status;
                    if after != before && after.is_some_and(JobStatus::is_terminal) {
                        for note in &decision.events {
                            let event = Event {
                                type_: EventType::Normal,
                                reason: note.reason.to_string(),
                                note: Some(note.note.clone()),
                                action: "Reconcile".into(),
                                secondary: None,
                            };
                            let _ = recorder.publish(&event, &reference).await;
                        }
                    }
                }
            });
        }
        tokio::spawn(async move {
            while let Some(task) = tasks_rx.recv().await {
                if task.state().is_finished() {
                    let name = &task.spec.job_name;
                    let shard = name
                        .bytes()
                        .fold(0usize, |h, b| h.wrapping_mul(31) + b as usize)
                        % CONCURRENCY;
                    let _ = shards[shard].send(name.clone());
                }
            }
        });
        plain
    }

    /// What the controller does before any worker reports: the job's first status, its tasks.
    async fn setup(&self, client: &Client, job: &CostAnalysisJob) {
        let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &self.ns);
        let tasks: Api<CostAnalysisJobTask> = Api::namespaced(client.clone(), &self.ns);
        let job = create(&jobs, job).await;
        let name = job.name_any();
        let created = job.metadata.creation_timestamp.clone().expect("created").0;
        let created =
            DateTime::<Utc>::from_timestamp_millis(created.as_millisecond()).expect("time");
        let view = JobView {
            generation: job.metadata.generation,
            created,
            spec: &job.spec,
            status: None,
        };
        let decision = lifecycle::decide(&view, &[], Utc::now(), &lifecycle::Config::default());
        let patch = json!({
            "apiVersion": "cost-analysis.spaceone.dev/v1",
            "kind": "CostAnalysisJob",
            "metadata": { "name": name, "resourceVersion": job.resource_version() },
            "status": decision.status,
        });
        let written = jobs
            .patch_status(
                &name,
                &PatchParams::apply(PLAIN_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .expect("first status");
        let owner = job.controller_owner_ref(&()).expect("owner");
        for template in &decision.create_tasks {
            let mut task = CostAnalysisJobTask::new(
                &task_object_name(&name, &template.id),
                CostAnalysisJobTaskSpec {
                    job_name: name.clone(),
                    task_id: template.id.clone(),
                    domain_id: job.spec.domain_id.clone(),
                    data_source_id: job.spec.data_source_id.clone(),
                    options: None,
                },
            );
            task.metadata.owner_references = Some(vec![owner.clone()]);
            task.metadata.labels = Some([(JOB_LABEL.to_string(), name.clone())].into());
            create(&tasks, &task).await;
        }
        self.jobs.lock().unwrap().insert(
            name,
            PlainJob {
                spec: job.spec.clone(),
                created,
                generation: job.metadata.generation,
                status: written.status.clone(),
                resource_version: written.resource_version(),
                reference: job.object_ref(&()),
            },
        );
    }
}

/// The test workers: every task of `names`, job by job, marked SUCCESS, `workers` at once.
async fn drive(client: &Client, ns: &str, names: &[String], tasks: usize, workers: usize) {
    let api: Api<CostAnalysisJobTask> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(names.iter().flat_map(|n| (0..tasks).map(move |k| (n, k))))
        .map(|(name, k)| {
            let api = api.clone();
            async move {
                let task = task_object_name(name, &format!("t{k}"));
                let now = cost_analysis_operator::timestamp::format(&Utc::now());
                let p =
                    json!({"status": {"status": "SUCCESS", "finishedAt": now, "createdCount": 10}});
                let mut last = None;
                for _ in 0..20 {
                    match api
                        .patch_status(&task, &PatchParams::default(), &Patch::Merge(&p))
                        .await
                    {
                        Ok(_) => return,
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                panic!("worker: {task}: {last:?}");
            }
        })
        .buffer_unordered(workers)
        .collect::<Vec<()>>()
        .await;
}

/// Seconds from `start` until the last of `names` was seen SUCCESS.
async fn settled(seen: &Mutex<Seen>, names: &[String], start: SystemTime) -> f64 {
    until("every job SUCCESS", Duration::from_secs(1800), || {
        let s = seen.lock().unwrap();
        names
            .iter()
            .all(|n| s.jobs.get(n).is_some_and(|o| o.terminal.is_some()))
    })
    .await;
    let s = seen.lock().unwrap();
    let mut last = start;
    for n in names {
        let (state, at) = s.jobs[n].terminal.expect("terminal");
        assert_eq!(state, JobStatus::Success, "{n}");
        last = last.max(at);
    }
    last.duration_since(start).unwrap_or_default().as_secs_f64()
}

/// Every job of `ns` SUCCESS with every counter exact, by a fresh LIST.
async fn check_all_success(client: &Client, ns: &str, n: usize, tasks: usize, manager: &str) {
    let api: Api<CostAnalysisJob> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("LIST");
    assert_eq!(list.items.len(), n, "{ns}: jobs");
    for job in &list.items {
        let s = job.status.as_ref().expect("status");
        assert_eq!(s.status, Some(JobStatus::Success), "{}", job.name_any());
        assert_eq!(s.total_tasks, tasks as i32, "{}", job.name_any());
        assert_eq!(s.remained_tasks, 0, "{}", job.name_any());
        assert_eq!(s.progress, Some(format!("{tasks}/{tasks}")));
        assert!(s.finished_at.is_some(), "{}", job.name_any());
        // Each namespace's statuses are written by its own writer only.
        let managers: Vec<&str> = job
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.subresource.as_deref() == Some("status"))
            .filter_map(|m| m.manager.as_deref())
            .filter(|m| {
                *m == cost_analysis_operator::controller::FIELD_MANAGER || *m == PLAIN_MANAGER
            })
            .collect();
        assert_eq!(managers, vec![manager], "{}", job.name_any());
    }
}

async fn p5(c: &'static support::Cluster, client: &Client) {
    let n = env("LOAD_P5_JOBS", 10_000);
    let tasks = env("LOAD_TASKS", 10);
    let rounds = env("LOAD_P5_ROUNDS", 2).max(1);
    let workers = env("LOAD_WORKERS", 32);
    println!(
        "== P5: {n} jobs x {tasks} tasks per writer, {rounds} alternating rounds, {workers} workers"
    );
    let ns_c = c.namespace("load-ctl");
    let ns_p = c.namespace("load-plain");
    let lease = format!("load-p5-{}", std::process::id());
    let ctl = Proc::controller(c, &ns_c, "p5", &lease);
    wait_leader(c, &lease, "p5").await;
    let seen_c = watch_jobs(Api::namespaced(client.clone(), &ns_c));
    let seen_p = watch_jobs(Api::namespaced(client.clone(), &ns_p));
    let store_c = watch_tasks(Api::namespaced(client.clone(), &ns_c), None);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let store_p = watch_tasks(Api::namespaced(client.clone(), &ns_p), Some(tx));
    let plain = Plain::start(client, &ns_p, rx, store_p.clone());

    let (mut secs_c, mut secs_p) = (0.0, 0.0);
    let (mut writes_c, mut writes_p) = (0.0, 0u64);
    let per_round = n.div_ceil(rounds);
    let mut done = 0usize;
    for r in 0..rounds {
        let names: Vec<String> = (r * per_round..((r + 1) * per_round).min(n))
            .map(|i| format!("job-{i:06}"))
            .collect();
        for controller_turn in if r % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        } {
            let t = Instant::now();
            if controller_turn {
                let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &ns_c);
                futures::stream::iter(names.iter().enumerate())
                    .map(|(i, name)| {
                        let jobs = jobs.clone();
                        async move { create(&jobs, &job_object(name, tasks, 86_400, i)).await }
                    })
                    .buffer_unordered(32)
                    .collect::<Vec<_>>()
                    .await;
                until(
                    "the controller created every task",
                    Duration::from_secs(1800),
                    || {
                        store_c.state().len() >= (done + names.len()) * tasks
                            && seen_c
                                .lock()
                                .unwrap()
                                .jobs
                                .values()
                                .filter(|o| o.status.is_some())
                                .count()
                                >= done + names.len()
                    },
                )
                .await;
            } else {
                futures::stream::iter(names.iter().enumerate())
                    .map(|(i, name)| {
                        let plain = &plain;
                        async move {
                            plain
                                .setup(client, &job_object(name, tasks, 86_400, i))
                                .await
                        }
                    })
                    .buffer_unordered(32)
                    .collect::<Vec<_>>()
                    .await;
                until("every plain task seen", Duration::from_secs(600), || {
                    store_p.state().len() >= (done + names.len()) * tasks
                })
                .await;
            }
            let setup = t.elapsed().as_secs_f64();
            settle(&c.dir).await;
            let (ns, seen) = if controller_turn {
                (&ns_c, &seen_c)
            } else {
                (&ns_p, &seen_p)
            };
            let before_c = ctl.counter("status_writes_total");
            let before_p = plain.writes.load(Ordering::Relaxed);
            let start = SystemTime::now();
            let t = Instant::now();
            drive(client, ns, &names, tasks, workers).await;
            let workers_done = t.elapsed().as_secs_f64();
            let secs = settled(seen, &names, start).await;
            let who = if controller_turn {
                "controller"
            } else {
                "plain client"
            };
            println!(
                "  round {r} {who:<12} setup {setup:>6.1} s; {} jobs settled in {secs:>6.1} s ({:.1} jobs/s; workers done at {workers_done:.1} s)",
                names.len(),
                names.len() as f64 / secs
            );
            if controller_turn {
                secs_c += secs;
                writes_c += ctl.counter("status_writes_total") - before_c;
            } else {
                secs_p += secs;
                writes_p += plain.writes.load(Ordering::Relaxed) - before_p;
            }
        }
        done += names.len();
    }
    check_all_success(
        client,
        &ns_c,
        n,
        tasks,
        cost_analysis_operator::controller::FIELD_MANAGER,
    )
    .await;
    check_all_success(client, &ns_p, n, tasks, PLAIN_MANAGER).await;
    let flips = seen_c.lock().unwrap().flips + seen_p.lock().unwrap().flips;
    assert_eq!(flips, 0, "a job was seen in two terminal states");
    let (rate_c, rate_p) = (n as f64 / secs_c, n as f64 / secs_p);
    println!(
        "P5 controller {rate_c:.1} jobs/s ({writes_c} status writes in the timed parts), plain client {rate_p:.1} jobs/s ({writes_p} status writes); all {n} + {n} jobs SUCCESS, counters exact, 0 flips"
    );
    println!(
        "P5 ratio controller/plain: {:.2} (goal >= 0.8)",
        rate_c / rate_p
    );
    drop(ctl);
    c.kubectl(&["delete", "namespace", &ns_c, "--wait=false"]);
    c.kubectl(&["delete", "namespace", &ns_p, "--wait=false"]);
}

// ----------------------------------------------------------------------------------------- P6

/// Creates `k` probe jobs with deadlines spread at `rate` per second, `lead` seconds ahead;
/// returns each probe's name and deadline.
async fn probes(
    client: &Client,
    ns: &str,
    prefix: &str,
    k: usize,
    rate: usize,
    lead: i64,
    tasks: usize,
) -> Vec<(String, DateTime<Utc>)> {
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..k)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let name = format!("{prefix}-{i:05}");
                let timeout = lead + (i / rate.max(1)) as i64;
                let job = create(&jobs, &job_object(&name, tasks, timeout, i)).await;
                let created = job.metadata.creation_timestamp.expect("created").0;
                let created =
                    DateTime::<Utc>::from_timestamp_millis(created.as_millisecond()).expect("t");
                let deadline = created
                    + chrono::Duration::seconds(timeout)
                    + chrono::Duration::from_std(ALLOWANCE).expect("allowance");
                (name, deadline)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// Waits until the controller has given every probe its first status, and says how long before
/// the first deadline that was: a deadline that comes while the controller still works through
/// the probes' creation measures that backlog, not the timeout path (then raise LOAD_P6_LEAD or
/// lower LOAD_P6_TIMEOUTS).
async fn probes_settled(seen: &Mutex<Seen>, probes: &[(String, DateTime<Utc>)]) {
    until(
        "every probe has a status",
        Duration::from_secs(1800),
        || {
            let s = seen.lock().unwrap();
            probes
                .iter()
                .all(|(n, _)| s.jobs.get(n).is_some_and(|o| o.status.is_some()))
        },
    )
    .await;
    let first = probes.iter().map(|(_, d)| *d).min().expect("probes");
    let margin = (first - Utc::now()).as_seconds_f64();
    println!("  every probe had its first status {margin:.1} s before the first deadline");
    if margin < 0.0 {
        println!(
            "  WARNING: the deadlines came during the probes' creation backlog; raise LOAD_P6_LEAD"
        );
    }
}

/// Waits for every probe to be TIMEOUT; prints the delays from deadline to `finishedAt` and to
/// the bench's watch seeing it (seconds).
async fn timeout_delays(seen: &Mutex<Seen>, probes: &[(String, DateTime<Utc>)], what: &str) {
    until("every probe terminal", Duration::from_secs(1800), || {
        let s = seen.lock().unwrap();
        probes
            .iter()
            .all(|(n, _)| s.jobs.get(n).is_some_and(|o| o.terminal.is_some()))
    })
    .await;
    // The status with finishedAt arrives with the terminal state (one write).
    let s = seen.lock().unwrap();
    let (mut by_status, mut by_watch) = (Vec::new(), Vec::new());
    for (n, deadline) in probes {
        let o = &s.jobs[n];
        let (state, at) = o.terminal.expect("terminal");
        assert_eq!(state, JobStatus::Timeout, "{n}");
        let finished = o
            .status
            .as_ref()
            .and_then(|s| s.finished_at)
            .expect("finishedAt");
        by_status.push((finished - *deadline).as_seconds_f64());
        let at: DateTime<Utc> = at.into();
        by_watch.push((at - *deadline).as_seconds_f64());
    }
    let early = by_status.iter().filter(|d| **d < 0.0).count();
    assert_eq!(early, 0, "{what}: a job timed out before its deadline");
    println!(
        "P6 {what}: deadline -> finishedAt (s): {}",
        summary(&mut by_status)
    );
    println!(
        "P6 {what}: deadline -> seen by a watch (s): {}",
        summary(&mut by_watch)
    );
}

/// Returns the namespace, the controller now leading it and how many jobs `bg-*` are in flight.
async fn p6(c: &'static support::Cluster, client: &Client, measure: bool) -> (String, Proc, usize) {
    let n = env("LOAD_P6_JOBS", 10_000);
    let k = env("LOAD_P6_TIMEOUTS", 1_000).min(n / 2);
    let rate = env("LOAD_P6_RATE", 20);
    let tasks = env("LOAD_P6_TASKS", 1);
    let lead = env("LOAD_P6_LEAD", 60) as i64;
    let failover_lead = env("LOAD_P6_FAILOVER_LEAD", 5) as u64;
    let ns = c.namespace("load-p6");
    let lease = format!("load-p6-{}", std::process::id());
    let mut a = Proc::controller(c, &ns, "p6-a", &lease);
    wait_leader(c, &lease, "p6-a").await;
    let b = Proc::controller(c, &ns, "p6-b", &lease);
    let seen = watch_jobs(Api::namespaced(client.clone(), &ns));
    let background = if measure { n - k } else { n };
    println!(
        "== P6: {n} jobs x {tasks} task in flight ({background} with a 1-day timeout), {k} timing out at {rate}/s, then {k} more right after a failover"
    );
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    futures::stream::iter(0..background)
        .map(|i| {
            let jobs = jobs.clone();
            async move { create(&jobs, &job_object(&format!("bg-{i:06}"), tasks, 86_400, i)).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    until(
        "every background job has a status",
        Duration::from_secs(1800),
        || {
            seen.lock()
                .unwrap()
                .jobs
                .values()
                .filter(|o| o.status.is_some())
                .count()
                >= background
        },
    )
    .await;
    println!(
        "  {background} jobs created and given a status in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if !measure {
        return (ns, b, background);
    }
    settle(&c.dir).await;
    let normal = probes(client, &ns, "tm", k, rate, lead, tasks).await;
    probes_settled(&seen, &normal).await;
    timeout_delays(&seen, &normal, "normal").await;

    // Failover: the leader is killed shortly before the first deadline of a new batch.
    settle(&c.dir).await;
    let batch = probes(client, &ns, "fo", k, rate, lead, tasks).await;
    probes_settled(&seen, &batch).await;
    let first = batch.iter().map(|(_, d)| *d).min().expect("probes");
    let kill_at = first - chrono::Duration::seconds(failover_lead as i64);
    let wait = (kill_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let killed = Instant::now();
    let _ = a.child.kill();
    let _ = a.child.wait();
    wait_leader(c, &lease, "p6-b").await;
    println!(
        "  leader SIGKILLed {:.1} s before the first deadline; the standby held the lease {:.1} s later",
        (first - Utc::now()).as_seconds_f64() + killed.elapsed().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    drop(a);
    timeout_delays(&seen, &batch, "after a failover").await;
    assert_eq!(
        seen.lock().unwrap().flips,
        0,
        "a job was seen in two terminal states"
    );
    (ns, b, background)
}

// --------------------------------------------------------------------------------------- shim

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

async fn shim(c: &'static support::Cluster, client: &Client, ns: &str, background: usize) {
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
