//! P5: jobs driven to completion by parallel test workers, settled once by the controller and
//! once by a plain client (see the bench's documentation in load.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use cost_analysis_operator::lifecycle::{self, JobView, TaskView};
use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, CostAnalysisJobStatus, CostAnalysisJobTask, JOB_LABEL,
    JobStatus, task_object_name,
};
use cost_analysis_operator::testing::TaskBuilder;
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use super::common::*;
use super::{env, support};

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
                                    Some(TaskView::of(&t.id, &task))
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
            let task = TaskBuilder::new(&name, &template.id)
                .of(&job)
                .created_at(chrono::Utc::now())
                .owner(owner.clone())
                .label(JOB_LABEL, &name)
                .build();
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

pub async fn p5(c: &'static support::Cluster, client: &Client) {
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
    tokio::task::block_in_place(|| {
        support::wait_for_leader_of(c, &lease, "p5", Duration::from_secs(60))
    });
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
