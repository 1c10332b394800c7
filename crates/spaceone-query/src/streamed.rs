//! The offline command's evaluation over records that arrive one at a time: only what the answer
//! can depend on is kept, so memory follows the answer rather than the file. An index costs about
//! 470 bytes per record whatever its size (twelve times a 39-byte job); here records go through a
//! small index one chunk at a time and only the survivors are carried to the end:
//!
//! - `get`: the records with the asked id;
//! - `list`: each chunk's first `start + limit` rows in the query's order (the order is a total
//!   order on a record's content, ending in natural order, so the first rows of the whole file are
//!   among the chunks' first rows) and the count of every match; nothing but the count for
//!   `count_only`; every match when the request has no page limit (the answer prints them all);
//! - `stat`: the records its filter admits, without an index (a pipeline may read any of them, in
//!   natural order), but for a pipeline that starts with an unwind only those it makes rows of;
//!   or, when the pipeline starts with a count or an order-insensitive group, nothing but the
//!   groups ([`stat_in_chunks`]).
//!
//! The answer is then the call's own, over the survivors, with a list's `total_count` the sum of
//! the chunks'. A record's (namespace, id) is remembered as a 64-bit hash: when one repeats, an
//! index would have replaced the earlier record, which a chunk already folded cannot undo, so the
//! caller evaluates the file again over a whole index ([`Streamed::finish`] says so).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::Error;
use crate::filter::Filter;
use crate::index::Index;
use crate::limits::{Budget, Limits};
use crate::message::Page;
use crate::offline::{Verb, answer, printed};
use crate::plan::matching;
use crate::query::Query;
use crate::record::{Record, Scope};
use crate::scan;
use crate::schema::{Columns, Resource};
use crate::slots::Slots;
use crate::stat::Reads;

/// Records per chunk: small beside any file worth streaming, large enough that a chunk's scan
/// and sort dominate its bookkeeping.
pub const CHUNK: usize = 4_096;

/// The (namespace, id) pairs seen, as 64-bit hashes: a repeat (or, rarely, two pairs that
/// hash alike) sends the call back to a whole index.
#[derive(Default)]
struct Seen {
    hashes: HashSet<u64>,
    hasher: RandomState,
    repeated: bool,
}

impl Seen {
    /// Whether `c` is the first record of its (namespace, id).
    fn first(&mut self, c: &Columns) -> bool {
        if !self
            .hashes
            .insert(self.hasher.hash_one((&c.namespace, &c.id)))
        {
            self.repeated = true;
        }
        !self.repeated
    }
}

/// Reads every record of a file into the sink it is given, or says why it cannot.
pub type Read<'a, R> = dyn FnMut(&mut dyn FnMut(R)) -> Result<(), String> + 'a;

/// `stat` over the records `read` hands over, one chunk at a time, when its pipeline starts with
/// an order-insensitive group (counts, sums, averages, extremes): only the groups are held. The
/// time spent reading between chunks does not count against `max_time`. `Err` with `read`'s
/// error. Chunks hold `chunk_size` records ([`CHUNK`] in the command).
pub fn stat_in_chunks<R: Resource>(
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
    chunk_size: usize,
    read: &mut Read<'_, R>,
) -> Result<Chunked, String> {
    let schema = R::schema();
    let mut seen = Seen::default();
    let mut file_error = None;
    let mut each = |budget: &Budget<'_>,
                    f: &mut dyn FnMut(&Slots) -> Result<(), Error>|
     -> Result<(), Error> {
        let mut chunk = Slots::new(schema);
        let mut failed = None;
        let mut since = Instant::now();
        let read = read(&mut |record: R| {
            let c = record.into_columns();
            if failed.is_some() || !seen.first(&c) {
                return;
            }
            chunk.upsert(c);
            if chunk.len() >= chunk_size.max(1) {
                budget.postpone(since.elapsed());
                let full = std::mem::replace(&mut chunk, Slots::new(schema));
                if let Err(e) = f(&full) {
                    failed = Some(e);
                }
                since = Instant::now();
            }
        });
        if let Err(e) = read {
            file_error = Some(e);
        }
        match failed {
            Some(e) => Err(e),
            None if file_error.is_some() || seen.repeated => Err(Error::unknown("not answered")),
            None => {
                budget.postpone(since.elapsed());
                f(&chunk)
            }
        }
    };
    let answer = crate::calls::stat_chunks(schema, request, now, limits, &mut each);
    if let Some(e) = file_error {
        return Err(e);
    }
    if seen.repeated {
        return Ok(Chunked::Repeated);
    }
    Ok(answer.map_or(Chunked::NotChunked, |a| {
        let (out, code) = printed(a);
        Chunked::Answered(out, code)
    }))
}

/// What [`stat_in_chunks`] made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunked {
    /// The printed answer and the command's exit code.
    Answered(String, i32),
    /// The pipeline needs its records in natural order; nothing was read.
    NotChunked,
    /// A (namespace, id) repeats: only a whole index answers it (an index keeps the later
    /// record), so the file is not worth reading as chunks again.
    Repeated,
}

impl Chunked {
    /// The answer, if there is one.
    pub fn answer(self) -> Option<(String, i32)> {
        match self {
            Chunked::Answered(out, code) => Some((out, code)),
            Chunked::NotChunked | Chunked::Repeated => None,
        }
    }
}

/// What survives a chunk.
enum Keep {
    /// The request is refused whatever the records: nothing.
    Nothing,
    /// `get`: records with this id.
    Id(String),
    /// `list`: the query with its page widened to start at the first row.
    Page(Box<Query>),
    /// `stat`: what the filter admits, of that what the pipeline can read.
    Matching(Filter, Option<Reads>),
}

/// A call evaluated over records pushed one at a time ([`Streamed::push`]), then answered
/// ([`Streamed::finish`]).
pub struct Streamed<R: Resource> {
    verb: Verb,
    request: Value,
    now: DateTime<Utc>,
    limits: Limits,
    keep: Keep,
    /// The refusal, once known (the request's own, or a chunk's time budget).
    error: Option<Error>,
    chunk: Slots,
    carry: Index<R>,
    /// `stat`: the records its filter admits, each chunk's in a vector of its own (no index, and
    /// no vector copied as it grows).
    picked: Vec<Vec<Record>>,
    /// `list`: how many records matched in the chunks folded so far.
    total: usize,
    seen: Seen,
    chunk_size: usize,
}

impl<R: Resource> Streamed<R> {
    /// Ready for the records of one call. A request refused before any record is read (what
    /// the call answers over no records) keeps nothing.
    pub fn new(verb: Verb, request: Value, now: DateTime<Utc>, limits: &Limits) -> Self {
        Self::with_chunk(verb, request, now, limits, CHUNK)
    }

    /// [`Streamed::new`] with chunks of `chunk_size` records (tests use tiny ones).
    pub fn with_chunk(
        verb: Verb,
        request: Value,
        now: DateTime<Utc>,
        limits: &Limits,
        chunk_size: usize,
    ) -> Self {
        let schema = R::schema();
        let budget = Budget::new(limits);
        // A get over no records is answered "not found": its refusals come at the end.
        let refused = match verb {
            Verb::Get => Ok(Value::Null),
            _ => answer(verb, &Index::<R>::empty(), &request, now, limits),
        };
        let checked = refused.and_then(|_| {
            Ok(match verb {
                Verb::Get => Keep::Id(
                    request
                        .get(crate::calls::id_name(schema))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                ),
                Verb::List => {
                    let mut q = crate::calls::list_query(schema, &request, now, &budget)?;
                    // Rows past the page's end can never be on it.
                    let end = q.page.window(usize::MAX).map(|(_, end)| end);
                    q.page = match end.and_then(|e| u64::try_from(e).ok()) {
                        Some(limit) => Page { start: 1, limit },
                        None => Page::default(),
                    };
                    Keep::Page(Box::new(q))
                }
                Verb::Stat => {
                    let (filter, reads) =
                        crate::calls::stat_filter(schema, &request, now, &budget)?;
                    Keep::Matching(filter, reads)
                }
            })
        });
        let (keep, error) = match checked {
            Ok(keep) => (keep, None),
            Err(e) => (Keep::Nothing, Some(e)),
        };
        Streamed {
            verb,
            request,
            now,
            limits: limits.clone(),
            keep,
            error,
            chunk: Slots::new(schema),
            carry: Index::empty(),
            picked: Vec::new(),
            total: 0,
            seen: Seen::default(),
            chunk_size: chunk_size.max(1),
        }
    }

    /// One record of the file.
    pub fn push(&mut self, record: R) {
        let c: Columns = record.into_columns();
        if !self.seen.first(&c) {
            return;
        }
        match &self.keep {
            Keep::Nothing => {}
            Keep::Id(id) => {
                if c.id == *id {
                    self.carry.upsert(R::from_columns(c));
                }
            }
            Keep::Page(_) | Keep::Matching(..) => {
                self.chunk.upsert(c);
                if self.chunk.len() >= self.chunk_size {
                    self.fold();
                }
            }
        }
    }

    /// The chunk's survivors into the carry; a list's carry cut back to its page's end when it
    /// has grown past twice that.
    fn fold(&mut self) {
        let chunk = std::mem::replace(&mut self.chunk, Slots::new(R::schema()));
        let budget = Budget::new(&self.limits);
        let scope = Scope::all();
        match &self.keep {
            Keep::Page(q) => match scan::run(&chunk, &scope, q, &budget) {
                Ok((rows, total)) => {
                    self.total = self.total.saturating_add(total);
                    for r in rows {
                        self.carry.upsert(R::from_columns(r.to_columns()));
                    }
                    let end = usize::try_from(q.page.limit).unwrap_or(usize::MAX);
                    if q.page.limit > 0
                        && self.carry.len() > end.saturating_mul(2).max(self.chunk_size)
                    {
                        let mut kept = Index::empty();
                        match scan::run(self.carry.slots(), &scope, q, &Budget::new(&self.limits)) {
                            Ok((rows, _)) => {
                                for r in rows {
                                    kept.upsert(R::from_columns(r.to_columns()));
                                }
                                self.carry = kept;
                            }
                            Err(e) => self.refuse(e),
                        }
                    }
                }
                Err(e) => self.refuse(e),
            },
            Keep::Matching(filter, reads) => {
                let bound = filter.bound(&|s| chunk.interned(s));
                let kept: Vec<Record> = matching(&chunk, &scope, &bound, &budget)
                    .filter(|r| reads.as_ref().is_none_or(|reads| reads.record(r)))
                    .cloned()
                    .collect();
                if !kept.is_empty() {
                    self.picked.push(kept);
                }
                if let Err(e) = budget.check_time() {
                    self.refuse(Error::db_query(e));
                }
            }
            Keep::Nothing | Keep::Id(_) => {}
        }
    }

    fn refuse(&mut self, e: Error) {
        self.error.get_or_insert(e);
        self.keep = Keep::Nothing;
        self.carry = Index::empty();
        self.picked = Vec::new();
    }

    /// The response body and exit status, or `None` when a (namespace, id) repeated: the caller
    /// then evaluates the file over a whole index (where the later record replaces the earlier).
    pub fn finish(mut self) -> Option<(String, i32)> {
        if !self.chunk.is_empty() {
            self.fold();
        }
        if self.seen.repeated {
            return None;
        }
        if let Some(e) = self.error {
            return Some(printed(Err(e)));
        }
        let mut result = match self.keep {
            Keep::Matching(..) => crate::calls::stat_records(
                R::schema(),
                &self.request,
                self.now,
                &self.limits,
                self.picked.iter().flatten().collect(),
            ),
            _ => answer(
                self.verb,
                &self.carry,
                &self.request,
                self.now,
                &self.limits,
            ),
        };
        if let (Ok(v), Keep::Page(_)) = (&mut result, &self.keep)
            && let Some(total) = v.get_mut("total_count")
        {
            *total = json!(self.total);
        }
        Some(printed(result))
    }
}
