//! The Kubernetes views of the catalogs, independent of any wire: which catalog holds a resource
//! the aggregated API serves, what its objects are (the engine record and the object's labels),
//! and the page of a Kubernetes list (a SpaceONE query, then label and field selectors, then
//! `limit`/`continue`).

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::Value;
use spaceone_query::{Job, JobTask, Limits, Scope};

use super::catalog::{Catalog, Cataloged, SharedCatalog, SharedTasks};
use super::error::ServiceError;
use super::field_selector::{FieldSelector, Selectable};
use super::label_selector::{Labels, Selector};
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

/// A custom resource whose records the aggregated API serves, with the names of its resources
/// there (the ones a SubjectAccessReview names).
pub trait Served: Cataloged<Record: Item> {
    /// The read-only resource (`jobs`).
    const RESOURCE: &'static str;
    /// The create-only statistics resource (`jobstats`).
    const STATS: &'static str;
    /// Its catalog, of the service's two.
    fn shared<'a>(jobs: &'a SharedCatalog, tasks: &'a SharedTasks) -> &'a SharedCatalog<Self>;
}

/// What the Kubernetes surface needs of an engine record.
pub trait Item: spaceone_query::Resource + Selectable + Keyed + Clone + Send + 'static {}

impl<R: spaceone_query::Resource + Selectable + Keyed + Clone + Send + 'static> Item for R {}

/// Where a record lives: its namespace and its object name.
pub trait Keyed {
    fn key(&self) -> (&str, &str);
}

impl Keyed for Job {
    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.job_id)
    }
}

impl Keyed for JobTask {
    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.job_task_id)
    }
}

impl Served for CostAnalysisJob {
    const RESOURCE: &'static str = "jobs";
    const STATS: &'static str = "jobstats";

    fn shared<'a>(jobs: &'a SharedCatalog, _: &'a SharedTasks) -> &'a SharedCatalog<Self> {
        jobs
    }
}

impl Served for CostAnalysisJobTask {
    const RESOURCE: &'static str = "jobtasks";
    const STATS: &'static str = "jobtaskstats";

    fn shared<'a>(_: &'a SharedCatalog, tasks: &'a SharedTasks) -> &'a SharedCatalog<Self> {
        tasks
    }
}

/// What a Kubernetes list selects: a SpaceONE query, selectors, and a page by offset.
#[derive(Debug, Default, PartialEq)]
pub struct Selection {
    pub query: Option<Value>,
    pub labels: Selector,
    pub fields: FieldSelector,
    pub offset: usize,
    pub limit: Option<usize>,
}

/// A record as the Kubernetes surface shows it: the SpaceONE record and the object's labels.
pub struct Object<R> {
    pub record: R,
    pub labels: Option<BTreeMap<String, String>>,
}

/// A job as the Kubernetes surface shows it.
pub type JobObject = Object<Job>;

/// One page of a Kubernetes list, and how many matched in all.
pub struct Page<R> {
    pub items: Vec<Object<R>>,
    pub total: usize,
    /// Offset just past this page.
    pub end: usize,
}

/// The object `name` in `namespace`, or the NotFound of its resource.
pub fn object<W: Served>(
    catalog: &Catalog<W>,
    namespace: &str,
    name: String,
) -> Result<Object<W::Record>, ServiceError> {
    let Some(record) = catalog.index.get(namespace, &name) else {
        return Err(ServiceError::NotFound {
            resource: W::RESOURCE,
            name,
        });
    };
    let labels = catalog.labels(namespace, &name).map(Labels::to_map);
    Ok(Object { record, labels })
}

/// The page of a Kubernetes list: the SpaceONE query first, then the selectors, then the page.
pub fn select_page<W: Served>(
    catalog: &Catalog<W>,
    namespace: Option<String>,
    selection: &Selection,
    limits: &Limits,
) -> Result<Page<W::Record>, ServiceError> {
    let scope = Scope {
        namespace,
        domains: None,
    };
    let query = selection
        .query
        .clone()
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    let (records, _) =
        spaceone_query::calls::select(&catalog.index, &scope, &query, Utc::now(), limits)?;
    let labels_of = |r: &W::Record| {
        let (ns, name) = r.key();
        catalog.labels(ns, name)
    };
    let selected: Vec<W::Record> = records
        .into_iter()
        .filter(|r| selection.fields.matches(r) && selection.labels.matches(labels_of(r)))
        .collect();
    let total = selected.len();
    let end = selection
        .limit
        .map_or(total, |l| selection.offset.saturating_add(l).min(total));
    let items = selected
        .into_iter()
        .skip(selection.offset)
        .take(end.saturating_sub(selection.offset))
        .map(|record| {
            let labels = labels_of(&record).map(Labels::to_map);
            Object { record, labels }
        })
        .collect();
    Ok(Page { items, total, end })
}
