//! The kube-rs shell around [`crate::lifecycle::decide`]: it gathers a job and its tasks from the
//! watch caches, applies the decision (status by server-side apply, task creation and
//! cancellation, events, TTL deletion) and requeues at the next deadline. Nothing here decides.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{
    Action, Config as ControllerConfig, Controller, Error as ControllerError,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::caches::{Caches, Ready};
use crate::job_metrics;
use crate::lifecycle::{self, Decision, EventKind, JobView, TaskView};
use crate::metrics::Metrics;
use crate::own_writes::{self, OwnWrites};
use crate::resources::{
    CostAnalysisJob, CostAnalysisJobTask, JobStatus, TaskTemplate, legacy_task_object_name,
    task_object_name,
};
use crate::telemetry::Traced;

/// Field manager of every write the controller makes; GitOps tools own `spec`, this owns `status`.
pub const FIELD_MANAGER: &str = "cost-analysis-operator";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    Missing(&'static str),
    #[error("the reconcile panicked (a bug; the job is retried with backoff)")]
    Panicked,
    #[error("the reconcile took longer than {0:?} (a request that hangs; retried with backoff)")]
    TimedOut(Duration),
}

impl ReconcileError {
    fn label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            ReconcileError::Kube(_) => "kube",
            ReconcileError::Missing(_) => "invalid_object",
            ReconcileError::Panicked => "panic",
            ReconcileError::TimedOut(_) => "timeout",
        }
    }
}

pub struct Context {
    client: Client,
    recorder: Recorder,
    tasks: Store<CostAnalysisJobTask>,
    tasks_ready: Ready,
    config: lifecycle::Config,
    metrics: Arc<Metrics>,
    backoff: Mutex<HashMap<ObjectRef<CostAnalysisJob>, u32>>,
    own: Mutex<OwnWrites>,
    /// Reconciles started, for the pace of [`crate::passes`].
    started: crate::passes::Started,
    /// The task runner (`--task-runner`), if enabled.
    runner: Option<Arc<crate::runner_shell::Runner>>,
}

/// Reconciles at a time. A timeout is a few requests of ~10-50 ms each; deadlines come in whole
/// seconds, so a second's worth of timeouts is due at one instant.
const CONCURRENCY: u16 = 32;

/// Requests one reconcile sends at a time when it creates or cancels several tasks.
const WRITES_AT_ONCE: usize = 8;

/// Runs the controller until `shutdown` resolves. The caller holds the leader lease; `caches`
/// have been running since the process started (see [`crate::caches`]).
pub async fn run(
    caches: Caches,
    client: Client,
    config: lifecycle::Config,
    metrics: Arc<Metrics>,
    resync: Duration,
    runner: Option<Arc<crate::runner_shell::Runner>>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let started = crate::passes::Started::default();
    // Job triggers from now on, and a first pass over every job (whatever happened before this
    // replica led is in the cache, not in a trigger).
    let triggered = caches.hub.lead();
    let passes = crate::passes::stream(
        caches.jobs.clone(),
        caches.jobs_ready.clone(),
        caches.hub.clone(),
        config.clone(),
        started.clone(),
        resync,
    );
    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        tasks: caches.tasks.clone(),
        tasks_ready: caches.tasks_ready.clone(),
        config,
        metrics,
        backoff: Mutex::new(HashMap::new()),
        own: Mutex::new(OwnWrites::default()),
        started,
        runner,
    });
    // Every trigger comes from the caches' watches and the passes; the controller's own trigger
    // stream is never used.
    let no_stream = futures::stream::pending::<Result<CostAnalysisJob, watcher::Error>>();
    let controller = Controller::for_stream(no_stream, caches.jobs.clone())
        .reconcile_on(futures::stream::select(triggered, passes))
        .with_config(ControllerConfig::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(job = %obj, "reconciled"),
                // A pass or a task event named a job deleted since: nothing to do.
                Err(ControllerError::ObjectNotFound(obj)) => debug!(job = %obj, "job is gone"),
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

async fn reconcile(job: Arc<CostAnalysisJob>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.started.add(1);
    let started = Instant::now();
    let traced = Traced::new(&job);
    let result = match tokio::time::timeout(
        RECONCILE_TIMEOUT,
        contain(reconcile_inner(&job, &ctx, &traced), &ctx.metrics),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ReconcileError::TimedOut(RECONCILE_TIMEOUT)),
    };
    if let Err(e) = &result {
        let span = traced.span();
        span.record("error", e.label());
        span.record("otel.status_code", "ERROR");
    }
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().err().map(ReconcileError::label),
    );
    if let (Ok(_), Ok(mut b)) = (&result, ctx.backoff.lock()) {
        b.remove(&ObjectRef::from_obj(job.as_ref()));
    }
    result
}

/// A panic inside one reconcile stays there: it is logged and counted, the job is retried with
/// backoff like any failed reconcile, and every other job goes on.
async fn contain<T>(
    reconcile: impl std::future::Future<Output = Result<T, ReconcileError>>,
    metrics: &Metrics,
) -> Result<T, ReconcileError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(reconcile).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            metrics.reconcile_panics.inc();
            tracing::error!("a reconcile panicked; the job will be retried with backoff");
            Err(ReconcileError::Panicked)
        }
    }
}

async fn reconcile_inner(
    job: &CostAnalysisJob,
    ctx: &Context,
    traced: &Traced<'_>,
) -> Result<Action, ReconcileError> {
    if job.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Never decide from a partial view: until the task cache holds the initial list, a task it
    // has not seen may well exist (and be finished). The task watch runs on its own while this
    // waits (`crate::caches`).
    if !ctx.tasks_ready.wait().await {
        return Err(ReconcileError::Missing("task cache"));
    }
    let ns = job
        .namespace()
        .ok_or(ReconcileError::Missing("namespace"))?;
    let name = job.name_any();
    let uid = job.uid().ok_or(ReconcileError::Missing("uid"))?;
    let view = JobView::of(job).ok_or(ReconcileError::Missing("creationTimestamp"))?;

    // This controller's last status write of the job is not in the cache yet (another event of
    // the job came first): a decision from this copy could only conflict. The write's own watch
    // event brings the job back; the requeue is the safety net if it never comes.
    let status_key = own_writes::Key::JobStatus(ns.clone(), name.clone(), uid.clone());
    if ctx.own_write_pending(&status_key, job.resource_version().as_deref()) {
        return Ok(Action::requeue(own_writes::GRACE));
    }

    let observed: Vec<TaskView> = job
        .spec
        .tasks
        .iter()
        .filter_map(|t| match find_task(&ctx.tasks, &ns, &name, &uid, &t.id) {
            Some(task) => Some(TaskView::of(&t.id, &task)),
            // Created by this controller a moment ago, not in the cache yet: it exists (and has
            // not started), so it is not created again.
            None => ctx
                .own_write_pending(&task_key(&ns, &name, &uid, &t.id), None)
                .then(|| TaskView::pending(&t.id, task_object_name(&name, &t.id))),
        })
        .collect();

    let decision = lifecycle::decide(&view, &observed, Utc::now(), &ctx.config);
    let runner = ctx.runner.as_ref().filter(|r| r.runs_in(&ns));
    if !job_metrics::is_settled(&decision) || runner.is_some() {
        use tracing::Instrument;
        let span = traced.span();
        job_metrics::record_decision(span, &decision);
        apply(job, &ns, &name, &decision, ctx)
            .instrument(span.clone())
            .await?;
    }
    if let Some(runner) = runner {
        use tracing::Instrument;
        let state = decision.status.status.unwrap_or(JobStatus::InProgress);
        let tasks: Vec<_> = job
            .spec
            .tasks
            .iter()
            .map(|t| find_task(&ctx.tasks, &ns, &name, &uid, &t.id))
            .collect();
        let done = runner
            .reconcile(job, state, &tasks, &ctx.own, &ctx.recorder, &ctx.config)
            .instrument(traced.span().clone())
            .await?;
        debug!(job = name, ?done, "task runner");
    }

    // Only a real deadline or TTL is scheduled per job; the periodic look at every job is a
    // pass (`crate::passes`), not a requeue per job.
    Ok(match decision.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
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
) -> Result<(), ReconcileError> {
    let jobs: Api<CostAnalysisJob> = Api::namespaced(ctx.client.clone(), ns);
    let uid = job.uid().ok_or(ReconcileError::Missing("uid"))?;
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
        ctx.own_write(
            own_writes::Key::JobStatus(ns.into(), name.into(), uid.clone()),
            job.resource_version().as_deref(),
        );
        ctx.metrics.status_writes.inc();
        let before = job.status.as_ref().and_then(|s| s.status);
        if let Some(state) = decision.status.status.filter(|s| before != Some(*s)) {
            ctx.metrics.transition(state.as_str());
            if state.is_terminal() {
                count_finished(job, ns, name, &uid, state, decision, ctx);
            }
        }
    }

    let created = create_tasks(job, ns, name, &uid, &decision.create_tasks, ctx).await?;

    // Which tasks were really created is known only here (one the cache had not seen yet
    // answers 409), so this event is the shell's, not the decision's.
    let created_note = (created > 0).then(|| lifecycle::EventNote {
        kind: EventKind::Normal,
        reason: "TasksCreated",
        note: format!("Created {created} of {} tasks", job.spec.tasks.len()),
    });
    // The events and the task cancellations are independent of each other (both only follow
    // the status written above), so they go together.
    let events = async {
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
    };
    let ((), canceled) = futures::join!(
        events,
        cancel_tasks(ns, name, &uid, &decision.cancel_tasks, ctx)
    );
    canceled?;

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

/// Counts a job's terminal transition (once: the conditional write of a final status succeeds
/// once per job) with its tasks' final states as this decision leaves them.
fn count_finished(
    job: &CostAnalysisJob,
    ns: &str,
    name: &str,
    uid: &str,
    state: crate::resources::JobStatus,
    decision: &Decision,
    ctx: &Context,
) {
    let task_states = job
        .spec
        .tasks
        .iter()
        .filter_map(|t| {
            if decision.cancel_tasks.contains(&t.id) {
                return Some("CANCELED");
            }
            find_task(&ctx.tasks, ns, name, uid, &t.id)
                .map(|task| job_metrics::task_state_label(task.state()))
        })
        .collect();
    job_metrics::finished(job, state, decision, task_states, &ctx.config, &ctx.metrics);
}

/// Creates the tasks the decision asks for, a few at a time; returns how many were really
/// created (409: it existed, the cache had not seen it yet).
async fn create_tasks(
    job: &CostAnalysisJob,
    ns: &str,
    name: &str,
    uid: &str,
    templates: &[TaskTemplate],
    ctx: &Context,
) -> Result<usize, ReconcileError> {
    if templates.is_empty() {
        return Ok(0);
    }
    let tasks: Api<CostAnalysisJobTask> = Api::namespaced(ctx.client.clone(), ns);
    let owner = job
        .controller_owner_ref(&())
        .ok_or(ReconcileError::Missing("uid"))?;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    // The futures are built in a loop, not by a closure: a closure returning a future that
    // borrows from this function is not accepted where the reconcile future must be `Send`.
    let mut writes = Vec::with_capacity(templates.len());
    let now = Utc::now();
    for template in templates {
        let task = CostAnalysisJobTask::of_job(job, name, template, owner.clone(), now);
        let (tasks, params) = (&tasks, &params);
        writes.push(async move {
            let created = match tasks.create(params, &task).await {
                Ok(_) => true,
                Err(kube::Error::Api(s)) if s.code == 409 => false,
                Err(e) => return Err(ReconcileError::from(e)),
            };
            ctx.own_write(task_key(ns, name, uid, &template.id), None);
            if created {
                ctx.metrics.task_creates.inc();
            }
            Ok(created)
        });
    }
    let results: Vec<Result<bool, ReconcileError>> = futures::stream::iter(writes)
        .buffer_unordered(WRITES_AT_ONCE)
        .collect()
        .await;
    let mut created = 0usize;
    for result in results {
        if result? {
            created = created.saturating_add(1);
        }
    }
    Ok(created)
}

/// Marks the decision's unfinished tasks CANCELED, a few at a time, each conditional on the
/// version the decision saw: a worker's final report that lands first wins, and the conflict
/// makes the next pass look again. A task this controller canceled a moment ago whose cached copy
/// still predates that is not canceled again.
async fn cancel_tasks(
    ns: &str,
    name: &str,
    uid: &str,
    task_ids: &[String],
    ctx: &Context,
) -> Result<(), ReconcileError> {
    let tasks: Api<CostAnalysisJobTask> = Api::namespaced(ctx.client.clone(), ns);
    let now = crate::timestamp::format(&Utc::now());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let pending: Vec<Arc<CostAnalysisJobTask>> = task_ids
        .iter()
        .filter_map(|id| find_task(&ctx.tasks, ns, name, uid, id))
        .filter(|task| {
            !ctx.own_write_pending(
                &task_key(ns, name, uid, &task.spec.task_id),
                task.resource_version().as_deref(),
            )
        })
        .collect();
    let mut writes = Vec::with_capacity(pending.len());
    for task in pending {
        let (tasks, params, now) = (&tasks, &params, &now);
        writes.push(async move {
            let patch = json!({
                "metadata": {"resourceVersion": task.resource_version()},
                "status": {"status": "CANCELED", "finishedAt": now},
            });
            match tasks
                .patch_status(&task.name_any(), params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    ctx.own_write(
                        task_key(ns, name, uid, &task.spec.task_id),
                        task.resource_version().as_deref(),
                    );
                    ctx.metrics.task_cancels.inc();
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        });
    }
    let results: Vec<Result<(), ReconcileError>> = futures::stream::iter(writes)
        .buffer_unordered(WRITES_AT_ONCE)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The own-writes key of a job's task (by the name this release gives task objects).
fn task_key(ns: &str, job_name: &str, uid: &str, task_id: &str) -> own_writes::Key {
    own_writes::Key::Task(ns.into(), task_object_name(job_name, task_id), uid.into())
}

impl Context {
    fn own_write(&self, key: own_writes::Key, over: Option<&str>) {
        if let Ok(mut own) = self.own.lock() {
            own.record(key, over, std::time::Instant::now());
        }
    }

    fn own_write_pending(&self, key: &own_writes::Key, cached: Option<&str>) -> bool {
        self.own
            .lock()
            .map(|mut own| own.cache_is_behind(key, cached, std::time::Instant::now()))
            .unwrap_or(false)
    }
}

/// Per-object exponential backoff with jitter: 0.5 s doubling up to 5 min, each delay scaled by a
/// random factor in [0.5, 1.5) so that many failing objects do not retry in lockstep.
fn error_policy(job: Arc<CostAnalysisJob>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
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
#[path = "controller_unit_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "controller_tests.rs"]
mod shell_tests;
