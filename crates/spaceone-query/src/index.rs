//! The in-memory index of jobs the calls answer from: kept up to date one job at a time (the
//! operator from a watch, the offline command from a file), and asked with a parsed [`Query`].
//! Its storage is [`Slots`]; a query goes plan -> scan over it ([`crate::scan`]).

use crate::error::Error;
use crate::limits::{Budget, Limits};
use crate::model::Job;
use crate::query::Query;
use crate::record::{Record, Scope};
use crate::scan;
use crate::slots::Slots;

#[derive(Default, Debug)]
pub struct Index {
    slots: Slots,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// The records and their posting lists, for the engine's stages.
    #[inline]
    pub(crate) fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Inserts a job, or replaces the one with the same (namespace, job_id).
    pub fn upsert(&mut self, job: Job) {
        self.slots.upsert(job);
    }

    pub fn remove(&mut self, namespace: &str, job_id: &str) -> bool {
        self.slots.remove(namespace, job_id)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn get(&self, namespace: &str, job_id: &str) -> Option<Job> {
        self.slots.rec(namespace, job_id).map(Record::to_job)
    }

    /// The (namespace, job_id) keys of the page a parsed query selects, in its order, and the
    /// total before paging. Scope is applied before anything else; `limits.max_time` bounds
    /// the evaluation.
    pub fn query(
        &self,
        query: &Query,
        scope: &Scope,
        limits: &Limits,
    ) -> Result<(Vec<(String, String)>, usize), Error> {
        let (rows, total) = scan::run(&self.slots, scope, query, &Budget::new(limits))?;
        Ok((
            rows.into_iter()
                .map(|r| (r.ns.to_string(), r.job_id.to_string()))
                .collect(),
            total,
        ))
    }

    /// Heap bytes held, estimated from the layout (reported in docs/performance.md and metrics).
    pub fn approx_heap_bytes(&self) -> usize {
        self.slots.approx_heap_bytes()
    }
}
