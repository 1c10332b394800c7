//! The controller's view of the cluster: job and task caches fed by watches from the process's
//! start, and the triggers those watches produce.
//!
//! A standby replica keeps its caches warm while it waits for the lease (reads only, it writes
//! nothing), so that on taking the lease it decides from a complete view at once instead of first
//! listing every job and task (at 10,000 jobs a cold leader's list and first look at every job
//! took 7.8 s before its first decision). Only the leader's controller receives the triggers.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::{Notify, watch};
use tracing::warn;

use crate::metrics::Metrics;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

/// What a watch event asks of the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Look at this job.
    Job(ObjectRef<CostAnalysisJob>),
    /// Look at every job: a (re)list has replaced the cache, and what changed while the watch was
    /// down is unknown.
    Pass,
}

/// Hands triggers to the leader's controller, if there is one in this process.
#[derive(Default)]
pub struct Hub {
    leader: Mutex<Option<mpsc::UnboundedSender<ObjectRef<CostAnalysisJob>>>>,
    passes: Notify,
}

impl Hub {
    /// From now on, job triggers go to the returned receiver (the one the leader's controller
    /// reads) and a pass is requested: the controller's first look at every job. The receiver is
    /// unbounded because the controller drains it at once into its scheduler, which keeps one
    /// entry per job; a bounded one would stall the watches, and with them the caches.
    pub fn lead(&self) -> mpsc::UnboundedReceiver<ObjectRef<CostAnalysisJob>> {
        let (tx, rx) = mpsc::unbounded();
        if let Ok(mut leader) = self.leader.lock() {
            *leader = Some(tx);
        }
        self.passes.notify_one();
        rx
    }

    pub fn send(&self, trigger: Trigger) {
        match trigger {
            Trigger::Job(job) => {
                if let Ok(leader) = self.leader.lock()
                    && let Some(tx) = leader.as_ref()
                {
                    // A closed receiver means the controller has stopped: nothing to tell.
                    let _ = tx.unbounded_send(job);
                }
            }
            Trigger::Pass => self.passes.notify_one(),
        }
    }

    /// Resolves when a pass has been requested since the last one was taken.
    pub fn passes(&self) -> &Notify {
        &self.passes
    }
}

/// Whether a cache holds its first complete list. kube's `Store::wait_until_ready` keeps one
/// waker: of several tasks waiting on it, only the last to poll is woken when the list completes,
/// the others wait until something else polls them. A leader that took the lease before its
/// caches had listed waited so for ever (its first pass, and every reconcile waiting for the task
/// cache); this one wakes every waiter.
#[derive(Clone, Debug)]
pub struct Ready(watch::Receiver<bool>);

impl Ready {
    /// A cache that is ready already (tests).
    pub fn now() -> Ready {
        Ready(watch::channel(true).1)
    }

    /// Waits until the cache holds its first complete list; false if it never will (its watch
    /// is gone).
    pub async fn wait(&self) -> bool {
        self.0.clone().wait_for(|ready| *ready).await.is_ok()
    }
}

/// The caches and the triggers of their watches.
#[derive(Clone)]
pub struct Caches {
    pub jobs: Store<CostAnalysisJob>,
    pub tasks: Store<CostAnalysisJobTask>,
    pub jobs_ready: Ready,
    pub tasks_ready: Ready,
    pub hub: Arc<Hub>,
}

impl Caches {
    /// Starts the job and task watches (in `namespace`, or everywhere). They run, and retry with
    /// [`crate::backoff::WatchBackoff`], for as long as the process does. With `catalog` (the API
    /// shim in the same process) the job watch feeds the shim's catalog too, so that a replica
    /// lists and holds every job once rather than twice.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
        metrics: Arc<Metrics>,
        feeds: Feeds,
    ) -> Caches {
        let (jobs, tasks): (Api<CostAnalysisJob>, Api<CostAnalysisJobTask>) = match namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
        let Feeds {
            jobs: job_feed,
            tasks: task_feed,
        } = feeds;
        let hub = Arc::new(Hub::default());
        let (job_reader, job_writer) = reflector::store();
        let (task_reader, task_writer) = reflector::store();
        let job_events = reflector::reflector(
            job_writer,
            observed(
                crate::backoff::watch(jobs, watcher::Config::default().any_semantic()),
                metrics.clone(),
                "jobs",
            )
            .filter_map(move |event| futures::future::ready(share(event, job_feed.as_ref()))),
        )
        .map(|e| job_trigger(&e));
        let task_events = reflector::reflector(
            task_writer,
            observed(
                crate::backoff::watch(tasks, watcher::Config::default().any_semantic()),
                metrics,
                "tasks",
            )
            .filter_map(move |event| futures::future::ready(share(event, task_feed.as_ref()))),
        )
        .map(|e| task_trigger(&e));
        let (jobs_listed, jobs_ready) = watch::channel(false);
        let (tasks_listed, tasks_ready) = watch::channel(false);
        let job_events = job_events.inspect(move |t| {
            if *t == Some(Trigger::Pass) {
                jobs_listed.send_replace(true);
            }
        });
        let task_events = task_events.inspect(move |t| {
            if *t == Some(Trigger::Pass) {
                tasks_listed.send_replace(true);
            }
        });
        let to = hub.clone();
        tokio::spawn(
            futures::stream::select(job_events, task_events).for_each(move |trigger| {
                if let Some(trigger) = trigger {
                    to.send(trigger);
                }
                futures::future::ready(())
            }),
        );
        Caches {
            jobs: job_reader,
            tasks: task_reader,
            jobs_ready: Ready(jobs_ready),
            tasks_ready: Ready(tasks_ready),
            hub,
        }
    }
}

/// Where a watch of the controller's hands its events to the API shim's catalog of the same
/// resource.
pub type Feed<K = CostAnalysisJob> =
    mpsc::UnboundedSender<Result<watcher::Event<K>, watcher::Error>>;

/// The API shim's catalogs in the same process, which the controller's watches feed.
#[derive(Default)]
pub struct Feeds {
    pub jobs: Option<Feed<CostAnalysisJob>>,
    pub tasks: Option<Feed<CostAnalysisJobTask>>,
}

/// What the controller's cache keeps of an object, and its copy of one the catalog takes whole.
pub trait Slim: Clone {
    fn slim_for_controller(&mut self);
    /// The controller's copy of `self`, which keeps what the catalog reads (so what both drop is
    /// dropped before copying).
    fn controller_copy(&mut self) -> Self;
}

impl Slim for CostAnalysisJob {
    fn slim_for_controller(&mut self) {
        CostAnalysisJob::slim_for_controller(self);
    }

    fn controller_copy(&mut self) -> Self {
        slim_copy(self)
    }
}

impl Slim for CostAnalysisJobTask {
    fn slim_for_controller(&mut self) {
        CostAnalysisJobTask::slim_for_controller(self);
    }

    fn controller_copy(&mut self) -> Self {
        crate::resources::slim_metadata(&mut self.metadata);
        let options = self.spec.options.take();
        let labels = self.metadata.labels.take();
        let mut mine = self.clone();
        mine.slim_for_controller();
        self.spec.options = options;
        self.metadata.labels = labels;
        mine
    }
}

/// The event as the controller's cache takes it, the full event (less what nothing reads)
/// handed to `catalog` first. Errors go to the catalog only: they are already retried, counted and
/// logged, and the cache ignores them.
fn share<K: Slim>(
    event: Result<watcher::Event<K>, watcher::Error>,
    catalog: Option<&Feed<K>>,
) -> Option<Result<watcher::Event<K>, watcher::Error>> {
    let Some(catalog) = catalog else {
        return Some(event.map(|e| e.modify(K::slim_for_controller)));
    };
    match event {
        Err(e) => {
            // A closed catalog means the shim has stopped (and the process with it).
            let _ = catalog.unbounded_send(Err(e));
            None
        }
        Ok(mut event) => {
            use watcher::Event;
            let mine = match &mut event {
                Event::Apply(object) => Event::Apply(object.controller_copy()),
                Event::Delete(object) => Event::Delete(object.controller_copy()),
                Event::InitApply(object) => Event::InitApply(object.controller_copy()),
                Event::Init => Event::Init,
                Event::InitDone => Event::InitDone,
            };
            let _ = catalog.unbounded_send(Ok(event));
            Some(Ok(mine))
        }
    }
}

/// The controller's copy of `job`, which keeps what the catalog reads (the options are not
/// copied only to be dropped).
fn slim_copy(job: &mut CostAnalysisJob) -> CostAnalysisJob {
    crate::resources::slim_metadata(&mut job.metadata);
    let options = job.spec.options.take();
    let labels = job.metadata.labels.take();
    let mut mine = job.clone();
    mine.slim_for_controller();
    job.spec.options = options;
    job.metadata.labels = labels;
    mine
}

/// A job event's trigger. The reflector has applied the event to the cache before this runs, so
/// a listed job is looked at once the list is complete and the cache swapped (`InitDone`): a
/// trigger sent during the list would reach a reconcile that finds no such job and is dropped.
/// A deleted job needs nothing (its tasks go with it by their owner references).
pub fn job_trigger(
    event: &Result<watcher::Event<CostAnalysisJob>, watcher::Error>,
) -> Option<Trigger> {
    match event {
        Ok(watcher::Event::Apply(job)) => Some(Trigger::Job(ObjectRef::from_obj(job))),
        Ok(watcher::Event::InitDone) => Some(Trigger::Pass),
        // Errors are already retried (with our backoff), counted and logged by `observed`.
        _ => None,
    }
}

/// A task event's trigger: its job (by the controller owner reference), created, changed or
/// deleted alike (a deleted task of a running job is created again).
pub fn task_trigger(
    event: &Result<watcher::Event<CostAnalysisJobTask>, watcher::Error>,
) -> Option<Trigger> {
    match event {
        Ok(watcher::Event::Apply(task) | watcher::Event::Delete(task)) => {
            let ns = task.namespace()?;
            task.owner_references()
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == "CostAnalysisJob")
                .map(|o| Trigger::Job(ObjectRef::new(&o.name).within(&ns)))
        }
        Ok(watcher::Event::InitDone) => Some(Trigger::Pass),
        _ => None,
    }
}

/// Counts a watch's restarts (every completed list after the first) and errors, and says so in the log.
fn observed<K: Send + 'static>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    metrics: Arc<Metrics>,
    resource: &'static str,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    let mut lists = 0u64;
    stream.inspect(move |event| match event {
        // Completed lists: while the API server is down, every attempt opens with an `Init`.
        Ok(watcher::Event::InitDone) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::CostAnalysisJobSpec;
    use crate::testing::JobBuilder;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn job(name: &str) -> CostAnalysisJob {
        JobBuilder::new(name)
            .namespace("ns")
            .domain("d")
            .data_source("ds")
            .build()
    }

    fn task(owner: serde_json::Value) -> CostAnalysisJobTask {
        serde_json::from_value(json!({
            "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJobTask",
            "metadata": {"name": "j.t1", "namespace": "ns", "ownerReferences": owner},
            "spec": {"jobName": "j", "taskId": "t1", "domainId": "d", "dataSourceId": "ds"},
        }))
        .unwrap()
    }

    #[test]
    fn a_job_is_triggered_when_changed_and_every_job_once_a_list_is_complete() {
        let j = || ObjectRef::new("a").within("ns");
        assert_eq!(
            job_trigger(&Ok(Event::Apply(job("a")))),
            Some(Trigger::Job(j()))
        );
        assert_eq!(job_trigger(&Ok(Event::Delete(job("a")))), None);
        // During a (re)list nothing: the cache still holds the old list until InitDone.
        assert_eq!(job_trigger(&Ok(Event::Init)), None);
        assert_eq!(job_trigger(&Ok(Event::InitApply(job("a")))), None);
        assert_eq!(job_trigger(&Ok(Event::InitDone)), Some(Trigger::Pass));
        assert_eq!(
            job_trigger(&Err(watcher::Error::NoResourceVersion)),
            None,
            "errors would pause the controller's triggers"
        );
    }

    #[test]
    fn a_task_triggers_its_controlling_job_only() {
        let owner = |kind: &str, controller: bool| {
            json!([{"apiVersion": "cost-analysis.spaceone.dev/v1", "kind": kind, "name": "j",
                    "uid": "u", "controller": controller}])
        };
        let mine = task(owner("CostAnalysisJob", true));
        let want = Some(Trigger::Job(ObjectRef::new("j").within("ns")));
        assert_eq!(task_trigger(&Ok(Event::Apply(mine.clone()))), want);
        assert_eq!(task_trigger(&Ok(Event::Delete(mine))), want);
        assert_eq!(
            task_trigger(&Ok(Event::Apply(task(owner("CostAnalysisJob", false))))),
            None
        );
        assert_eq!(
            task_trigger(&Ok(Event::Apply(task(owner("Other", true))))),
            None
        );
        assert_eq!(task_trigger(&Ok(Event::Apply(task(json!([]))))), None);
        assert_eq!(task_trigger(&Ok(Event::InitDone)), Some(Trigger::Pass));
    }

    /// Nothing a decision or an answer never reads is cached: no managed fields, no annotations
    /// (kubectl's last-applied copy) in the controller's caches, and the job's options and labels
    /// only in the shim's catalog, which gets them from the same watch.
    #[test]
    fn caches_keep_only_what_is_read_and_the_catalog_shares_the_watch() {
        let mut j = job("a");
        j.metadata.managed_fields = Some(vec![Default::default()]);
        j.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            )]
            .into(),
        );
        j.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        j.spec.options = Some(json!({"sync_mode": "MANUAL"}).as_object().unwrap().clone());
        let (tx, mut rx) = mpsc::unbounded();
        let Some(Ok(Event::Apply(mine))) = share(Ok(Event::Apply(j.clone())), Some(&tx)) else {
            panic!("the controller's event is lost");
        };
        assert_eq!(mine.metadata.managed_fields, None);
        assert_eq!(mine.metadata.annotations, None);
        assert_eq!((&mine.metadata.labels, &mine.spec.options), (&None, &None));
        assert_eq!(
            mine.spec,
            CostAnalysisJobSpec {
                options: None,
                ..j.spec.clone()
            }
        );
        let Ok(Ok(Event::Apply(theirs))) = rx.try_recv() else {
            panic!("the catalog's event is lost");
        };
        assert_eq!(theirs.metadata.managed_fields, None);
        assert_eq!(theirs.metadata.annotations, None);
        assert_eq!(theirs.metadata.labels, j.metadata.labels);
        assert_eq!(theirs.spec.options, j.spec.options);
        // Errors go to the catalog (which reports the watch failing), not to the cache.
        assert!(share(Err(watcher::Error::NoResourceVersion), Some(&tx)).is_none());
        assert!(matches!(rx.try_recv(), Ok(Err(_))));
        // Without the shim, the same slim copy.
        let Some(Ok(Event::InitApply(alone))) = share(Ok(Event::InitApply(j)), None) else {
            panic!("the controller's event is lost");
        };
        assert_eq!((alone.metadata, alone.spec), (mine.metadata, mine.spec));

        let mut t = task(json!([]));
        t.metadata.managed_fields = Some(vec![Default::default()]);
        t.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        t.spec.options = j_options();
        t.slim_for_controller();
        assert_eq!(t.metadata.managed_fields, None);
        assert_eq!(t.metadata.annotations, None);
        assert_eq!(t.spec.options, None);
    }

    fn j_options() -> Option<serde_json::Map<String, serde_json::Value>> {
        json!({"start": "2024-01"}).as_object().cloned()
    }

    /// Every waiter wakes when the list completes (kube's `Store::wait_until_ready` wakes only
    /// the last one to poll; this test fails with it).
    #[tokio::test]
    async fn every_waiter_wakes_when_the_cache_is_ready() {
        let (tx, rx) = watch::channel(false);
        let ready = Ready(rx);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let ready = ready.clone();
                tokio::spawn(async move { ready.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        tx.send_replace(true);
        for w in waiters {
            let woke = tokio::time::timeout(std::time::Duration::from_secs(5), w).await;
            assert!(matches!(woke, Ok(Ok(true))), "a waiter was not woken");
        }
        assert!(Ready::now().wait().await);
        drop(tx);
        assert!(ready.wait().await, "ready stays ready");
    }

    #[tokio::test]
    async fn only_the_leader_gets_job_triggers_and_leading_requests_a_pass() {
        use futures::FutureExt;
        let hub = Hub::default();
        hub.send(Trigger::Job(ObjectRef::new("before").within("ns")));
        let mut rx = hub.lead();
        assert!(hub.passes().notified().now_or_never().is_some());
        hub.send(Trigger::Job(ObjectRef::new("after").within("ns")));
        assert_eq!(rx.next().await.map(|r| r.name), Some("after".to_string()));
        assert!(rx.next().now_or_never().is_none());
        hub.send(Trigger::Pass);
        assert!(hub.passes().notified().now_or_never().is_some());
        assert!(hub.passes().notified().now_or_never().is_none());
    }
}
