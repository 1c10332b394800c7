//! The in-memory index of one resource's records (jobs, job tasks) the calls answer from: kept up
//! to date one record at a time (the operator from a watch, the offline command from a file), and
//! asked with a parsed [`Query`]. Its storage is [`Slots`], laid out by the resource's table; a
//! query goes plan -> scan over it ([`crate::scan`]).

use std::marker::PhantomData;

use crate::error::Error;
use crate::limits::{Budget, Limits};
use crate::model::Job;
use crate::query::Query;
use crate::record::Scope;
use crate::scan;
use crate::schema::Resource;
use crate::slots::Slots;
use crate::task::JobTask;

/// An index of records of the resource `R` ([`Job`] unless said otherwise).
#[derive(Debug)]
pub struct Index<R: Resource = Job> {
    slots: Slots,
    resource: PhantomData<fn() -> R>,
}

/// An index of job tasks.
pub type TaskIndex = Index<JobTask>;

impl Index<Job> {
    /// An empty index of jobs.
    pub fn new() -> Self {
        Self::empty()
    }
}

impl<R: Resource> Default for Index<R> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<R: Resource> Index<R> {
    /// An empty index.
    pub fn empty() -> Self {
        Index {
            slots: Slots::new(R::schema()),
            resource: PhantomData,
        }
    }

    /// The records and their posting lists, for the engine's stages.
    #[inline]
    pub(crate) fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Inserts a record, or replaces the one with the same (namespace, id).
    pub fn upsert(&mut self, record: R) {
        self.slots.upsert(record.into_columns());
    }

    pub fn remove(&mut self, namespace: &str, id: &str) -> bool {
        self.slots.remove(namespace, id)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, namespace: &str, id: &str) -> Option<R> {
        self.slots
            .rec(namespace, id)
            .map(|r| R::from_columns(r.to_columns()))
    }

    /// The (namespace, id) keys of the page a parsed query selects, in its order, and the total
    /// before paging. Scope is applied before anything else; `limits.max_time` bounds the
    /// evaluation.
    pub fn query(
        &self,
        query: &Query,
        scope: &Scope,
        limits: &Limits,
    ) -> Result<(Vec<(String, String)>, usize), Error> {
        let (rows, total) = scan::run(&self.slots, scope, query, &Budget::new(limits))?;
        Ok((
            rows.into_iter()
                .map(|r| (r.ns.to_string(), r.id.to_string()))
                .collect(),
            total,
        ))
    }

    /// Heap bytes held, estimated from the layout (reported in docs/performance.md and metrics).
    pub fn approx_heap_bytes(&self) -> usize {
        self.slots.approx_heap_bytes()
    }
}
