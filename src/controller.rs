//! The kube-rs shell around [`crate::lifecycle::decide`]: it gathers a job and its tasks from the
//! watch caches, applies the decision (status by server-side apply, task creation and
//! cancellation, events, TTL deletion) and requeues at the next deadline. Nothing here decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::lifecycle::{self, Decision, EventKind, JobView, TaskView};
use crate::metrics::Metrics;
use crate::resources::{
    CostAnalysisJob, CostAnalysisJobTask, CostAnalysisJobTaskSpec, JOB_LABEL, TaskTemplate,
    legacy_task_object_name, task_object_name,
};

/// Field manager of every write the controller makes; GitOps tools own `spec`, this owns `status`.
pub const FIELD_MANAGER: &str = "cost-analysis-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    Missing(&'static str),
    #[error("the reconcile panicked (a bug; the job is retried with backoff)")]
    Panicked,
    #[error("the reconcile took longer than {0:?} (a request that hangs; retried with backoff)")]
    TimedOut(Duration),
}

impl Error {
    fn label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(_) => "kube",
            Error::Missing(_) => "invalid_object",
            Error::Panicked => "panic",
            Error::TimedOut(_) => "timeout",
        }
    }
}

pub struct Context {
    client: Client,
    recorder: Recorder,
    tasks: Store<CostAnalysisJobTask>,
    config: lifecycle::Config,
    metrics: Arc<Metrics>,
    backoff: Mutex<HashMap<ObjectRef<CostAnalysisJob>, u32>>,
}

/// Runs the controller until `shutdown` resolves. The caller holds the leader lease.
pub async fn run(
    client: Client,
    config: lifecycle::Config,
    metrics: Arc<Metrics>,
    namespace: Option<String>,
    resync: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let (jobs, tasks): (Api<CostAnalysisJob>, Api<CostAnalysisJobTask>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (task_reader, task_writer) = reflector::store();
    let task_stream = settled_objects(reflector::reflector(
        task_writer,
        observed(
            watcher(tasks, watcher::Config::default().any_semantic())
                .backoff(crate::watch::WatchBackoff::default()),
            metrics.clone(),
            "tasks",
        ),
    ));
    // After every (re)list the watcher sends every object again, so each job is reconciled from
    // its current state after a watch restart.
    let (job_reader, job_writer) = reflector::store();
    let job_stream = settled_objects(reflector::reflector(
        job_writer,
        observed(
            watcher(jobs, watcher::Config::default().any_semantic())
                .backoff(crate::watch::WatchBackoff::default()),
            metrics.clone(),
            "jobs",
        ),
    ));
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        tasks: task_reader,
        config,
        metrics,
        backoff: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_stream(job_stream, job_reader)
        .owns_stream(task_stream)
        .trigger_backoff(crate::watch::WatchBackoff::default())
        // The safety net under the watches: every job in the cache is looked at again every
        // `resync`, whether or not anything triggered it (a per-object requeue only covers jobs
        // that were reconciled at least once).
        .reconcile_all_on(futures::stream::unfold((), move |()| async move {
            tokio::time::sleep(resync).await;
            Some(((), ()))
        }))
        .with_config(ControllerConfig::default().concurrency(16))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(job = %obj, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        });
    // A graceful shutdown lets reconciles in flight finish, but kube's controller would also wait
    // for every scheduled requeue (a deadline, the resync) to come due, which can be hours. Those
    // are recomputed by whoever runs next, so after a short grace the rest is dropped (a dropped
    // reconcile is safe: every write is conditional and idempotent).
    tokio::select! {
        () = controller => {}
        () = async { shutdown.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            info!("stopping with requeues still scheduled (they are recomputed by the next leader)");
        }
    }
    info!("controller stopped");
}

/// How long a stopping controller lets reconciles in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest one reconcile may take. kube-runtime never runs two reconciles of one job at once,
/// so a reconcile stuck on a request that never answers (the client's read timeout is 295 s, sized
/// for watches) would hold back every later trigger of that job, the resync included. A pass makes
/// a handful of small requests; cut off, it is retried with backoff.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);

async fn reconcile(job: Arc<CostAnalysisJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match tokio::time::timeout(
        RECONCILE_TIMEOUT,
        contain(reconcile_inner(&job, &ctx), &ctx.metrics),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(Error::TimedOut(RECONCILE_TIMEOUT)),
    };
    ctx.metrics
        .observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::label));
    if let (Ok(_), Ok(mut b)) = (&result, ctx.backoff.lock()) {
        b.remove(&ObjectRef::from_obj(job.as_ref()));
    }
    result
}

/// A panic inside one reconcile stays there: it is logged and counted, the job is retried with
/// backoff like any failed reconcile, and every other job goes on.
async fn contain<T>(
    reconcile: impl std::future::Future<Output = Result<T, Error>>,
    metrics: &Metrics,
) -> Result<T, Error> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            metrics.reconcile_panics.inc();
            tracing::error!("a reconcile panicked; the job will be retried with backoff");
            Err(Error::Panicked)
        }
    }
}

async fn reconcile_inner(job: &CostAnalysisJob, ctx: &Context) -> Result<Action, Error> {
    if job.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Never decide from a partial view: until the task cache holds the initial list, a task it
    // has not seen may well exist (and be finished). The task stream is driven by the controller
    // while this waits.
    ctx.tasks
        .wait_until_ready()
        .await
        .map_err(|_| Error::Missing("task cache"))?;
    let ns = job.namespace().ok_or(Error::Missing("namespace"))?;
    let name = job.name_any();
    let uid = job.uid().ok_or(Error::Missing("uid"))?;
    let created = job
        .meta()
        .creation_timestamp
        .as_ref()
        .and_then(crate::timestamp::from_k8s)
        .ok_or(Error::Missing("creationTimestamp"))?;

    let observed: Vec<TaskView> = job
        .spec
        .tasks
        .iter()
        .filter_map(|t| {
            let task = find_task(&ctx.tasks, &ns, &name, &uid, &t.id)?;
            Some(TaskView {
                task_id: t.id.clone(),
                state: task.state(),
                finished_at: task.status.as_ref().and_then(|s| s.finished_at),
            })
        })
        .collect();

    let view = JobView {
        generation: job.meta().generation,
        created,
        spec: &job.spec,
        status: job.status.as_ref(),
    };
    let decision = lifecycle::decide(&view, &observed, Utc::now(), &ctx.config);
    apply(job, &ns, &name, &decision, ctx).await?;

    // Only a real deadline or TTL is scheduled per job; the periodic look at every job is the
    // controller's `reconcile_all_on`, not a requeue per job.
    Ok(match decision.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// The objects a watch touched, each once the store holds it; errors are dropped here. During a (re)list the reflector
/// keeps the old store until the list is complete; a trigger sent at `InitApply` (what
/// `touched_objects` does) then reaches a reconcile that finds no such job in the store, and the
/// controller drops the request: jobs created while the API server was away were never looked
/// at. So the listed objects are sent on `InitDone`, after the store has been swapped.
fn settled_objects<K: Clone + Send + 'static>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static {
    stream
        .scan(Vec::new(), |listed: &mut Vec<K>, event| {
            let out: Vec<Result<K, watcher::Error>> = match event {
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    Vec::new()
                }
                Ok(watcher::Event::InitApply(o)) => {
                    listed.push(o);
                    Vec::new()
                }
                Ok(watcher::Event::InitDone) => {
                    std::mem::take(listed).into_iter().map(Ok).collect()
                }
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => vec![Ok(o)],
                // Already retried (with our backoff), counted and logged by `observed`. Passed on,
                // an error would make the controller pause every trigger stream for up to 30 s
                // (its own trigger backoff), which is what kept it blind after an outage.
                Err(_) => Vec::new(),
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

/// Counts a watch's restarts (every list after the first) and errors, and says so in the log.
fn observed<K: Send + 'static>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    metrics: Arc<Metrics>,
    resource: &'static str,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    let mut lists = 0u64;
    stream.inspect(move |event| match event {
        Ok(watcher::Event::Init) => {
            lists = lists.saturating_add(1);
            if lists > 1 {
                metrics.watch_restart(resource);
                warn!(resource, "watch restarted; every object is looked at again");
            }
        }
        Err(e) => {
            metrics.watch_error(resource);
            warn!(resource, error = %e, "watch failed; retrying with backoff");
        }
        Ok(_) => {}
    })
}

/// This job's task object for `task_id`, if the cache holds it: under its name, or under the name
/// older releases used. A task left over from an earlier job of the same name, or another job's
/// task that happens to bear the legacy name, is not this job's.
fn find_task(
    tasks: &Store<CostAnalysisJobTask>,
    ns: &str,
    job_name: &str,
    uid: &str,
    task_id: &str,
) -> Option<Arc<CostAnalysisJobTask>> {
    [
        task_object_name(job_name, task_id),
        legacy_task_object_name(job_name, task_id),
    ]
    .iter()
    .filter_map(|n| tasks.get(&ObjectRef::new(n).within(ns)))
    .find(|task| {
        task.owner_references().iter().any(|o| o.uid == uid)
            && task.spec.job_name == job_name
            && task.spec.task_id == task_id
    })
}

async fn apply(
    job: &CostAnalysisJob,
    ns: &str,
    name: &str,
    decision: &Decision,
    ctx: &Context,
) -> Result<(), Error> {
    let jobs: Api<CostAnalysisJob> = Api::namespaced(ctx.client.clone(), ns);
    // The status goes first: a crash after it leaves the tasks to the next pass, while canceling
    // tasks first could make the next pass read "all tasks finished" and call the job a success.
    if decision.status_changed {
        // resourceVersion makes the apply conditional: a status someone else just wrote (a cancel
        // through the API) is never overwritten from a stale cache; the conflict retries instead.
        let patch = json!({
            "apiVersion": "cost-analysis.spaceone.dev/v1",
            "kind": "CostAnalysisJob",
            "metadata": { "name": name, "resourceVersion": job.resource_version() },
            "status": decision.status,
        });
        jobs.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        ctx.metrics.status_writes.inc();
        let before = job.status.as_ref().and_then(|s| s.status);
        if let Some(state) = decision.status.status.filter(|s| before != Some(*s)) {
            ctx.metrics.transition(state.as_str());
        }
    }

    let mut created = 0usize;
    if !decision.create_tasks.is_empty() {
        let tasks: Api<CostAnalysisJobTask> = Api::namespaced(ctx.client.clone(), ns);
        let owner = job.controller_owner_ref(&()).ok_or(Error::Missing("uid"))?;
        for template in &decision.create_tasks {
            let task = new_task(job, name, template, owner.clone());
            match tasks
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &task,
                )
                .await
            {
                Ok(_) => {
                    ctx.metrics.task_creates.inc();
                    created = created.saturating_add(1);
                }
                // The watch cache had not seen it yet.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    // Which tasks were really created is known only here (one the cache had not seen yet
    // answers 409), so this event is the shell's, not the decision's.
    let created_note = (created > 0).then(|| lifecycle::EventNote {
        kind: EventKind::Normal,
        reason: "TasksCreated",
        note: format!("Created {created} of {} tasks", job.spec.tasks.len()),
    });
    let reference = job.object_ref(&());
    for note in decision.events.iter().chain(created_note.as_ref()) {
        let event = Event {
            type_: match note.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: note.reason.to_string(),
            note: Some(note.note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            warn!(job = name, error = %e, "could not record event");
        }
    }

    if !decision.cancel_tasks.is_empty() {
        let tasks: Api<CostAnalysisJobTask> = Api::namespaced(ctx.client.clone(), ns);
        let now = crate::timestamp::format(&Utc::now());
        let uid = job.uid().unwrap_or_default();
        for task_id in &decision.cancel_tasks {
            let Some(task) = find_task(&ctx.tasks, ns, name, &uid, task_id) else {
                continue;
            };
            let task_name = task.name_any();
            // Conditional on the version the decision saw: a worker's final report that lands
            // first wins, and the conflict makes the next pass look again.
            let patch = json!({
                "metadata": {"resourceVersion": task.resource_version()},
                "status": {"status": "CANCELED", "finishedAt": now},
            });
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match tasks
                .patch_status(&task_name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    ctx.metrics.task_cancels.inc();
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    if decision.delete_job {
        info!(
            job = name,
            namespace = ns,
            "deleting finished job after its TTL"
        );
        match jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn new_task(
    job: &CostAnalysisJob,
    job_name: &str,
    template: &TaskTemplate,
    owner: OwnerReference,
) -> CostAnalysisJobTask {
    let mut task = CostAnalysisJobTask::new(
        &task_object_name(job_name, &template.id),
        CostAnalysisJobTaskSpec {
            job_name: job_name.to_string(),
            task_id: template.id.clone(),
            domain_id: job.spec.domain_id.clone(),
            data_source_id: job.spec.data_source_id.clone(),
            options: template.options.clone(),
        },
    );
    task.metadata.namespace = job.namespace();
    task.metadata.owner_references = Some(vec![owner]);
    // Label values are at most 63 characters; longer job names go without the convenience label.
    if job_name.len() <= 63 {
        task.metadata.labels = Some([(JOB_LABEL.to_string(), job_name.to_string())].into());
    }
    task
}

/// Per-object exponential backoff with jitter: 0.5 s doubling up to 5 min, each delay scaled by a
/// random factor in [0.5, 1.5) so that many failing objects do not retry in lockstep.
fn error_policy(job: Arc<CostAnalysisJob>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempt = ctx
        .backoff
        .lock()
        .map(|mut b| {
            let n = b.entry(ObjectRef::from_obj(job.as_ref())).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = backoff_delay(attempt, rand::random::<f64>());
    warn!(job = %job.name_any(), error = %error, attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn backoff_delay(attempt: u32, random: f64) -> Duration {
    let base = 0.5_f64 * 2_f64.powi(attempt.saturating_sub(1).min(20) as i32);
    Duration::from_secs_f64(base.min(300.0) * (0.5 + random.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::{Error, backoff_delay, contain};
    use crate::metrics::Metrics;
    use std::time::Duration;

    #[tokio::test]
    async fn listed_objects_are_triggered_only_once_the_list_is_complete() {
        use futures::StreamExt;
        use kube::runtime::watcher::Event;
        let events = vec![
            Ok(Event::Apply(1)),
            Ok(Event::Init),
            Ok(Event::InitApply(2)),
            Ok(Event::InitApply(3)),
            Ok(Event::InitDone),
            Ok(Event::Delete(4)),
            Err(kube::runtime::watcher::Error::NoResourceVersion),
            Ok(Event::Init),
            Ok(Event::InitApply(5)),
        ];
        let out: Vec<Result<i32, _>> = super::settled_objects(futures::stream::iter(events))
            .collect()
            .await;
        // Errors are not passed on (they would pause the controller's triggers).
        let out: Vec<i32> = out.into_iter().map(|r| r.unwrap()).collect();
        // 5 is never sent: its list did not complete (the next list sends it again).
        assert_eq!(out, vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_contained_counted_and_retried() {
        let metrics = Metrics::default();
        let r: Result<(), Error> = contain(async { panic!("boom") }, &metrics).await;
        assert!(matches!(r, Err(Error::Panicked)));
        assert_eq!(metrics.reconcile_panics.get(), 1);
        assert_eq!(Error::Panicked.label(), "panic");
        let ok: Result<u8, Error> = contain(async { Ok(3) }, &metrics).await;
        assert_eq!(ok.ok(), Some(3));
        assert_eq!(metrics.reconcile_panics.get(), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        assert_eq!(backoff_delay(1, 0.5), Duration::from_millis(500));
        assert_eq!(backoff_delay(2, 0.5), Duration::from_secs(1));
        assert_eq!(backoff_delay(4, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(100, 0.5), Duration::from_secs(300));
        assert_eq!(backoff_delay(1, 0.0), Duration::from_millis(250));
        assert!(backoff_delay(1, 0.999) < Duration::from_millis(750));
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod shell_tests;
