//! The task runner's I/O: a watch of the batch Jobs it created (in the namespaces it runs tasks
//! in), whose events look at their CostAnalysisJob again, and the requests [`crate::runner::plan`]
//! asks for: create a task's batch Job (409 is success: it exists), report a task's status from
//! its batch Job (conditional on the task's version), read a failed Job's pods for the message,
//! delete the Jobs of stopped tasks (propagation Background). Nothing here decides.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::caches::{Hub, Trigger};
use crate::own_writes::{self, OwnWrites};
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask, JobStatus};
use crate::runner::{
    self, ERROR_TASK_TEMPLATE, JOB_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, Report, RunnerConfig,
    Step, TaskRun,
};

/// Field manager of the runner's writes: the controller's (`controller::FIELD_MANAGER`, not
/// imported so that the controller, which calls this module, is not imported back).
const FIELD_MANAGER: &str = "cost-analysis-operator";

/// Requests one reconcile sends at a time.
const WRITES_AT_ONCE: usize = 8;

/// The runner: its configuration and its cache of batch Jobs, one store per watched namespace
/// (one for all namespaces when the list is empty).
pub struct Runner {
    config: RunnerConfig,
    client: Client,
    stores: Vec<(Option<String>, Store<Job>, watch::Receiver<bool>)>,
}

/// What one reconcile of the runner did, for the caller's log and metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Done {
    pub created: usize,
    pub reported: usize,
    pub deleted: usize,
}

impl Runner {
    /// Starts the batch Job watches (only Jobs labelled as the runner's); their events trigger the
    /// job they run for through `hub`. `watch_namespace` is the controller's `--namespace`.
    pub fn start(
        client: Client,
        config: RunnerConfig,
        watch_namespace: Option<&str>,
        hub: Arc<Hub>,
    ) -> Arc<Runner> {
        let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
            vec![watch_namespace.map(str::to_owned)]
        } else {
            config.namespaces.iter().cloned().map(Some).collect()
        };
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
        let mut stores = Vec::with_capacity(namespaces.len());
        for ns in namespaces {
            let api: Api<Job> = match &ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (reader, writer) = reflector::store();
            let (listed, ready) = watch::channel(false);
            let hub = hub.clone();
            let events = reflector::reflector(
                writer,
                watcher(
                    api,
                    watcher::Config::default().labels(&selector).any_semantic(),
                )
                .backoff(crate::backoff::WatchBackoff::default()),
            );
            tokio::spawn(events.for_each(move |event| {
                match &event {
                    Ok(watcher::Event::Apply(b) | watcher::Event::Delete(b)) => {
                        if let Some(job) = job_of(b) {
                            hub.send(Trigger::Job(job));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        listed.send_replace(true);
                        hub.send(Trigger::Pass);
                    }
                    Err(e) => warn!(error = %e, "batch Job watch failed; retrying with backoff"),
                    Ok(_) => {}
                }
                futures::future::ready(())
            }));
            stores.push((ns, reader, ready));
        }
        Arc::new(Runner {
            config,
            client,
            stores,
        })
    }

    /// A runner over given stores (tests).
    #[cfg(test)]
    pub(crate) fn with_stores(
        config: RunnerConfig,
        client: Client,
        stores: Vec<(Option<String>, Store<Job>)>,
    ) -> Runner {
        let stores = stores
            .into_iter()
            .map(|(ns, s)| (ns, s, watch::channel(true).1))
            .collect();
        Runner {
            config,
            client,
            stores,
        }
    }

    pub fn runs_in(&self, namespace: &str) -> bool {
        self.config.runs_in(namespace)
    }

    fn store(
        &self,
        namespace: &str,
    ) -> Option<&(Option<String>, Store<Job>, watch::Receiver<bool>)> {
        self.stores
            .iter()
            .find(|(ns, _, _)| ns.as_deref().is_none_or(|n| n == namespace))
    }

    /// Runs, reports and stops the templated tasks of `job`, whose status the controller has just
    /// decided is `state`. `tasks` holds the job's task objects the cache has, in the order of
    /// `spec.tasks` (`None`: not seen yet).
    pub async fn reconcile(
        &self,
        job: &CostAnalysisJob,
        state: JobStatus,
        tasks: &[Option<Arc<CostAnalysisJobTask>>],
        own: &Mutex<OwnWrites>,
        recorder: &Recorder,
        config: &crate::lifecycle::Config,
    ) -> Result<Done, kube::Error> {
        let Some(ns) = job.namespace().filter(|ns| self.runs_in(ns)) else {
            return Ok(Done::default());
        };
        if !job.spec.tasks.iter().any(|t| t.template.is_some()) {
            return Ok(Done::default());
        }
        let Some((_, store, ready)) = self.store(&ns) else {
            return Ok(Done::default());
        };
        // Never decide from a partial view (a Job not listed yet would be created again: a 409).
        if ready.clone().wait_for(|r| *r).await.is_err() {
            return Ok(Done::default());
        }
        let now = Utc::now();
        let timeout_at = crate::lifecycle::JobView::of(job)
            .map(|v| crate::lifecycle::timeout_at(&v, config))
            .unwrap_or(now);
        let batches: Vec<Option<Arc<Job>>> = job
            .spec
            .tasks
            .iter()
            .zip(tasks)
            .map(|(_, task)| {
                let name = runner::batch_job_name(&task.as_ref()?.name_any());
                store.get(&ObjectRef::new(&name).within(&ns))
            })
            .collect();
        let runs: Vec<TaskRun<'_>> = job
            .spec
            .tasks
            .iter()
            .zip(tasks)
            .zip(&batches)
            .map(|((template, task), batch)| TaskRun {
                template,
                task: task.as_deref(),
                batch: batch.as_deref(),
                create_pending: batch.is_none()
                    && task
                        .as_ref()
                        .is_some_and(|t| pending(own, &batch_key(&ns, t))),
            })
            .collect();
        let steps = runner::plan(job, state, &runs, timeout_at, now);
        self.apply(job, &ns, steps, own, recorder).await
    }

    async fn apply(
        &self,
        job: &CostAnalysisJob,
        ns: &str,
        steps: Vec<Step>,
        own: &Mutex<OwnWrites>,
        recorder: &Recorder,
    ) -> Result<Done, kube::Error> {
        let batches: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let tasks: Api<CostAnalysisJobTask> = Api::namespaced(self.client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let reference = job.object_ref(&());
        let mut writes = Vec::with_capacity(steps.len());
        for step in steps {
            let (batches, tasks, pods, reference) = (&batches, &tasks, &pods, &reference);
            writes.push(async move {
                let mut done = Done::default();
                match step {
                    Step::Create { task_id, batch } => {
                        match create(batches, tasks, &batch, own, ns).await? {
                            Created::Yes => done.created = 1,
                            Created::Existed => {}
                            Created::Refused(message) => {
                                warn!(job = %job.name_any(), task = task_id, %message, "the API server refused the task's batch Job");
                                publish(recorder, reference, EventType::Warning, "TaskFailed", format!("task {task_id}: {ERROR_TASK_TEMPLATE}: {message}")).await;
                                done.reported = 1;
                            }
                        }
                    }
                    Step::Report {
                        task_id,
                        task_name,
                        resource_version,
                        report,
                        explain_from,
                    } => {
                        let report = match (report, explain_from) {
                            (Report::Failed { started, at, code, message }, Some(uid)) => {
                                let message = explain(pods, &uid, &message).await;
                                Report::Failed { started, at, code, message }
                            }
                            (report, _) => report,
                        };
                        if report_task(tasks, &task_name, resource_version.as_deref(), &report).await? {
                            done.reported = 1;
                            if let Report::Failed { code, message, .. } = &report {
                                publish(recorder, reference, EventType::Warning, "TaskFailed", format!("task {task_id}: {code}: {message}")).await;
                            }
                        }
                    }
                    Step::Delete { task_id, name } => {
                        let uid = batches_uid(&self.stores, ns, &name);
                        if delete(batches, &name, uid).await? {
                            info!(job = %job.name_any(), task = task_id, batch_job = name, "deleted the batch Job of a stopped task");
                            done.deleted = 1;
                        }
                    }
                }
                Ok::<Done, kube::Error>(done)
            });
        }
        let results: Vec<Result<Done, kube::Error>> = futures::stream::iter(writes)
            .buffer_unordered(WRITES_AT_ONCE)
            .collect()
            .await;
        let mut total = Done::default();
        for r in results {
            let d = r?;
            total.created = total.created.saturating_add(d.created);
            total.reported = total.reported.saturating_add(d.reported);
            total.deleted = total.deleted.saturating_add(d.deleted);
        }
        Ok(total)
    }
}

fn batches_uid(
    stores: &[(Option<String>, Store<Job>, watch::Receiver<bool>)],
    ns: &str,
    name: &str,
) -> Option<String> {
    stores
        .iter()
        .find(|(n, _, _)| n.as_deref().is_none_or(|n| n == ns))
        .and_then(|(_, s, _)| s.get(&ObjectRef::new(name).within(ns)))
        .and_then(|b| b.uid())
}

/// The job a batch Job runs for, by its annotation.
fn job_of(batch: &Job) -> Option<ObjectRef<CostAnalysisJob>> {
    let ns = batch.namespace()?;
    let job = batch.annotations().get(JOB_ANNOTATION)?;
    Some(ObjectRef::new(job).within(&ns))
}

fn batch_key(ns: &str, task: &CostAnalysisJobTask) -> own_writes::Key {
    own_writes::Key::BatchJob(
        ns.into(),
        runner::batch_job_name(&task.name_any()),
        task.uid().unwrap_or_default(),
    )
}

/// Whether this controller created the batch Job of `key` a moment ago (the cache has none yet).
fn pending(own: &Mutex<OwnWrites>, key: &own_writes::Key) -> bool {
    own.lock()
        .map(|mut o| o.cache_is_behind(key, None, std::time::Instant::now()))
        .unwrap_or(false)
}

enum Created {
    Yes,
    Existed,
    /// The API server refused the Job as invalid: the task has failed (already reported).
    Refused(String),
}

async fn create(
    batches: &Api<Job>,
    tasks: &Api<CostAnalysisJobTask>,
    batch: &Job,
    own: &Mutex<OwnWrites>,
    ns: &str,
) -> Result<Created, kube::Error> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let created = match batches.create(&params, batch).await {
        Ok(_) => Created::Yes,
        // Created before (by this controller before a restart, or by the previous leader).
        Err(kube::Error::Api(s)) if s.code == 409 => Created::Existed,
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => {
            let message = crate::pod_failure::bounded(&s.message, runner::MESSAGE_LIMIT);
            let owner = batch
                .owner_references()
                .first()
                .map(|o| o.name.clone())
                .unwrap_or_default();
            let report = Report::Failed {
                started: None,
                at: Utc::now(),
                code: ERROR_TASK_TEMPLATE,
                message: message.clone(),
            };
            // Not conditional: the task cannot run, whatever its version says.
            report_task(tasks, &owner, None, &report).await?;
            return Ok(Created::Refused(message));
        }
        Err(e) => return Err(e),
    };
    if let (Ok(mut o), Some(owner)) = (own.lock(), batch.owner_references().first()) {
        o.record(
            own_writes::Key::BatchJob(ns.into(), batch.name_any(), owner.uid.clone()),
            None,
            std::time::Instant::now(),
        );
    }
    Ok(created)
}

/// Writes `report` into the task's status; false when the task changed (409: its new version
/// brings the job back) or is gone.
async fn report_task(
    tasks: &Api<CostAnalysisJobTask>,
    name: &str,
    resource_version: Option<&str>,
    report: &Report,
) -> Result<bool, kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patch = report.status_patch(resource_version);
    match tasks
        .patch_status(name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The message of a failed batch Job from its pods; `fallback` when they cannot be read.
async fn explain(pods: &Api<Pod>, uid: &str, fallback: &str) -> String {
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}"));
    match pods.list(&params).await {
        Ok(list) => crate::pod_failure::failure_message(&list.items, fallback),
        Err(e) => {
            warn!(error = %e, "cannot read a failed task's pods; using the batch Job's condition");
            fallback.to_string()
        }
    }
}

/// Deletes a batch Job and, in the background, its pods; only the one the cache showed (uid
/// precondition). False when it was gone already.
async fn delete(batches: &Api<Job>, name: &str, uid: Option<String>) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match batches.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "RunTask".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        warn!(error = %e, "could not record event");
    }
}

#[cfg(test)]
#[path = "runner_shell_tests.rs"]
mod tests;
