//! The `StatisticsQuery` message: `distinct`, and the `aggregate` pipeline (unwind, group, count,
//! sort, project, limit, skip) evaluated over stored records the way MongoDB evaluates the pipeline
//! SpaceONE would build, with the reference's validation and its error wrapping.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::error::{Error, py_repr_ordered};
use crate::filter::Filter;
use crate::index::{Index, Rec, Scope};
use crate::limits::{Budget, StageUse};
use crate::model::FieldPath;
use crate::query::{Page, as_bool, as_list, as_object, check_fields, parse_page};
use crate::value::Val;

const GROUP_OPERATORS: [&str; 10] = [
    "count",
    "sum",
    "average",
    "max",
    "min",
    "first",
    "last",
    "push",
    "add_to_set",
    "merge_objects",
];
const PROJECT_OPERATORS: [&str; 8] = [
    "size",
    "sum",
    "array_to_object",
    "object_to_array",
    "add",
    "subtract",
    "multiply",
    "divide",
];
const CONDITION_OPERATORS: [&str; 6] = ["eq", "not", "gt", "gte", "lt", "lte"];
const STAGES: &str = "aggregate.unwind or aggregate.group or aggregate.count or aggregate.sort or aggregate.project or aggregate.limit or aggregate.skip";

/// A raw failure (MongoDB's or Python's own): wrapped once as ERROR_DB_QUERY.
fn raw(message: impl Into<String>) -> Error {
    Error::unknown(message)
}

fn named(v: &Map<String, Value>, a: &str, b: &str) -> Option<String> {
    v.get(a)
        .or_else(|| v.get(b))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[derive(Clone)]
enum Row<'a> {
    Rec(&'a Rec),
    Doc(Val),
}

impl Row<'_> {
    fn get(&self, path: &str) -> Val {
        match self {
            Row::Rec(r) => match FieldPath::resolve(path) {
                Ok(p) => r.get(&p),
                Err(_) => Val::Missing,
            },
            Row::Doc(d) => {
                let parts: Vec<&str> = path.split('.').collect();
                d.path(&parts)
            }
        }
    }

    fn into_doc(self) -> Val {
        match self {
            Row::Rec(r) => r.document(),
            Row::Doc(d) => d,
        }
    }
}

/// A field path resolved once per stage rather than once per row.
struct P {
    parts: Vec<String>,
    /// The model field, for rows that are still stored records.
    field: Option<FieldPath>,
}

impl P {
    fn new(raw: &str) -> P {
        P {
            parts: raw.split('.').map(str::to_string).collect(),
            field: FieldPath::resolve(raw).ok(),
        }
    }
}

impl Row<'_> {
    fn at(&self, p: &P) -> Val {
        match self {
            Row::Rec(r) => p.field.as_ref().map_or(Val::Missing, |f| r.get(f)),
            Row::Doc(d) => {
                let parts: Vec<&str> = p.parts.iter().map(String::as_str).collect();
                d.path(&parts)
            }
        }
    }
}

/// For a single group key on a stored record's low-cardinality field: a number that identifies the
/// value without building it (the status's ordinal, or the address of the interned string).
fn fast_key(r: &Rec, field: crate::model::Field) -> Option<usize> {
    use crate::model::Field;
    match field {
        Field::Status => Some(r.status as usize),
        Field::DataSourceId => Some(Arc::as_ptr(&r.data_source) as *const u8 as usize),
        Field::DomainId => Some(Arc::as_ptr(&r.domain) as *const u8 as usize),
        _ => None,
    }
}

/// Hashable wrapper with MongoDB's equality (2 == 2.0, null == missing).
#[derive(Clone, Debug)]
struct Key(Vec<Val>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.cmp_bson(b).is_eq())
    }
}
impl Eq for Key {}
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        fn hv<H: Hasher>(v: &Val, h: &mut H) {
            match v {
                Val::Missing | Val::Null => 0u8.hash(h),
                Val::Int(_) | Val::Float(_) => {
                    1u8.hash(h);
                    let f = v.as_f64().unwrap_or(0.0);
                    (if f == 0.0 { 0.0f64 } else { f }).to_bits().hash(h);
                }
                Val::Str(s) => {
                    2u8.hash(h);
                    s.hash(h);
                }
                Val::Bool(b) => b.hash(h),
                Val::Date(d) => d.hash(h),
                Val::Arr(a) => a.iter().for_each(|x| hv(x, h)),
                Val::Obj(o) => o.iter().for_each(|(k, x)| {
                    k.hash(h);
                    hv(x, h)
                }),
            }
        }
        self.0.iter().for_each(|v| hv(v, h));
    }
}

/// Where the pipeline's first documents come from.
enum Source<'a> {
    /// Records already selected (scope and filter applied), in the order the pipeline needs.
    Picked(Vec<&'a Rec>),
    /// Not selected yet: a leading order-insensitive `group` applies scope and filter while it
    /// scans, so no list of matches is built at all.
    Scan {
        index: &'a Index,
        scope: &'a Scope,
        filter: &'a Filter,
    },
}

/// A limit's reason as a raw failure (wrapped once as ERROR_DB_QUERY).
fn over(reason: String) -> Error {
    raw(reason)
}

impl<'a> Source<'a> {
    fn into_recs(self, budget: &Budget<'_>) -> Result<Vec<&'a Rec>, Error> {
        match self {
            Source::Picked(recs) => Ok(recs),
            Source::Scan {
                index,
                scope,
                filter,
            } => {
                let recs = index.matching(scope, filter, budget).collect();
                budget.check_time().map_err(over)?;
                Ok(recs)
            }
        }
    }
}

struct Pipeline<'a> {
    /// Stored records not yet turned into rows: a leading `group` reads them in place.
    recs: Option<Source<'a>>,
    rows: Vec<Row<'a>>,
    /// Whether rows are in natural order (order-insensitive pipelines skip that sort).
    ordered: bool,
    /// Names of the current group keys: later stages address them as `_id.<name>`.
    group_keys: Vec<String>,
    budget: &'a Budget<'a>,
}

impl Pipeline<'_> {
    fn materialize(&mut self) -> Result<(), Error> {
        if let Some(recs) = self.recs.take() {
            self.rows = recs
                .into_recs(self.budget)?
                .into_iter()
                .map(Row::Rec)
                .collect();
        }
        Ok(())
    }

    fn key_path(&self, key: &str) -> String {
        if self.group_keys.iter().any(|k| k == key) {
            format!("_id.{key}")
        } else {
            key.to_string()
        }
    }
}

/// Runs a StatisticsQuery (its filter already compiled) and renders the Struct answer.
pub(crate) fn stat(
    index: &Index,
    scope: &Scope,
    filter: &Filter,
    q: &Map<String, Value>,
    budget: &Budget<'_>,
) -> Result<Value, Error> {
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
    // Documents flow in natural (insertion) order, as a collection scan returns them; a pipeline
    // that starts with an order-insensitive group does not need that order.
    let ordered = aggregate.is_empty() || !starts_with_unordered_group(aggregate);
    let filter = &filter.bound(index);
    let source = if ordered {
        let mut recs: Vec<&Rec> = index.matching(scope, filter, budget).collect();
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
    let (rows, total) = if aggregate.is_empty() {
        source.into_recs(budget).and_then(|recs| {
            distinct_values(
                &recs,
                distinct.as_deref().unwrap_or_default(),
                &page,
                budget,
            )
        })
    } else {
        aggregate_rows(source, ordered, aggregate, &page, budget)
    }
    .map_err(Error::rewrap_db_query)?;
    // Building the Struct answer happens after the query, outside its error wrapping.
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

/// A first stage `group` whose results do not depend on input order.
fn starts_with_unordered_group(stages: &[Value]) -> bool {
    let Some(group) = stages.first().and_then(|s| s.get("group")) else {
        return false;
    };
    let fields = group
        .get("fields")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    fields.iter().all(|f| {
        let op = f
            .get("operator")
            .or_else(|| f.get("o"))
            .and_then(Value::as_str)
            .unwrap_or("");
        matches!(op, "count" | "sum" | "average" | "max" | "min")
    })
}

enum Rendered {
    /// A distinct value.
    Value(Val),
    /// A pipeline row (group keys still under `_id`).
    Row(Val),
}

type Output = (Vec<Rendered>, Option<usize>);

fn distinct_values(
    recs: &[&Rec],
    key: &str,
    page: &Page,
    budget: &Budget<'_>,
) -> Result<Output, Error> {
    let Ok(path) = FieldPath::resolve(key) else {
        return Ok((Vec::new(), None));
    };
    let mut values: Vec<Val> = Vec::new();
    let mut stage = StageUse::new(budget, "distinct");
    let mut push = |v: Val| -> Result<(), Error> {
        // Each new value is compared with every value kept: that is the work counted.
        if !budget.tick(values.len()) {
            return budget.check_time().map_err(over);
        }
        if !matches!(v, Val::Missing)
            && !values
                .iter()
                .any(|x| x.eq_query(&v) && !(x.is_nullish() ^ v.is_nullish()))
        {
            stage.reserve(1, v.approx_bytes()).map_err(over)?;
            values.push(v);
        }
        Ok(())
    };
    for r in recs {
        match r.get(&path) {
            Val::Arr(items) => {
                for v in items {
                    push(v)?;
                }
            }
            v => push(v)?,
        }
    }
    // Python's sort() fails on mixed types and leaves the list as returned.
    let bracket = |v: &Val| match v {
        Val::Int(_) | Val::Float(_) | Val::Bool(_) => 1,
        Val::Str(_) => 2,
        Val::Date(_) => 3,
        _ => 0,
    };
    if values
        .iter()
        .all(|v| bracket(v) != 0 && values.first().is_some_and(|f| bracket(v) == bracket(f)))
    {
        values.sort_by(|a, b| match (a, b) {
            (Val::Bool(x), y) | (y, Val::Bool(x)) if !matches!(y, Val::Bool(_)) => {
                let xf = f64::from(u8::from(*x));
                let o = xf
                    .partial_cmp(&y.as_f64().unwrap_or(0.0))
                    .unwrap_or(std::cmp::Ordering::Equal);
                if matches!(a, Val::Bool(_)) {
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

fn aggregate_rows<'a>(
    recs: Source<'a>,
    ordered: bool,
    stages: &[Value],
    page: &Page,
    budget: &'a Budget<'a>,
) -> Result<Output, Error> {
    let mut p = Pipeline {
        recs: Some(recs),
        rows: Vec::new(),
        ordered,
        group_keys: Vec::new(),
        budget,
    };
    for stage in stages {
        let Some((name, body)) = stage
            .as_object()
            .and_then(|m| m.iter().find(|(_, v)| !v.is_null()))
        else {
            return Err(Error::required_parameter(STAGES));
        };
        if name != "group" {
            p.materialize()?;
        }
        match name.as_str() {
            "unwind" => unwind(&mut p, body)?,
            "group" => group(&mut p, body)?,
            "count" => count(&mut p, body)?,
            "sort" => sort(&mut p, body)?,
            "project" => project(&mut p, body)?,
            "limit" => {
                let n = int_arg(body, "aggregate.limit")?;
                if n <= 0 {
                    return Err(raw("the limit must be positive"));
                }
                p.rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
            }
            "skip" => {
                let n = int_arg(body, "aggregate.skip")?;
                if n < 0 {
                    return Err(raw(
                        "invalid argument to skip stage: value must be non-negative",
                    ));
                }
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(p.rows.len());
                p.rows.drain(..n);
            }
            _ => return Err(Error::required_parameter(STAGES)),
        }
    }
    p.materialize()?;
    let total = p.rows.len();
    let (rows, total) = match page.window(total) {
        Some((s, e)) => (p.rows.drain(s..e).collect::<Vec<_>>(), Some(total)),
        None => (p.rows, None),
    };
    Ok((
        rows.into_iter()
            .map(|r| Rendered::Row(r.into_doc()))
            .collect(),
        total,
    ))
}

fn int_arg(v: &Value, key: &str) -> Result<i64, Error> {
    v.as_f64()
        .filter(|f| f.fract() == 0.0)
        .map(|f| f as i64)
        .ok_or_else(|| Error::invalid_parameter_type(key, "int"))
}

/// Group keys lifted to the top level; a null `_id` (a group without keys) dropped.
fn render_row(doc: Val) -> Result<Value, Error> {
    let Val::Obj(fields) = doc else {
        return Err(Error::unknown("Unexpected type"));
    };
    let mut m = Map::new();
    let unexpected = |_| Error::locator("StatisticsInfo", "Unexpected type");
    for (k, v) in fields {
        if k.as_ref() == "_id" {
            match v {
                Val::Obj(keys) => {
                    for (kk, vv) in keys {
                        m.insert(kk.to_string(), vv.to_struct_json(true).map_err(unexpected)?);
                    }
                }
                Val::Null | Val::Missing => {}
                other => {
                    m.insert(
                        "_id".into(),
                        other.to_struct_json(true).map_err(unexpected)?,
                    );
                }
            }
            continue;
        }
        if matches!(v, Val::Missing) {
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

fn unwind(p: &mut Pipeline<'_>, body: &Value) -> Result<(), Error> {
    let m = as_object(body, "aggregate.unwind")?;
    check_fields(m, "aggregate.unwind", &["path", "filter"])?;
    let Some(path) = m
        .get("path")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(Error::required_parameter("aggregate.unwind.path"));
    };
    let path = p.key_path(path);
    let parts: Vec<String> = path.split('.').map(str::to_string).collect();
    let mut out = Vec::new();
    let mut stage = StageUse::new(p.budget, "unwind");
    for row in std::mem::take(&mut p.rows) {
        let value = row.get(&path);
        match value {
            Val::Arr(items) => {
                let doc = row.into_doc();
                // Checked before a single copy is made: every output row is a copy of the doc.
                stage
                    .reserve(items.len(), doc.approx_bytes())
                    .map_err(over)?;
                for item in items {
                    out.push(Row::Doc(set_path(doc.clone(), &parts, item)));
                }
            }
            Val::Missing | Val::Null => {}
            _ => {
                let doc = row.into_doc();
                stage.reserve(1, doc.approx_bytes()).map_err(over)?;
                out.push(Row::Doc(doc));
            }
        }
    }
    p.rows = out;
    Ok(())
}

fn set_path(doc: Val, parts: &[String], value: Val) -> Val {
    let Some((first, rest)) = parts.split_first() else {
        return value;
    };
    match doc {
        Val::Obj(mut fields) => {
            if let Some(slot) = fields
                .iter_mut()
                .find(|(k, _)| k.as_ref() == first.as_str())
            {
                let inner = std::mem::replace(&mut slot.1, Val::Null);
                slot.1 = set_path(inner, rest, value);
            } else {
                fields.push((
                    Arc::from(first.as_str()),
                    set_path(Val::Obj(Vec::new()), rest, value),
                ));
            }
            Val::Obj(fields)
        }
        other => other,
    }
}

enum Acc {
    Count(f64),
    Sum(f64),
    Avg(f64, u64),
    Max(Option<Val>),
    Min(Option<Val>),
    First(Option<Val>),
    Last(Val),
    Push(Vec<Val>),
    Set(Vec<Val>),
    Merge(Vec<(Arc<str>, Val)>),
}

struct GroupField {
    name: String,
    op: &'static str,
    key: Option<P>,
    push_fields: Vec<(String, P)>,
    conditions: Vec<(P, &'static str, Val)>,
}

/// One `aggregate.group.fields` entry, checked in the seed's order: operator, name, the push
/// sub-fields, the conditions, then what the operator itself requires.
fn group_field(p: &Pipeline<'_>, f: &Value, field_order: &[&str]) -> Result<GroupField, Error> {
    let fm = as_object(f, "aggregate.group.fields")?;
    check_fields(fm, "aggregate.group.fields", field_order)?;
    let repr = || py_repr_ordered(f, field_order);
    let op_name = named(fm, "operator", "o").unwrap_or_default();
    let Some(op) = GROUP_OPERATORS.iter().copied().find(|o| *o == op_name) else {
        return Err(Error::db_query(format!(
            "'aggregate.group.fields' condition's {op_name} operator is not supported. (supported_operator = [{}])",
            GROUP_OPERATORS
                .iter()
                .map(|o| format!("'{o}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let name = named(fm, "name", "n").ok_or_else(|| {
        Error::db_query(format!(
            "'aggregate.group.fields' condition requires a name: {}",
            repr()
        ))
    })?;
    let key = named(fm, "key", "k").map(|k| P::new(&p.key_path(&k)));
    let mut push_fields = Vec::new();
    for pf in as_list(fm.get("fields"), "aggregate.group.fields.fields")? {
        let pm = as_object(pf, "aggregate.group.fields.fields")?;
        check_fields(
            pm,
            "aggregate.group.fields.fields",
            &["key", "k", "name", "n"],
        )?;
        // The seed's message shows the whole group field, not the sub-field.
        let k = named(pm, "key", "k").ok_or_else(|| {
            Error::db_query(format!(
                "'aggregate.group.fields.fields' condition requires a key: {}",
                repr()
            ))
        })?;
        let n = named(pm, "name", "n").ok_or_else(|| {
            Error::db_query(format!(
                "'aggregate.group.fields.fields' condition requires a name: {}",
                repr()
            ))
        })?;
        push_fields.push((n, P::new(&p.key_path(&k))));
    }
    let mut conditions = Vec::new();
    for c in as_list(fm.get("conditions"), "aggregate.group.fields.conditions")? {
        let cm = as_object(c, "aggregate.group.fields.conditions")?;
        let order = ["key", "k", "value", "v", "operator", "o"];
        check_fields(cm, "aggregate.group.fields.conditions", &order)?;
        let crepr = || py_repr_ordered(c, &order);
        let Some(ck) = named(cm, "key", "k") else {
            return Err(Error::db_query(format!(
                "'aggregate.group.fields.conditions.key' condition requires a key: {}",
                crepr()
            )));
        };
        // `if value is None`: a null value counts as missing.
        let Some(cv) = cm
            .get("value")
            .or_else(|| cm.get("v"))
            .filter(|v| !v.is_null())
        else {
            return Err(Error::db_query(format!(
                "'aggregate.group.fields.conditions.value' condition requires a value: {}",
                crepr()
            )));
        };
        let Some(co) = named(cm, "operator", "o") else {
            return Err(Error::db_query(format!(
                "'aggregate.group.fields.conditions.operator' condition requires a operator: {}",
                crepr()
            )));
        };
        let Some(co) = CONDITION_OPERATORS.iter().copied().find(|o| *o == co) else {
            return Err(Error::db_query(
                "'aggregate.group.fields.conditions.operator' condition's operator is not supported: supported operator = eq | not | gt | gte | lt | lte",
            ));
        };
        conditions.push((P::new(&p.key_path(&ck)), co, Val::from_proto_json(cv)));
    }
    let requires_key = || {
        Error::db_query(format!(
            "'aggregate.group.fields' condition requires a key: {}",
            repr()
        ))
    };
    let not_supported = || {
        Error::db_query(format!(
            "'aggregate.group.fields' condition's conditions not supported: {}",
            repr()
        ))
    };
    match op {
        "count" => {}
        "sum" | "average" => {
            if key.is_none() {
                return Err(requires_key());
            }
        }
        // `push` takes `fields` in the seed's version: a `key` alone is refused (spec, Corrections).
        "push" => {
            if push_fields.is_empty() {
                return Err(Error::db_query(format!(
                    "'aggregate.group.fields' condition requires fields: {}",
                    repr()
                )));
            }
            if !conditions.is_empty() {
                return Err(not_supported());
            }
        }
        _ => {
            if key.is_none() {
                return Err(requires_key());
            }
            if !conditions.is_empty() {
                return Err(not_supported());
            }
        }
    }
    // MongoDB refuses `{$not: [a, b]}` when it runs the pipeline.
    if conditions.iter().any(|(_, co, _)| *co == "not") {
        return Err(raw(
            "Expression $not takes exactly 1 arguments. 2 were passed in.",
        ));
    }
    Ok(GroupField {
        name,
        op,
        key,
        push_fields,
        conditions,
    })
}

/// The groups built so far, and how a row finds its own.
struct Groups<'s> {
    rules: &'s [(String, P, Option<String>)],
    specs: &'s [GroupField],
    /// A single plain key on a stored field identified by [`fast_key`].
    fast_field: Option<crate::model::Field>,
    /// (fast key, slot) pairs: few distinct values in practice, and a short list beats hashing.
    fast: Vec<(usize, usize)>,
    index: HashMap<Key, usize>,
    groups: Vec<(Vec<Val>, Vec<Acc>)>,
    stage: StageUse<'s, 's>,
}

impl Groups<'_> {
    #[inline]
    fn slot(&mut self, row: &Row<'_>) -> Result<usize, Error> {
        let quick = match (row, self.fast_field) {
            (Row::Rec(r), Some(f)) => fast_key(r, f),
            _ => None,
        };
        if let Some(q) = quick
            && let Some((_, slot)) = self.fast.iter().find(|(k, _)| *k == q)
        {
            return Ok(*slot);
        }
        let slot = self.slow_slot(row)?;
        if let Some(q) = quick.filter(|_| self.fast.len() < 64) {
            self.fast.push((q, slot));
        }
        Ok(slot)
    }

    fn slow_slot(&mut self, row: &Row<'_>) -> Result<usize, Error> {
        let mut key = Vec::with_capacity(self.rules.len());
        for (_, path, fmt) in self.rules {
            let v = row.at(path);
            key.push(match fmt {
                None => v,
                Some(fmt) => match v {
                    Val::Date(ms) => Val::str(&crate::time::date_to_string(ms, fmt).map_err(raw)?),
                    Val::Null | Val::Missing => Val::Null,
                    other => {
                        return Err(raw(format!(
                            "can't convert from BSON type {} to Date",
                            bson_type(&other)
                        )));
                    }
                },
            });
        }
        let key = Key(key);
        if let Some(i) = self.index.get(&key) {
            return Ok(*i);
        }
        // A new group: its key twice (the list and the map) and its accumulators.
        let key_bytes = key
            .0
            .iter()
            .fold(0, |n: usize, v| n.saturating_add(v.approx_bytes()));
        self.stage
            .reserve(
                1,
                key_bytes
                    .saturating_mul(2)
                    .saturating_add(self.specs.len().saturating_mul(std::mem::size_of::<Acc>())),
            )
            .map_err(over)?;
        let slot = self.groups.len();
        self.groups
            .push((key.0.clone(), self.specs.iter().map(new_acc).collect()));
        self.index.insert(key, slot);
        Ok(slot)
    }
}

fn group(p: &mut Pipeline<'_>, body: &Value) -> Result<(), Error> {
    let m = as_object(body, "aggregate.group")?;
    check_fields(m, "aggregate.group", &["keys", "fields"])?;
    let keys = as_list(m.get("keys"), "aggregate.group.keys")?;
    let fields = as_list(m.get("fields"), "aggregate.group.fields")?;
    if keys.is_empty() && fields.is_empty() {
        return Err(Error::required_parameter(
            "aggregate.group.keys || aggregate.group.fields",
        ));
    }
    let key_order = ["key", "k", "name", "n", "date_format"];
    let mut rules: Vec<(String, P, Option<String>)> = Vec::new();
    for k in keys {
        let km = as_object(k, "aggregate.group.keys")?;
        check_fields(km, "aggregate.group.keys", &key_order)?;
        let repr = || py_repr_ordered(k, &key_order);
        // The seed checks the key before the name.
        let key = named(km, "key", "k").ok_or_else(|| {
            Error::db_query(format!(
                "'aggregate.group.keys' condition requires a key: {}",
                repr()
            ))
        })?;
        let name = named(km, "name", "n").ok_or_else(|| {
            Error::db_query(format!(
                "'aggregate.group.keys' condition requires a name: {}",
                repr()
            ))
        })?;
        let fmt = km
            .get("date_format")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        rules.push((name, P::new(&p.key_path(&key)), fmt));
    }
    let field_order = [
        "key",
        "k",
        "name",
        "n",
        "operator",
        "o",
        "fields",
        "conditions",
    ];
    let mut specs = Vec::new();
    for f in fields {
        specs.push(group_field(p, f, &field_order)?);
    }

    let fast_field = match rules.as_slice() {
        [(_, path, None)] => path
            .field
            .as_ref()
            .filter(|f| f.sub.is_empty())
            .map(|f| f.field),
        _ => None,
    };
    let mut g = Groups {
        rules: &rules,
        specs: &specs,
        fast_field,
        fast: Vec::new(),
        index: HashMap::new(),
        groups: Vec::new(),
        stage: StageUse::new(p.budget, "group"),
    };
    let budget = p.budget;
    // Plain counts need no per-row dispatch: the hot loop just bumps them.
    let plain_counts = specs
        .iter()
        .all(|s| s.op == "count" && s.conditions.is_empty());
    let add = |g: &mut Groups<'_>, row: &Row<'_>| -> Result<(), Error> {
        if !budget.tick(1) {
            return budget.check_time().map_err(over);
        }
        let slot = g.slot(row)?;
        let Some((_, accs)) = g.groups.get_mut(slot) else {
            return Err(raw("group lost"));
        };
        if plain_counts {
            for acc in accs.iter_mut() {
                if let Acc::Count(n) = acc {
                    *n += 1.0;
                }
            }
            return Ok(());
        }
        for (spec, acc) in g.specs.iter().zip(accs.iter_mut()) {
            accumulate(spec, acc, row, &mut g.stage)?;
        }
        Ok(())
    };
    match p.recs.take() {
        Some(Source::Picked(recs)) => {
            for r in recs {
                add(&mut g, &Row::Rec(r))?;
            }
        }
        Some(Source::Scan {
            index,
            scope,
            filter,
        }) => {
            for r in index.matching(scope, filter, budget) {
                add(&mut g, &Row::Rec(r))?;
            }
            budget.check_time().map_err(over)?;
        }
        None => {
            for row in &p.rows {
                add(&mut g, row)?;
            }
        }
    }
    let mut groups = g.groups;
    if !p.ordered {
        // The input came in no meaningful order: give the groups a deterministic one.
        groups.sort_by(|(a, _), (b, _)| Val::Arr(a.clone()).cmp_bson(&Val::Arr(b.clone())));
    }
    p.rows = groups
        .into_iter()
        .map(|(key, accs)| {
            let id = if rules.is_empty() {
                Val::Null
            } else {
                Val::Obj(
                    rules
                        .iter()
                        .zip(key)
                        .map(|((n, _, _), v)| (Arc::from(n.as_str()), v))
                        .collect(),
                )
            };
            let mut fields = vec![(Arc::from("_id"), id)];
            for (spec, acc) in specs.iter().zip(accs) {
                fields.push((Arc::from(spec.name.as_str()), finish(acc)));
            }
            Row::Doc(Val::Obj(fields))
        })
        .collect();
    p.group_keys = rules.into_iter().map(|(n, _, _)| n).collect();
    Ok(())
}

fn bson_type(v: &Val) -> &'static str {
    match v {
        Val::Missing => "missing",
        Val::Null => "null",
        Val::Bool(_) => "bool",
        Val::Int(_) => "long",
        Val::Float(_) => "double",
        Val::Str(_) => "string",
        Val::Date(_) => "date",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

fn new_acc(spec: &GroupField) -> Acc {
    match spec.op {
        "count" => Acc::Count(0.0),
        "sum" => Acc::Sum(0.0),
        "average" => Acc::Avg(0.0, 0),
        "max" => Acc::Max(None),
        "min" => Acc::Min(None),
        "first" => Acc::First(None),
        "last" => Acc::Last(Val::Null),
        "push" => Acc::Push(Vec::new()),
        "add_to_set" => Acc::Set(Vec::new()),
        _ => Acc::Merge(Vec::new()),
    }
}

fn conditions_hold(spec: &GroupField, row: &Row<'_>) -> bool {
    spec.conditions.iter().all(|(key, op, q)| {
        let o = row.at(key).cmp_bson(q);
        match *op {
            "eq" => o.is_eq(),
            "gt" => o.is_gt(),
            "gte" => o.is_ge(),
            "lt" => o.is_lt(),
            _ => o.is_le(),
        }
    })
}

fn accumulate(
    spec: &GroupField,
    acc: &mut Acc,
    row: &Row<'_>,
    stage: &mut StageUse<'_, '_>,
) -> Result<(), Error> {
    let value = || spec.key.as_ref().map_or(Val::Missing, |k| row.at(k));
    let holds = spec.conditions.is_empty() || conditions_hold(spec, row);
    match acc {
        Acc::Count(n) => {
            if holds {
                *n += 1.0;
            }
        }
        Acc::Sum(s) => {
            if holds {
                *s += value().as_f64().unwrap_or(0.0);
            }
        }
        Acc::Avg(s, n) => {
            let v = if holds { value() } else { Val::Int(0) };
            if let Some(f) = v.as_f64() {
                *s += f;
                *n = n.saturating_add(1);
            }
        }
        Acc::Max(m) | Acc::Min(m) => {
            let v = value();
            if !v.is_nullish() {
                let is_max = matches!(spec.op, "max");
                let better = m.as_ref().is_none_or(|cur| {
                    let o = v.cmp_bson(cur);
                    if is_max { o.is_gt() } else { o.is_lt() }
                });
                if better {
                    *m = Some(v);
                }
            }
        }
        Acc::First(f) => {
            if f.is_none() {
                *f = Some(match value() {
                    Val::Missing => Val::Null,
                    v => v,
                });
            }
        }
        Acc::Last(l) => {
            *l = match value() {
                Val::Missing => Val::Null,
                v => v,
            }
        }
        Acc::Push(items) => {
            if spec.push_fields.is_empty() {
                let v = value();
                if !matches!(v, Val::Missing) {
                    stage.add_bytes(v.approx_bytes()).map_err(over)?;
                    items.push(v);
                }
            } else {
                let mut obj = Vec::new();
                for (name, key) in &spec.push_fields {
                    // The seed pushes datetimes as they are: the answer then fails to render.
                    let v = row.at(key);
                    if !matches!(v, Val::Missing) {
                        obj.push((Arc::from(name.as_str()), v));
                    }
                }
                let v = Val::Obj(obj);
                stage.add_bytes(v.approx_bytes()).map_err(over)?;
                items.push(v);
            }
        }
        Acc::Set(items) => {
            let v = value();
            // Each value is compared with every value kept: that is the work counted.
            if !stage.tick(items.len()) {
                return Err(over(stage.time_exceeded()));
            }
            if !matches!(v, Val::Missing) && !items.iter().any(|x| x.cmp_bson(&v).is_eq()) {
                stage.add_bytes(v.approx_bytes()).map_err(over)?;
                items.push(v);
            }
        }
        Acc::Merge(fields) => match value() {
            Val::Obj(o) => {
                if !stage.tick(fields.len().saturating_mul(o.len())) {
                    return Err(over(stage.time_exceeded()));
                }
                for (k, v) in o {
                    stage.add_bytes(v.approx_bytes()).map_err(over)?;
                    match fields.iter_mut().find(|(fk, _)| *fk == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                }
            }
            Val::Null | Val::Missing => {}
            other => {
                return Err(raw(format!(
                    "$mergeObjects requires object inputs, but input {} is of type {}",
                    other
                        .to_struct_json(false)
                        .map(|j| j.to_string())
                        .unwrap_or_default(),
                    bson_type(&other)
                )));
            }
        },
    }
    Ok(())
}

fn finish(acc: Acc) -> Val {
    match acc {
        Acc::Count(n) => Val::Float(n),
        Acc::Sum(s) => Val::Float(s),
        Acc::Avg(s, n) => {
            if n == 0 {
                Val::Null
            } else {
                Val::Float(s / n as f64)
            }
        }
        Acc::Max(m) | Acc::Min(m) => m.unwrap_or(Val::Null),
        Acc::First(f) => f.unwrap_or(Val::Null),
        Acc::Last(l) => l,
        Acc::Push(items) | Acc::Set(items) => Val::Arr(items),
        Acc::Merge(fields) => Val::Obj(fields),
    }
}

fn count(p: &mut Pipeline<'_>, body: &Value) -> Result<(), Error> {
    let m = as_object(body, "aggregate.count")?;
    check_fields(m, "aggregate.count", &["name"])?;
    let Some(name) = m
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(Error::required_parameter("aggregate.count.name"));
    };
    let n = p.rows.len();
    p.rows = if n == 0 {
        Vec::new()
    } else {
        vec![Row::Doc(Val::Obj(vec![(
            Arc::from(name),
            Val::Int(n as i64),
        )]))]
    };
    p.group_keys.clear();
    Ok(())
}

fn sort(p: &mut Pipeline<'_>, body: &Value) -> Result<(), Error> {
    let entries: Vec<&Value> = match body {
        Value::Array(a) => {
            if a.is_empty() {
                return Err(raw("$sort stage must have at least one sort key"));
            }
            a.iter().collect()
        }
        Value::Object(m) => {
            check_fields(m, "aggregate.sort", &["key", "desc", "keys"])?;
            if m.get("key")
                .and_then(Value::as_str)
                .is_some_and(|k| !k.is_empty())
            {
                vec![body]
            } else {
                let keys = as_list(m.get("keys"), "aggregate.sort.keys")?;
                if keys.is_empty() {
                    return Err(Error::required_parameter("aggregate.sort.key"));
                }
                keys.iter().collect()
            }
        }
        _ => return Err(Error::invalid_parameter_type("aggregate.sort", "dict")),
    };
    let mut keys = Vec::new();
    for e in entries {
        let em = as_object(e, "aggregate.sort")?;
        let Some(k) = em.get("key").and_then(Value::as_str) else {
            return Err(raw("'key'"));
        };
        keys.push((
            p.key_path(k),
            as_bool(em.get("desc"), "aggregate.sort.desc")?,
        ));
    }
    let mut stage = StageUse::new(p.budget, "sort");
    let mut decorated: Vec<(Vec<Val>, Row<'_>)> = Vec::with_capacity(p.rows.len());
    for r in std::mem::take(&mut p.rows) {
        let k: Vec<Val> = keys.iter().map(|(k, _)| r.get(k)).collect();
        let bytes = k
            .iter()
            .fold(0, |n: usize, v| n.saturating_add(v.approx_bytes()));
        stage.reserve(1, bytes).map_err(over)?;
        decorated.push((k, r));
    }
    // The sort itself is not interruptible; its input is bounded by max_stage_rows.
    decorated.sort_by(|(a, _), (b, _)| {
        for ((x, y), (_, desc)) in a.iter().zip(b).zip(&keys) {
            let o = x.cmp_bson(y);
            let o = if *desc { o.reverse() } else { o };
            if !o.is_eq() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    p.rows = decorated.into_iter().map(|(_, r)| r).collect();
    Ok(())
}

fn project(p: &mut Pipeline<'_>, body: &Value) -> Result<(), Error> {
    let m = as_object(body, "aggregate.project")?;
    check_fields(m, "aggregate.project", &["fields", "exclude_keys"])?;
    let fields = as_list(m.get("fields"), "aggregate.project.fields")?;
    if fields.is_empty() {
        return Err(Error::required_parameter("aggregate.project.fields"));
    }
    let exclude = as_bool(m.get("exclude_keys"), "aggregate.project.exclude_keys")?;
    let order = ["key", "k", "name", "n", "operator", "o"];
    let mut rules = Vec::new();
    for f in fields {
        let fm = as_object(f, "aggregate.project.fields")?;
        check_fields(fm, "aggregate.project.fields", &order)?;
        let repr = || py_repr_ordered(f, &order);
        // The seed's order: the operator, the name, then the key the operator needs.
        let op = named(fm, "operator", "o");
        if let Some(op) = &op {
            if matches!(op.as_str(), "add" | "subtract" | "multiply" | "divide") {
                return Err(Error::db_query(format!(
                    "'aggregate.project.fields' condition requires a fields: {}",
                    repr()
                )));
            }
            if !PROJECT_OPERATORS.contains(&op.as_str()) {
                return Err(Error::db_query(format!(
                    "'aggregate.project.fields' condition's {op} operator is not supported. (supported_operator = [{}])",
                    PROJECT_OPERATORS
                        .iter()
                        .map(|o| format!("'{o}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let name = named(fm, "name", "n").ok_or_else(|| {
            Error::db_query(format!(
                "'aggregate.project.fields' condition requires a name: {}",
                repr()
            ))
        })?;
        // Without an operator a missing key is `"$None"`: a field no row has.
        let key = match (named(fm, "key", "k"), &op) {
            (Some(k), _) => k,
            (None, None) => "None".to_string(),
            (None, Some(_)) => {
                return Err(Error::db_query(format!(
                    "'aggregate.project.fields' condition requires a key: {}",
                    repr()
                )));
            }
        };
        rules.push((name, p.key_path(&key), op));
    }
    let mut out = Vec::with_capacity(p.rows.len());
    let mut stage = StageUse::new(p.budget, "project");
    for row in std::mem::take(&mut p.rows) {
        let mut fields: Vec<(Arc<str>, Val)> = Vec::new();
        if !exclude {
            fields.push((Arc::from("_id"), row.get("_id")));
        }
        for (name, key, op) in &rules {
            let v = row.get(key);
            let v = match op.as_deref() {
                None => v,
                Some("size") => match v {
                    Val::Arr(a) => Val::Int(a.len() as i64),
                    other => {
                        return Err(raw(format!(
                            "The argument to $size must be an array. Type of argument: {}",
                            bson_type(&other)
                        )));
                    }
                },
                Some("sum") => match v {
                    Val::Arr(a) => Val::Float(a.iter().filter_map(Val::as_f64).sum()),
                    other => Val::Float(other.as_f64().unwrap_or(0.0)),
                },
                Some("array_to_object") => array_to_object(v)?,
                Some(_) => object_to_array(v)?,
            };
            fields.push((Arc::from(name.as_str()), v));
        }
        let doc = Val::Obj(fields);
        stage.reserve(1, doc.approx_bytes()).map_err(over)?;
        out.push(Row::Doc(doc));
    }
    p.rows = out;
    if exclude {
        p.group_keys.clear();
    }
    Ok(())
}

fn array_to_object(v: Val) -> Result<Val, Error> {
    match v {
        Val::Null | Val::Missing => Ok(Val::Null),
        Val::Arr(items) => {
            let mut out: Vec<(Arc<str>, Val)> = Vec::new();
            for item in items {
                let (k, v) = match item {
                    Val::Arr(mut pair) if pair.len() == 2 => {
                        let v = pair.pop().unwrap_or(Val::Null);
                        (pair.pop().unwrap_or(Val::Null), v)
                    }
                    Val::Obj(o) => (item_field(&o, "k"), item_field(&o, "v")),
                    _ => return Err(raw("$arrayToObject requires an array of key-value pairs")),
                };
                let Val::Str(k) = k else {
                    return Err(raw("$arrayToObject requires an object keys of type string"));
                };
                match out.iter_mut().find(|(ok, _)| *ok == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            Ok(Val::Obj(out))
        }
        other => Err(raw(format!(
            "$arrayToObject requires an array input, found: {}",
            bson_type(&other)
        ))),
    }
}

fn item_field(o: &[(Arc<str>, Val)], name: &str) -> Val {
    o.iter()
        .find(|(k, _)| k.as_ref() == name)
        .map_or(Val::Missing, |(_, v)| v.clone())
}

fn object_to_array(v: Val) -> Result<Val, Error> {
    match v {
        Val::Null | Val::Missing => Ok(Val::Null),
        Val::Obj(o) => Ok(Val::Arr(
            o.into_iter()
                .map(|(k, v)| Val::Obj(vec![(Arc::from("k"), Val::Str(k)), (Arc::from("v"), v)]))
                .collect(),
        )),
        other => Err(raw(format!(
            "$objectToArray requires a document input, found: {}",
            bson_type(&other)
        ))),
    }
}
