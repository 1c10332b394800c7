//! The `StatisticsQuery` message: `distinct`, and the `aggregate` pipeline (unwind, group, count,
//! sort, project, limit, skip) evaluated over stored records the way MongoDB evaluates the pipeline
//! SpaceONE would build, with the reference's validation and its error wrapping.
//!
//! The request is handled in steps: [`parse`] builds the whole `aggregate` list into typed stages
//! (every build error is raised before any stage runs), [`eval`] runs them ([`group`] holds the
//! accumulators) over the documents of [`rows`], and this module selects the documents, answers
//! `distinct` and renders the rows.

mod eval;
mod group;
mod needs;
mod parse;
mod rows;

use serde_json::{Map, Value, json};

use self::group::Dedup;
use self::parse::Stage;
pub(crate) use self::rows::Each;
use self::rows::{Output, Rendered, Source, over};
use crate::error::Error;
use crate::filter::Filter;
use crate::limits::{Budget, StageUse};
use crate::message::{Page, as_list, as_object, check_fields, parse_page};
use crate::plan::matching;
use crate::record::{Record, Scope};
use crate::schema::{FieldPath, Schema};
use crate::slots::Slots;
use crate::value::Bson;

/// A StatisticsQuery's parts, checked: its `aggregate` built into stages (every build error
/// raised before any stage runs), its `distinct` key and its page.
struct Prepared {
    stages: Vec<Stage>,
    distinct: Option<String>,
    page: Page,
}

fn prepare(schema: &'static Schema, q: &Map<String, Value>) -> Result<Prepared, Error> {
    let aggregate = as_list(q.get("aggregate"), "query.aggregate")?;
    let distinct = match q.get("distinct") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::invalid_parameter_type("query.distinct", "str")),
    };
    let page = parse_page(q.get("page"), "query.page")?;
    for stage in aggregate {
        let m = as_object(stage, "query.aggregate")?;
        check_fields(
            m,
            "query.aggregate",
            &[
                "unwind", "group", "count", "sort", "project", "limit", "skip",
            ],
        )?;
    }
    if aggregate.is_empty() && distinct.is_none() {
        return Err(Error::required_parameter("aggregate"));
    }
    // The whole pipeline is built before a single document is read (spec, Corrections).
    let stages = parse::pipeline(schema, aggregate).map_err(Error::rewrap_db_query)?;
    Ok(Prepared {
        stages,
        distinct,
        page,
    })
}

/// Runs a StatisticsQuery (its filter already compiled) and renders the Struct answer.
pub(crate) fn stat(
    index: &Slots,
    scope: &Scope,
    filter: &Filter,
    q: &Map<String, Value>,
    budget: &Budget<'_>,
) -> Result<Value, Error> {
    let schema = index.schema();
    let Prepared {
        stages,
        distinct,
        page,
    } = prepare(schema, q)?;
    // Documents flow in natural (insertion) order, as a collection scan returns them; a pipeline
    // that starts with a count or an order-insensitive group does not need that order.
    let ordered = !stages.first().is_some_and(Stage::reads_in_any_order);
    let filter = &filter.bound(&|s| index.interned(s));
    let source = if ordered {
        let mut recs: Vec<&Record> = matching(index, scope, filter, budget).collect();
        budget.check_time().map_err(Error::db_query)?;
        recs.sort_unstable_by(|a, b| a.natural_cmp(b));
        Source::Picked(recs)
    } else {
        Source::Scan {
            index,
            scope,
            filter,
        }
    };
    let prepared = Prepared {
        stages,
        distinct,
        page,
    };
    answer(schema, source, ordered, &prepared, budget)
}

/// Which of the records a filter admits a pipeline can still read: one that starts with an
/// `unwind` makes no row of a record whose path holds nothing, null or an empty array, so the
/// offline command need not keep it for the natural order.
pub(crate) struct Reads(rows::P);

impl Reads {
    /// `None` when every admitted record may be read (or the query is refused).
    pub(crate) fn of(schema: &'static Schema, q: &Map<String, Value>) -> Option<Reads> {
        match prepare(schema, q).ok()?.stages.first()? {
            Stage::Unwind { path, .. } => Some(Reads(rows::P::new(schema, path))),
            _ => None,
        }
    }

    pub(crate) fn record(&self, r: &Record) -> bool {
        match rows::Row::Record(r).at(&self.0) {
            Bson::Missing | Bson::Null => false,
            Bson::Arr(items) => !items.is_empty(),
            _ => true,
        }
    }
}

/// [`stat`] over records already selected (scope and filter applied), in any order: the offline
/// command's records, kept without an index.
pub(crate) fn stat_records(
    schema: &'static Schema,
    mut recs: Vec<&Record>,
    q: &Map<String, Value>,
    budget: &Budget<'_>,
) -> Result<Value, Error> {
    let prepared = prepare(schema, q)?;
    // As `stat` orders them: a pipeline that starts in any order gets its groups sorted.
    let ordered = !prepared
        .stages
        .first()
        .is_some_and(Stage::reads_in_any_order);
    recs.sort_unstable_by(|a, b| a.natural_cmp(b));
    answer(schema, Source::Picked(recs), ordered, &prepared, budget)
}

/// Runs the prepared pipeline (or `distinct`) over the source and renders the answer.
fn answer<'a>(
    schema: &'static Schema,
    source: Source<'a>,
    ordered: bool,
    prepared: &Prepared,
    budget: &'a Budget<'a>,
) -> Result<Value, Error> {
    let Prepared {
        stages,
        distinct,
        page,
    } = prepared;
    let (rows, total) = if stages.is_empty() {
        source.into_recs(budget).and_then(|recs| {
            distinct_values(
                schema,
                &recs,
                distinct.as_deref().unwrap_or_default(),
                page,
                budget,
            )
        })
    } else {
        eval::run(source, ordered, stages, page, budget, schema)
    }
    .map_err(Error::rewrap_db_query)?;
    render(rows, total)
}

/// [`stat`] over records read one chunk at a time (`each`), for a pipeline that starts with a
/// count or an order-insensitive group (`None` for any other: it needs its records in natural
/// order).
pub(crate) fn stat_chunks(
    schema: &'static Schema,
    each: &mut Each<'_>,
    scope: &Scope,
    filter: &Filter,
    q: &Map<String, Value>,
    budget: &Budget<'_>,
) -> Option<Result<Value, Error>> {
    let Prepared { stages, page, .. } = match prepare(schema, q) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    if !stages.first().is_some_and(Stage::reads_in_any_order) {
        return None;
    }
    let source = Source::Chunks {
        each,
        scope,
        filter,
    };
    Some(
        eval::run(source, false, &stages, &page, budget, schema)
            .map_err(Error::rewrap_db_query)
            .and_then(|(rows, total)| render(rows, total)),
    )
}

/// The Struct answer. Building it happens after the query, outside its error wrapping.
fn render(rows: Vec<Rendered>, total: Option<usize>) -> Result<Value, Error> {
    let results: Vec<Value> = rows
        .into_iter()
        .map(|r| match r {
            Rendered::Value(v) => v
                .to_struct_json(true)
                .map_err(|_| Error::unknown("Unexpected type")),
            Rendered::Row(doc) => render_row(doc),
        })
        .collect::<Result<_, _>>()?;
    let mut m = Map::new();
    m.insert("results".into(), Value::Array(results));
    if let Some(t) = total {
        m.insert("total_count".into(), json!(t as f64));
    }
    Ok(Value::Object(m))
}

/// `distinct`: the values (array elements flattened, nulls included, missing skipped), each once,
/// sorted as Python's `sort()` sorts them, or in stored order when it cannot.
fn distinct_values(
    schema: &'static Schema,
    recs: &[&Record],
    key: &str,
    page: &Page,
    budget: &Budget<'_>,
) -> Result<Output, Error> {
    let Ok(path) = FieldPath::resolve(schema, key) else {
        return Ok((Vec::new(), None));
    };
    budget.work(path.sub.len()).map_err(over)?;
    let mut set = Dedup::default();
    let mut stage = StageUse::new(budget, "distinct");
    let mut push = |v: Bson| -> Result<(), Error> {
        if !budget.tick(1) {
            return budget.check_time().map_err(over);
        }
        if matches!(v, Bson::Missing) {
            return Ok(());
        }
        let bytes = v.approx_bytes();
        if set.insert(v, |x, v| {
            x.eq_query(v) && !(x.is_nullish() ^ v.is_nullish())
        }) {
            stage.reserve(1, bytes).map_err(over)?;
        }
        Ok(())
    };
    for r in recs {
        let v = r.get(&path);
        rows::charge(budget, &v)?;
        match v {
            Bson::Arr(items) => {
                for v in items {
                    push(v)?;
                }
            }
            other => push(other)?,
        }
    }
    let mut values = set.items;
    // Python's sort() fails on mixed types and leaves the list as returned.
    let bracket = |v: &Bson| match v {
        Bson::Int(_) | Bson::Float(_) | Bson::Bool(_) => 1,
        Bson::Str(_) => 2,
        Bson::Date(_) => 3,
        _ => 0,
    };
    if values
        .iter()
        .all(|v| bracket(v) != 0 && values.first().is_some_and(|f| bracket(v) == bracket(f)))
    {
        values.sort_by(|a, b| match (a, b) {
            (Bson::Bool(x), y) | (y, Bson::Bool(x)) if !matches!(y, Bson::Bool(_)) => {
                let xf = f64::from(u8::from(*x));
                let o = xf
                    .partial_cmp(&y.as_f64().unwrap_or(0.0))
                    .unwrap_or(std::cmp::Ordering::Equal);
                if matches!(a, Bson::Bool(_)) {
                    o
                } else {
                    o.reverse()
                }
            }
            _ => a.cmp_bson(b),
        });
    }
    let total = values.len();
    Ok(match page.window(total) {
        Some((s, e)) => (
            values.drain(s..e).map(Rendered::Value).collect(),
            Some(total),
        ),
        None => (values.into_iter().map(Rendered::Value).collect(), None),
    })
}

/// Group keys lifted to the top level; a null `_id` (a group without keys) dropped.
fn render_row(doc: Bson) -> Result<Value, Error> {
    let Bson::Obj(fields) = doc else {
        return Err(Error::unknown("Unexpected type"));
    };
    let mut m = Map::new();
    let unexpected = |_| Error::locator("StatisticsInfo", "Unexpected type");
    for (k, v) in fields {
        if k.as_ref() == "_id" {
            match v {
                Bson::Obj(keys) => {
                    for (kk, vv) in keys {
                        m.insert(kk.to_string(), vv.to_struct_json(true).map_err(unexpected)?);
                    }
                }
                Bson::Null | Bson::Missing => {}
                other => {
                    m.insert(
                        "_id".into(),
                        other.to_struct_json(true).map_err(unexpected)?,
                    );
                }
            }
            continue;
        }
        if matches!(v, Bson::Missing) {
            continue;
        }
        m.insert(
            k.to_string(),
            v.to_struct_json(true)
                .map_err(|_| Error::unknown("Unexpected type"))?,
        );
    }
    Ok(Value::Object(m))
}
