//! The documents that flow through a stat pipeline and where the first ones come from: stored
//! records read in place until a stage makes documents of its own; field paths resolved once per
//! stage; the raw failures a stage raises (wrapped once as ERROR_DB_QUERY).

use crate::error::Error;
use crate::filter::Filter;
use crate::limits::Budget;
use crate::plan::matching;
use crate::record::{Record, Scope};
use crate::schema::{FieldPath, Schema};
use crate::slots::Slots;
use crate::value::Bson;

/// A raw failure (MongoDB's or Python's own): wrapped once as ERROR_DB_QUERY.
pub(super) fn raw(message: impl Into<String>) -> Error {
    Error::unknown(message)
}

/// A limit's reason as a raw failure (wrapped once as ERROR_DB_QUERY).
pub(super) fn over(reason: String) -> Error {
    raw(reason)
}

pub(super) fn bson_type(v: &Bson) -> &'static str {
    match v {
        Bson::Missing => "missing",
        Bson::Null => "null",
        Bson::Bool(_) => "bool",
        Bson::Int(_) => "long",
        Bson::Float(_) => "double",
        Bson::Str(_) => "string",
        Bson::Date(_) => "date",
        Bson::Arr(_) => "array",
        Bson::Obj(_) => "object",
    }
}

/// A document in the pipeline: a stored record read in place, or a document a stage made.
#[derive(Clone)]
pub(super) enum Row<'a> {
    Record(&'a Record),
    Doc(Bson),
}

impl Row<'_> {
    pub(super) fn at(&self, p: &P) -> Bson {
        match self {
            Row::Record(r) => p.field.as_ref().map_or(Bson::Missing, |f| r.get(f)),
            Row::Doc(d) => d.path(&p.parts),
        }
    }

    pub(super) fn into_doc(self, schema: &'static Schema) -> Bson {
        match self {
            Row::Record(r) => r.document(schema),
            Row::Doc(d) => d,
        }
    }
}

pub(super) enum Rendered {
    /// A distinct value.
    Value(Bson),
    /// A pipeline row (group keys still under `_id`).
    Row(Bson),
}

pub(super) type Output = (Vec<Rendered>, Option<usize>);

/// Units of work a value stands for: about one per value it holds (what reading, copying,
/// hashing or comparing it costs).
pub(super) fn units(v: &Bson) -> usize {
    v.approx_bytes()
        .checked_div(std::mem::size_of::<Bson>())
        .unwrap_or(0)
        .max(1)
}

/// Counts a value read or copied for a row as work (see [`units`]).
pub(super) fn charge(budget: &Budget<'_>, v: &Bson) -> Result<(), Error> {
    budget.work(units(v)).map_err(over)
}

/// A field path resolved once per stage rather than once per row: splitting a long key path is
/// paid once, and each row then walks only as deep as its document goes.
pub(super) struct P {
    pub(super) parts: Vec<String>,
    /// The model field, for rows that are still stored records.
    pub(super) field: Option<FieldPath>,
}

impl P {
    pub(super) fn new(schema: &'static Schema, raw: &str) -> P {
        P {
            parts: raw.split('.').map(str::to_string).collect(),
            field: FieldPath::resolve(schema, raw).ok(),
        }
    }

    /// Resolves a path inside a running stage, its segments counted as work.
    pub(super) fn within(
        schema: &'static Schema,
        raw: &str,
        budget: &Budget<'_>,
    ) -> Result<P, Error> {
        let p = P::new(schema, raw);
        budget.work(p.parts.len()).map_err(over)?;
        Ok(p)
    }
}

/// Where the pipeline's first documents come from.
pub(super) enum Source<'a> {
    /// Records already selected (scope and filter applied), in the order the pipeline needs.
    Picked(Vec<&'a Record>),
    /// Not selected yet: a leading order-insensitive `group` applies scope and filter while it
    /// scans, so no list of matches is built at all.
    Scan {
        index: &'a Slots,
        scope: &'a Scope,
        filter: &'a Filter,
    },
    /// Records read one chunk at a time (the offline command's file), each chunk handed to the
    /// callback and dropped after it: only a leading order-insensitive `group` reads them.
    Chunks {
        each: &'a mut Each<'a>,
        scope: &'a Scope,
        /// Not bound yet: each chunk interns its own strings.
        filter: &'a Filter,
    },
}

/// Hands each chunk of records to the callback, in turn, within the request's budget.
pub(crate) type Each<'a> =
    dyn FnMut(&Budget<'_>, &mut dyn FnMut(&Slots) -> Result<(), Error>) -> Result<(), Error> + 'a;

impl<'a> Source<'a> {
    pub(super) fn into_recs(self, budget: &Budget<'_>) -> Result<Vec<&'a Record>, Error> {
        match self {
            Source::Picked(recs) => Ok(recs),
            Source::Scan {
                index,
                scope,
                filter,
            } => {
                let recs = matching(index, scope, filter, budget).collect();
                budget.check_time().map_err(over)?;
                Ok(recs)
            }
            Source::Chunks { .. } => Err(raw("records read in chunks reach only a leading group")),
        }
    }
}

impl Source<'_> {
    /// Hands every record of the source to `f`, in the source's order, within the budget.
    pub(super) fn each_record(
        self,
        budget: &Budget<'_>,
        f: &mut dyn FnMut(&Record) -> Result<(), Error>,
    ) -> Result<(), Error> {
        match self {
            Source::Picked(recs) => recs.into_iter().try_for_each(f),
            Source::Scan {
                index,
                scope,
                filter,
            } => {
                matching(index, scope, filter, budget).try_for_each(&mut *f)?;
                budget.check_time().map_err(over)
            }
            Source::Chunks {
                each,
                scope,
                filter,
            } => each(budget, &mut |slots: &Slots| {
                let bound = filter.bound(&|s| slots.interned(s));
                matching(slots, scope, &bound, budget).try_for_each(&mut *f)?;
                budget.check_time().map_err(over)
            }),
        }
    }

    /// How many records the source holds, counted where they are.
    pub(super) fn count(self, budget: &Budget<'_>) -> Result<usize, Error> {
        if let Source::Picked(recs) = &self {
            return Ok(recs.len());
        }
        let mut n = 0usize;
        self.each_record(budget, &mut |_| {
            n = n.saturating_add(1);
            Ok(())
        })?;
        Ok(n)
    }
}

pub(super) struct Pipeline<'a> {
    /// Stored records not yet turned into rows: a leading `group` reads them in place.
    pub(super) recs: Option<Source<'a>>,
    pub(super) rows: Vec<Row<'a>>,
    /// Whether rows are in natural order (order-insensitive pipelines skip that sort).
    pub(super) ordered: bool,
    pub(super) budget: &'a Budget<'a>,
    /// The resource the stored records are of.
    pub(super) schema: &'static Schema,
}

impl Pipeline<'_> {
    pub(super) fn materialize(&mut self) -> Result<(), Error> {
        if let Some(recs) = self.recs.take() {
            self.rows = recs
                .into_recs(self.budget)?
                .into_iter()
                .map(Row::Record)
                .collect();
        }
        Ok(())
    }
}
