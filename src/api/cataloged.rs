//! What the shim's catalogs need of each custom resource they hold ([`super::catalog`]): its
//! engine record, and (jobs only) what a cancel writes from.

use kube::ResourceExt;
use spaceone_query::JobStatus;

use crate::resources::{CostAnalysisJob, CostAnalysisJobStatus, CostAnalysisJobTask};
use chrono::{DateTime, Utc};

/// A custom resource the shim catalogs: its engine record, and (jobs only) what a cancel writes
/// from.
pub trait Cataloged:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Record: spaceone_query::Resource;
    /// What the logs call one ("job", "task").
    const NOUN: &'static str;
    fn record(&self) -> Self::Record;
    /// What a cancel of this object would write from, while one is possible.
    fn live(&self) -> Option<LiveStatus> {
        None
    }
    /// Whether the catalog keeps the namespaces holding each name (a cancel finds a job by its
    /// id alone; nothing needs it for tasks, and at ten tasks per job it would cost a map entry
    /// and a string per task).
    const BY_NAME: bool = false;
    /// Whether the shim writes objects of this kind itself (a job's cancel), so the catalog must
    /// keep each record's resourceVersion to never roll such a write back on a late watch event.
    const WRITTEN: bool = false;
}

impl Cataloged for CostAnalysisJob {
    type Record = spaceone_query::Job;
    const NOUN: &'static str = "job";
    const BY_NAME: bool = true;
    const WRITTEN: bool = true;

    fn record(&self) -> spaceone_query::Job {
        self.spaceone_job()
    }

    fn live(&self) -> Option<LiveStatus> {
        let in_progress = self
            .status
            .as_ref()
            .and_then(|s| s.status)
            .is_none_or(|s| s == JobStatus::InProgress);
        let rv = self.resource_version().filter(|_| in_progress)?;
        Some(LiveStatus {
            domain_id: self.spec.domain_id.clone(),
            resource_version: rv,
            generation: self.metadata.generation,
            created: self
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(crate::timestamp::from_k8s),
            status: self.status.clone(),
        })
    }
}

impl Cataloged for CostAnalysisJobTask {
    type Record = spaceone_query::JobTask;
    const NOUN: &'static str = "task";

    fn record(&self) -> spaceone_query::JobTask {
        self.spaceone_task()
    }
}

/// An in-progress job as last seen: enough to compute and conditionally apply its cancel without
/// reading it first (the resourceVersion precondition catches a stale copy).
#[derive(Clone, Debug)]
pub struct LiveStatus {
    pub domain_id: String,
    pub resource_version: String,
    pub generation: Option<i64>,
    pub created: Option<DateTime<Utc>>,
    pub status: Option<CostAnalysisJobStatus>,
}
