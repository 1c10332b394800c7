//! Helpers of the load bench's phases: operator processes, leases, job objects, watches of
//! jobs and tasks, percentiles.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobStatus, CostAnalysisJobTask, JobStatus,
};
use cost_analysis_operator::testing::JobBuilder;
use futures::StreamExt;
use kube::api::PostParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use super::{DOMAIN, LEASE_DURATION, env, resync_interval, support};

/// An operator process of this bench (the binary of the bench's profile), killed on drop.
pub struct Proc {
    pub child: Child,
    pub metrics: String,
}

impl Proc {
    pub fn start(c: &support::Cluster, args: &[&str], log: &str) -> Proc {
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

    pub fn controller(c: &support::Cluster, ns: &str, identity: &str, lease: &str) -> Proc {
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

    pub fn counter(&self, name: &str) -> f64 {
        let prefix = format!("cost_analysis_operator_{name} ");
        support::http_get(&self.metrics, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }

    pub fn memory(&self) -> (u64, u64) {
        let pid = self.child.id();
        (
            support::proc_memory(pid, "VmRSS") / 1024,
            support::proc_memory(pid, "VmHWM") / 1024,
        )
    }

    /// CPU time used so far, in clock ticks (1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        support::process_cpu_ticks(&self.child.id().to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn job_object(name: &str, tasks: usize, timeout: i64, ds: usize) -> CostAnalysisJob {
    JobBuilder::new(name)
        .domain(DOMAIN)
        .data_source(format!("ds-{}", ds % 10))
        .tasks((0..tasks).map(|k| format!("t{k}")))
        .timeout(timeout)
        .build()
}

/// Creates, retrying transient errors (the API server is loaded); an existing object is fetched.
pub async fn create<K>(api: &Api<K>, obj: &K) -> K
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

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn summary(samples: &mut [f64]) -> String {
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
pub struct Seen {
    pub jobs: HashMap<String, Obs>,
    pub flips: u64,
}

#[derive(Clone)]
pub struct Obs {
    pub terminal: Option<(JobStatus, SystemTime)>,
    pub status: Option<CostAnalysisJobStatus>,
}

pub fn watch_jobs(api: Api<CostAnalysisJob>) -> Arc<Mutex<Seen>> {
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
pub fn watch_tasks(
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

pub async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `LOAD_SETTLE_MAX` seconds, default 300) for a quiet control plane.
pub async fn settle(dir: &std::path::Path) {
    let max = Duration::from_secs(env("LOAD_SETTLE_MAX", 300) as u64);
    support::settle(dir, max).await;
}
