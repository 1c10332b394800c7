//! The shim's in-memory view of every CostAnalysisJob, fed by a watch and read by the handlers.
//! It keeps compact records (see `spaceone_query::Index`), not whole objects: managed fields,
//! annotations and conditions are dropped on arrival.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use spaceone_query::{Index, Job, JobStatus};
use tracing::{info, warn};

use crate::resources::{CostAnalysisJob, JobState};

type Key = (String, String);

/// What the handlers need beyond the query index: labels (for label selectors on the Kubernetes
/// surface) and the resourceVersion each record came from (so a write the shim made itself is never
/// rolled back by an older watch event arriving after it).
#[derive(Default)]
pub struct Store {
    pub jobs: Index,
    labels: HashMap<Key, BTreeMap<String, String>>,
    versions: HashMap<Key, u64>,
    /// SpaceONE addresses a job by job_id alone; this finds the namespaces that hold one.
    namespaces: HashMap<String, Vec<String>>,
}

impl Store {
    /// Namespaces holding a job named `job_id`.
    pub fn namespaces_of(&self, job_id: &str) -> &[String] {
        self.namespaces
            .get(job_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn labels(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.labels.get(&(namespace.to_string(), name.to_string()))
    }

    /// Inserts or replaces a job unless the store already holds a newer version of it.
    pub fn upsert(&mut self, job: &CostAnalysisJob) {
        let (Some(ns), name) = (job.namespace(), job.name_any()) else {
            return;
        };
        let version = job
            .resource_version()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let key = (ns, name);
        if self.versions.get(&key).is_some_and(|v| *v > version) {
            return;
        }
        self.jobs.upsert(record(job));
        let labels = job.labels();
        if labels.is_empty() {
            self.labels.remove(&key);
        } else {
            self.labels.insert(key.clone(), labels.clone());
        }
        let spaces = self.namespaces.entry(key.1.clone()).or_default();
        if !spaces.contains(&key.0) {
            spaces.push(key.0.clone());
        }
        self.versions.insert(key, version);
    }

    pub fn remove(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        self.jobs.remove(namespace, name);
        self.labels.remove(&key);
        self.versions.remove(&key);
        if let Some(spaces) = self.namespaces.get_mut(name) {
            spaces.retain(|n| n != namespace);
            if spaces.is_empty() {
                self.namespaces.remove(name);
            }
        }
    }

    fn replace_all(&mut self, jobs: Vec<CostAnalysisJob>) {
        *self = Store::default();
        for job in &jobs {
            self.upsert(job);
        }
    }
}

/// The shared, watch-fed store and whether its initial list has completed.
#[derive(Clone, Default)]
pub struct JobIndex {
    pub store: Arc<RwLock<Store>>,
    pub synced: Arc<AtomicBool>,
}

impl JobIndex {
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Applies a write the shim made itself, so that the next answer already reflects it.
    pub fn observe_write(&self, job: &CostAnalysisJob) {
        if let Ok(mut s) = self.store.write() {
            s.upsert(job);
        }
    }

    /// Keeps the store current until the stream ends (never, in practice: the watcher re-lists
    /// after a watch expires and reports errors with backoff).
    pub async fn run(self, client: Client, namespace: Option<String>) {
        let api: Api<CostAnalysisJob> = match &namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        // Paged initial list (500 per page) then a watch; after "410 Gone" the watcher re-lists.
        let config = watcher::Config::default().page_size(500).any_semantic();
        let mut pending: Vec<CostAnalysisJob> = Vec::new();
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => pending.clear(),
                Ok(Event::InitApply(job)) => pending.push(job),
                Ok(Event::InitDone) => {
                    let n = pending.len();
                    if let Ok(mut s) = self.store.write() {
                        s.replace_all(std::mem::take(&mut pending));
                    }
                    self.synced.store(true, Ordering::Release);
                    info!(jobs = n, "job index synced");
                }
                Ok(Event::Apply(job)) => {
                    if let Ok(mut s) = self.store.write() {
                        s.upsert(&job);
                    }
                }
                Ok(Event::Delete(job)) => {
                    if let (Some(ns), Ok(mut s)) = (job.namespace(), self.store.write()) {
                        s.remove(&ns, &job.name_any());
                    }
                }
                Err(e) => warn!(error = %e, "job watch failed; retrying"),
            }
        }
    }
}

/// The SpaceONE view of a job object.
pub fn record(job: &CostAnalysisJob) -> Job {
    let status = job.status.clone().unwrap_or_default();
    let created = job
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(crate::timestamp::from_k8s);
    let declared = i64::try_from(job.spec.tasks.len()).unwrap_or(i64::MAX);
    Job {
        namespace: job.namespace().unwrap_or_default(),
        job_id: job.name_any(),
        status: match status.status.unwrap_or(JobState::InProgress) {
            JobState::InProgress => JobStatus::InProgress,
            JobState::Success => JobStatus::Success,
            JobState::Failure => JobStatus::Failure,
            JobState::Timeout => JobStatus::Timeout,
            JobState::Canceled => JobStatus::Canceled,
        },
        error_code: status.error_code,
        error_message: status.error_message,
        // Before the controller's first pass the counters come from the spec, as SpaceONE sets
        // them at creation.
        total_tasks: if job.status.is_none() {
            declared
        } else {
            i64::from(status.total_tasks)
        },
        remained_tasks: if job.status.is_none() {
            declared
        } else {
            i64::from(status.remained_tasks)
        },
        data_source_id: job.spec.data_source_id.clone(),
        domain_id: job.spec.domain_id.clone(),
        options: job.spec.options.clone().unwrap_or_default(),
        created_at: status.created_at.or(created),
        updated_at: status.updated_at.or(created),
        finished_at: status.finished_at,
        last_changed_at: status.last_changed_at,
    }
}
