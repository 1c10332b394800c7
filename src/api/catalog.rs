//! The shim's in-memory view of every CostAnalysisJob and CostAnalysisJobTask, each fed by a
//! watch and read by the handlers. It keeps compact records (see `spaceone_query::Index`), not
//! whole objects: managed fields, annotations and conditions are dropped on arrival. One
//! [`Catalog`] per resource; what differs between them is the [`Cataloged`] impl.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use spaceone_query::Index;
use tracing::{info, warn};

use super::label_selector::Labels;
use super::options::InitialList;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

pub use super::cataloged::{Cataloged, LiveStatus};

type Key = (String, String);

/// Every object of one resource the shim knows: the query engine's index, and what the service
/// needs beyond it: labels (for label selectors on the Kubernetes surface) and the
/// resourceVersion each record came from (so a write the shim made itself is never rolled back
/// by an older watch event arriving after it).
pub struct Catalog<W: Cataloged = CostAnalysisJob> {
    pub index: Index<W::Record>,
    labels: HashMap<Key, Labels>,
    versions: HashMap<Key, u64>,
    /// SpaceONE addresses a job by job_id alone; this finds the namespaces that hold one.
    namespaces: HashMap<String, Vec<String>>,
    /// Jobs still in progress, with what a cancel writes from: kept only for those, since a
    /// terminal state never changes back.
    live: HashMap<Key, LiveStatus>,
}

/// The catalog of job tasks.
pub type TaskCatalog = Catalog<CostAnalysisJobTask>;

impl<W: Cataloged> Default for Catalog<W> {
    fn default() -> Self {
        Catalog {
            index: Index::default(),
            labels: HashMap::new(),
            versions: HashMap::new(),
            namespaces: HashMap::new(),
            live: HashMap::new(),
        }
    }
}

impl<W: Cataloged> Catalog<W> {
    /// Namespaces holding an object named `name`.
    pub fn namespaces_of(&self, name: &str) -> &[String] {
        self.namespaces.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn live(&self, namespace: &str, name: &str) -> Option<&LiveStatus> {
        self.live.get(&(namespace.to_string(), name.to_string()))
    }

    pub fn labels(&self, namespace: &str, name: &str) -> Option<&Labels> {
        self.labels.get(&(namespace.to_string(), name.to_string()))
    }

    /// Inserts or replaces an object unless the store already holds a newer version of it.
    pub fn upsert(&mut self, object: &W) {
        let (Some(ns), name) = (object.namespace(), object.name_any()) else {
            return;
        };
        let version = object
            .resource_version()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let key = (ns, name);
        if self.versions.get(&key).is_some_and(|v| *v > version) {
            return;
        }
        self.index.upsert(object.record());
        let labels = object.labels();
        if labels.is_empty() {
            self.labels.remove(&key);
        } else {
            self.labels.insert(key.clone(), Labels::of(labels));
        }
        if W::BY_NAME {
            let spaces = self.namespaces.entry(key.1.clone()).or_default();
            if !spaces.contains(&key.0) {
                spaces.push(key.0.clone());
            }
        }
        match object.live() {
            Some(live) => {
                self.live.insert(key.clone(), live);
            }
            None => {
                self.live.remove(&key);
            }
        }
        if W::WRITTEN {
            self.versions.insert(key, version);
        }
    }

    pub fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.index.remove(namespace, name);
        self.labels.remove(&key);
        self.live.remove(&key);
        self.versions.remove(&key);
        if let Some(spaces) = self.namespaces.get_mut(name) {
            spaces.retain(|n| n != namespace);
            if spaces.is_empty() {
                self.namespaces.remove(name);
            }
        }
    }
}

/// The shared [`Catalog`], kept current by a watch: whether its initial list has completed, and
/// since when its watch has been failing (milliseconds since `epoch`; 0: it is not).
pub struct SharedCatalog<W: Cataloged = CostAnalysisJob> {
    pub catalog: Arc<RwLock<Catalog<W>>>,
    pub synced: Arc<AtomicBool>,
    epoch: Instant,
    failing_since_ms: Arc<std::sync::atomic::AtomicU64>,
    /// How many jobs the catalog holds, set after every write.
    size: Gauge<i64, AtomicI64>,
    /// The events of a watch this process runs anyway (the controller's), when it does:
    /// followed instead of a watch of the catalog's own.
    fed: Arc<Mutex<Option<Fed<W>>>>,
}

/// The shared catalog of job tasks.
pub type SharedTasks = SharedCatalog<CostAnalysisJobTask>;

type Fed<W> = futures::channel::mpsc::UnboundedReceiver<Result<Event<W>, watcher::Error>>;

impl<W: Cataloged> Clone for SharedCatalog<W> {
    fn clone(&self) -> Self {
        SharedCatalog {
            catalog: self.catalog.clone(),
            synced: self.synced.clone(),
            epoch: self.epoch,
            failing_since_ms: self.failing_since_ms.clone(),
            size: self.size.clone(),
            fed: self.fed.clone(),
        }
    }
}

impl<W: Cataloged> Default for SharedCatalog<W> {
    fn default() -> Self {
        SharedCatalog::new(Gauge::default())
    }
}

/// How long a writer keeps trying for a gap between readers before it queues for the lock. Queries
/// are bounded by their time budget, so this bounds how stale the index can get under a stream of
/// overlapping queries; until then no reader ever waits behind a writer.
const WRITE_PATIENCE: Duration = Duration::from_secs(2);

/// Watch events applied under one write lock at most.
const BATCH: usize = 1024;

impl<W: Cataloged> SharedCatalog<W> {
    /// An empty catalog that reports its size in `size`.
    pub fn new(size: Gauge<i64, AtomicI64>) -> Self {
        SharedCatalog {
            catalog: Arc::new(RwLock::new(Catalog::default())),
            synced: Arc::default(),
            epoch: Instant::now(),
            failing_since_ms: Arc::default(),
            size,
            fed: Arc::default(),
        }
    }

    /// From now on the catalog follows the events sent here (see [`crate::caches::Caches`])
    /// instead of running its own watch.
    pub fn feed(&self) -> crate::caches::Feed<W> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        if let Ok(mut fed) = self.fed.lock() {
            *fed = Some(rx);
        }
        tx
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Whether answers from the index can be trusted: the initial list is in, and the watch has
    /// not been failing for `grace` or longer (an outage shorter than that is ridden out).
    pub fn is_trusted(&self, grace: Duration) -> bool {
        let since = self.failing_since_ms.load(Ordering::Acquire);
        self.is_synced()
            && (since == 0
                || self
                    .epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since))
                    < grace)
    }

    fn watch_failed(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = self
            .failing_since_ms
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    fn watch_ok(&self) {
        self.failing_since_ms.store(0, Ordering::Release);
    }

    /// The store for reading. A write that panicked half-way poisons the lock; what it left is still
    /// served (the next re-list replaces it) rather than failing every request from then on.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalog<W>> {
        self.catalog.read().unwrap_or_else(|p| {
            warn!(
                "the {} catalog was poisoned by a panic while writing; serving it as it is",
                W::NOUN
            );
            p.into_inner()
        })
    }

    /// Applies `f` to the store without ever queueing in front of readers: it takes the lock only
    /// in a gap between them (a waiting writer would make every new reader wait behind the longest
    /// query in flight). After [`WRITE_PATIENCE`] it queues on a blocking thread instead.
    pub async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Catalog<W>) -> R + Send + 'static,
    ) -> Option<R> {
        let started = Instant::now();
        let size = self.size.clone();
        let apply = move |catalog: &mut Catalog<W>| {
            let out = f(catalog);
            size.set(i64::try_from(catalog.index.len()).unwrap_or(i64::MAX));
            out
        };
        loop {
            match self.catalog.try_write() {
                Ok(mut catalog) => return Some(apply(&mut catalog)),
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    return Some(apply(&mut p.into_inner()));
                }
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if started.elapsed() >= WRITE_PATIENCE {
                let catalog = self.catalog.clone();
                return tokio::task::spawn_blocking(move || {
                    let mut guard = catalog.write().unwrap_or_else(|p| p.into_inner());
                    apply(&mut guard)
                })
                .await
                .ok();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Applies a write the shim made itself, so that the next answer already reflects it.
    pub async fn observe_write(&self, object: W) {
        self.write(move |s| s.upsert(&object)).await;
    }

    /// Keeps the store current until the stream ends (never, in practice: the watcher re-lists
    /// after a watch expires and reports errors with backoff). A streaming initial list that the
    /// API server refuses (WatchList disabled or unknown) is replaced by paged lists.
    pub async fn run(self, client: Client, namespace: Option<String>, initial: InitialList) {
        let api: Api<W> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        let fed = self.fed.lock().ok().and_then(|mut f| f.take());
        if let Some(events) = fed {
            self.follow(events, InitialList::Paged).await;
            return;
        }
        let mut initial = initial;
        loop {
            let config = match initial {
                InitialList::Streaming => watcher::Config::default().streaming_lists(),
                // After "410 Gone" the watcher lists again.
                InitialList::Paged => watcher::Config::default().page_size(500).any_semantic(),
            };
            let events = crate::backoff::watch(api.clone(), config).boxed();
            match self.follow(events, initial).await {
                Followed::Ended => return,
                Followed::StreamingRefused(e) => {
                    warn!(error = %e, "the API server refused a streaming list; listing in pages");
                    initial = InitialList::Paged;
                }
            }
        }
    }

    /// Follows one watch. Events that are already waiting are applied together, under one lock.
    /// A (re)list is built into a catalog of its own as it arrives, compact from the first
    /// object on (never a list of whole objects), and swapped in once complete.
    async fn follow(
        &self,
        mut stream: impl futures::Stream<Item = Result<Event<W>, watcher::Error>> + Unpin,
        initial: InitialList,
    ) -> Followed {
        use futures::FutureExt;
        let mut pending = Catalog::default();
        while let Some(first) = stream.next().await {
            let mut events = vec![first];
            while events.len() < BATCH {
                match stream.next().now_or_never() {
                    Some(Some(e)) => events.push(e),
                    _ => break,
                }
            }
            let mut ops = Vec::new();
            let mut refused = None;
            // An `Init` opens every list attempt, also those that fail.
            if events
                .iter()
                .any(|e| matches!(e, Ok(ev) if !matches!(ev, Event::Init)))
            {
                self.watch_ok();
            }
            for event in events {
                match event {
                    Ok(Event::Init) => pending = Catalog::default(),
                    Ok(Event::InitApply(object)) => pending.upsert(&object),
                    Ok(Event::InitDone) => {
                        ops.push(Op::Replace(Box::new(std::mem::take(&mut pending))));
                    }
                    Ok(Event::Apply(object)) => ops.push(Op::Upsert(Box::new(object))),
                    Ok(Event::Delete(object)) => {
                        if let Some(ns) = object.namespace() {
                            ops.push(Op::Remove(ns, object.name_any()));
                        }
                    }
                    Err(e) if initial == InitialList::Streaming && refuses_streaming(&e) => {
                        refused = Some(e);
                        break;
                    }
                    Err(e) => {
                        self.watch_failed();
                        warn!(error = %e, "{} watch failed; retrying", W::NOUN);
                    }
                }
            }
            if !ops.is_empty() {
                let synced = self
                    .write(move |s| {
                        let (mut synced, mut old) = (None, None);
                        for op in ops {
                            match op {
                                Op::Replace(fresh) => {
                                    synced = Some(fresh.index.len());
                                    // Dropped after the lock is released.
                                    old = Some(std::mem::replace(s, *fresh));
                                }
                                Op::Upsert(object) => s.upsert(&object),
                                Op::Remove(ns, name) => s.remove(&ns, &name),
                            }
                        }
                        (synced, old)
                    })
                    .await
                    .and_then(|(synced, old)| {
                        drop(old);
                        synced
                    });
                if let Some(n) = synced {
                    self.synced.store(true, Ordering::Release);
                    info!(objects = n, "{} catalog synced", W::NOUN);
                }
            }
            if let Some(e) = refused {
                return Followed::StreamingRefused(e);
            }
        }
        Followed::Ended
    }
}

/// The shim's catalogs: jobs and their tasks.
#[derive(Clone, Default)]
pub struct Catalogs {
    pub jobs: SharedCatalog,
    pub tasks: SharedTasks,
}

impl Catalogs {
    /// Empty catalogs that report their sizes in `metrics`.
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        Catalogs {
            jobs: SharedCatalog::new(metrics.catalog_jobs.clone()),
            tasks: SharedCatalog::new(metrics.catalog_tasks.clone()),
        }
    }

    /// Both catalogs can be trusted (see [`SharedCatalog::is_trusted`]).
    pub fn is_trusted(&self, grace: Duration) -> bool {
        self.jobs.is_trusted(grace) && self.tasks.is_trusted(grace)
    }

    /// From now on both follow the controller's watches (see [`crate::caches::Feeds`]).
    pub fn feeds(&self) -> crate::caches::Feeds {
        crate::caches::Feeds {
            jobs: Some(self.jobs.feed()),
            tasks: Some(self.tasks.feed()),
        }
    }
}

/// One change to the store, taken from the watch.
enum Op<W: Cataloged> {
    Replace(Box<Catalog<W>>),
    Upsert(Box<W>),
    Remove(String, String),
}

enum Followed {
    Ended,
    StreamingRefused(watcher::Error),
}

/// An API server without WatchList refuses `sendInitialEvents` as an invalid request (400/422);
/// a proxy in front of it may answer 501.
fn refuses_streaming(e: &watcher::Error) -> bool {
    let code = match e {
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code,
        watcher::Error::WatchError(s) => s.code,
        _ => return false,
    };
    matches!(code, 400 | 422 | 501)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::JobBuilder;
    use spaceone_query::JobStatus;

    fn job(rv: &str, state: Option<JobStatus>) -> CostAnalysisJob {
        let job = JobBuilder::new("job-1")
            .namespace("ns")
            .resource_version(rv);
        match state {
            Some(s) => job.state(s).build(),
            None => job.build(),
        }
    }

    #[test]
    fn only_jobs_in_progress_keep_what_a_cancel_writes_from() {
        let mut store = Catalog::default();
        let live_rv = |s: &Catalog| s.live("ns", "job-1").map(|l| l.resource_version.clone());
        store.upsert(&job("5", None));
        assert_eq!(live_rv(&store).as_deref(), Some("5"));
        store.upsert(&job("6", Some(JobStatus::InProgress)));
        assert_eq!(live_rv(&store).as_deref(), Some("6"));
        // An older event arriving late changes nothing.
        store.upsert(&job("4", None));
        assert_eq!(live_rv(&store).as_deref(), Some("6"));
        store.upsert(&job("7", Some(JobStatus::Success)));
        assert!(store.live("ns", "job-1").is_none());
        assert_eq!(
            store.index.get("ns", "job-1").map(|j| j.status),
            Some(JobStatus::Success)
        );
        store.upsert(&job("8", Some(JobStatus::InProgress)));
        store.remove("ns", "job-1");
        assert!(store.live("ns", "job-1").is_none());
        assert!(store.namespaces_of("job-1").is_empty());
    }

    /// The catalog follows a feed of watch events (the controller's watch in `run`): a list
    /// replaces it once complete, and a failing watch is reported.
    #[tokio::test]
    async fn the_catalog_follows_a_shared_watch() {
        let jobs = SharedCatalog::default();
        let tx = jobs.feed();
        let mut other = job("3", None);
        other.metadata.name = Some("job-2".into());
        for e in [
            Event::Init,
            Event::InitApply(job("1", None)),
            Event::InitDone,
            Event::Apply(other.clone()),
            Event::Init,
            Event::InitApply(other),
        ] {
            tx.unbounded_send(Ok(e)).unwrap();
        }
        tx.unbounded_send(Err(watcher::Error::NoResourceVersion))
            .unwrap();
        drop(tx);
        let fed = jobs.fed.lock().unwrap().take().unwrap();
        jobs.follow(fed, InitialList::Paged).await;
        assert!(jobs.is_synced());
        let catalog = jobs.read();
        // The second list is not complete: the first one's view stays.
        assert_eq!(catalog.index.len(), 2);
        assert!(catalog.index.get("ns", "job-1").is_some());
        assert!(!jobs.is_trusted(Duration::ZERO), "the failure is reported");
    }

    /// Without the task CRD (an operator upgraded before its CRDs, or RBAC without the task
    /// resource), the task watch fails from its first list: the process is never ready, however
    /// whole the job catalog is (the runbook's `CostAnalysisApiNotReady`, `CostAnalysisCatalogStale`).
    #[tokio::test]
    async fn a_missing_task_resource_keeps_the_process_unready() {
        let catalogs = Catalogs::new(&crate::metrics::Metrics::default());
        let (jobs, tasks) = (catalogs.jobs.feed(), catalogs.tasks.feed());
        for e in [
            Event::Init,
            Event::InitApply(job("1", None)),
            Event::InitDone,
        ] {
            jobs.unbounded_send(Ok(e)).unwrap();
        }
        let not_found = kube::Error::Api(Box::new(kube::core::Status {
            code: 404,
            reason: "NotFound".into(),
            ..kube::core::Status::default()
        }));
        tasks
            .unbounded_send(Err(watcher::Error::InitialListFailed(not_found)))
            .unwrap();
        drop((jobs, tasks));
        let fed = catalogs.jobs.fed.lock().unwrap().take().unwrap();
        catalogs.jobs.follow(fed, InitialList::Paged).await;
        let fed = catalogs.tasks.fed.lock().unwrap().take().unwrap();
        catalogs.tasks.follow(fed, InitialList::Paged).await;
        let grace = Duration::from_secs(10);
        assert!(catalogs.jobs.is_trusted(grace));
        assert!(!catalogs.tasks.is_synced());
        assert!(!catalogs.is_trusted(grace), "ready without its tasks");
    }

    #[test]
    fn refused_streaming_lists_are_told_apart_from_other_errors() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            }))
        };
        assert!(refuses_streaming(&watcher::Error::WatchStartFailed(
            status(422)
        )));
        assert!(refuses_streaming(&watcher::Error::WatchStartFailed(
            status(400)
        )));
        assert!(!refuses_streaming(&watcher::Error::WatchStartFailed(
            status(403)
        )));
        assert!(!refuses_streaming(&watcher::Error::WatchFailed(status(
            500
        ))));
        assert!(!refuses_streaming(&watcher::Error::NoResourceVersion));
    }
}
