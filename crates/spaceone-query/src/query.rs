//! The `Query` message (core v1, with the v2 list form of `sort` accepted too): parsing into typed
//! values, then filtering, ordering, paging and projecting stored records.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::filter::{Filter, parse_condition};
use crate::index::{Created, Index, NO_TIME, Rec, Scope};
use crate::limits::Budget;
use crate::model::{Field, FieldPath};
use crate::value::Val;

#[derive(Clone, Debug)]
pub(crate) struct SortKey {
    /// The model field, or why the key names none: an unknown key sorts as a tie everywhere, but
    /// fails when `only` is given (the sort keys are added to `only`).
    path: Result<FieldPath, String>,
    desc: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Page {
    pub start: u64,
    pub limit: u64,
}

/// A parsed core `Query` (filter, sort, page, projection flags), validated like the reference and
/// with `timediff` values already resolved against the clock given to [`crate::calls::parse_query`].
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub(crate) filter: Filter,
    pub(crate) sort: Vec<SortKey>,
    pub(crate) page: Page,
    pub(crate) minimal: bool,
    pub(crate) count_only: bool,
    /// Fields loaded for the answer (None: all).
    pub(crate) only: Option<Vec<Field>>,
}

impl Query {
    /// `minimal: true`: answers carry only the minimal JobInfo fields.
    pub fn minimal(&self) -> bool {
        self.minimal
    }

    /// `count_only: true`: no rows, only the total.
    pub fn count_only(&self) -> bool {
        self.count_only
    }
}

pub(crate) fn check_fields(
    m: &Map<String, Value>,
    prefix: &str,
    allowed: &[&str],
) -> Result<(), Error> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            return Err(Error::invalid_parameter(&key, "unknown field"));
        }
    }
    Ok(())
}

pub(crate) fn as_object<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object()
        .ok_or_else(|| Error::invalid_parameter_type(key, "dict"))
}

pub(crate) fn as_list<'a>(v: Option<&'a Value>, key: &str) -> Result<&'a [Value], Error> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Error::invalid_parameter_type(key, "list")),
    }
}

pub(crate) fn as_bool(v: Option<&Value>, key: &str) -> Result<bool, Error> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(Error::invalid_parameter_type(key, "bool")),
    }
}

pub(crate) fn parse_page(v: Option<&Value>, key: &str) -> Result<Page, Error> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Page::default());
    };
    let m = as_object(v, key)?;
    check_fields(m, key, &["start", "limit"])?;
    let uint = |name: &str| -> Result<u64, Error> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f <= u32::MAX as f64)
                        .map(|f| f as u64)
                })
                .filter(|n| *n <= u64::from(u32::MAX))
                .ok_or_else(|| {
                    Error::invalid_parameter(
                        &format!("{key}.{name}"),
                        "must be an unsigned 32-bit integer",
                    )
                }),
            Some(_) => Err(Error::invalid_parameter_type(
                &format!("{key}.{name}"),
                "int",
            )),
        }
    };
    Ok(Page {
        start: uint("start")?,
        limit: uint("limit")?,
    })
}

impl Page {
    /// 1-based; applies only when `limit > 0`; a start below 1 is 1.
    pub(crate) fn window(&self, len: usize) -> Option<(usize, usize)> {
        if self.limit == 0 {
            return None;
        }
        let start = usize::try_from(self.start.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(len);
        let end = start
            .saturating_add(usize::try_from(self.limit).unwrap_or(usize::MAX))
            .min(len);
        Some((start, end))
    }
}

pub(crate) fn parse_filters(
    q: &Map<String, Value>,
    prefix: &str,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<Filter, Error> {
    let mut filter = Filter::default();
    for c in as_list(q.get("filter"), &format!("{prefix}filter"))? {
        filter.and.push(parse_condition(c, now, budget)?);
    }
    for c in as_list(q.get("filter_or"), &format!("{prefix}filter_or"))? {
        filter.or.push(parse_condition(c, now, budget)?);
    }
    Ok(filter)
}

fn sort_entry(e: &Value) -> Result<SortKey, Error> {
    let m = as_object(e, "query.sort")?;
    check_fields(m, "query.sort", &["key", "desc"])?;
    let key = match m.get("key") {
        Some(Value::String(k)) => k,
        None | Some(Value::Null) => return Err(Error::unknown("'key'")),
        Some(_) => return Err(Error::invalid_parameter_type("query.sort.key", "str")),
    };
    Ok(SortKey {
        path: FieldPath::resolve(key),
        desc: as_bool(m.get("desc"), "query.sort.desc")?,
    })
}

/// v1 `{key, desc}` / `{keys: [...]}` (key wins), or the v2 list.
pub(crate) fn parse_sort(v: Option<&Value>) -> Result<Vec<SortKey>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries.iter().map(sort_entry).collect(),
        Some(Value::Object(m)) => {
            check_fields(m, "query.sort", &["key", "desc", "keys"])?;
            match m.get("key") {
                Some(Value::String(k)) if !k.is_empty() => Ok(vec![SortKey {
                    path: FieldPath::resolve(k),
                    desc: as_bool(m.get("desc"), "query.sort.desc")?,
                }]),
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    as_list(m.get("keys"), "query.sort.keys")?
                        .iter()
                        .map(sort_entry)
                        .collect()
                }
                Some(_) => Err(Error::invalid_parameter_type("query.sort.key", "str")),
            }
        }
        Some(_) => Err(Error::invalid_parameter_type("query.sort", "dict")),
    }
}

pub(crate) fn parse_query(
    v: &Value,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<Query, Error> {
    let q = as_object(v, "query")?;
    check_fields(
        q,
        "query",
        &[
            "filter",
            "filter_or",
            "sort",
            "page",
            "minimal",
            "count_only",
            "only",
            "keyword",
        ],
    )?;
    if q.get("keyword")
        .is_some_and(|k| !k.is_null() && !k.is_string())
    {
        return Err(Error::invalid_parameter_type("query.keyword", "str"));
    }
    let filter = parse_filters(q, "query.", now, budget)?;
    let sort = parse_sort(q.get("sort"))?;
    let page = parse_page(q.get("page"), "query.page")?;
    let minimal = as_bool(q.get("minimal"), "query.minimal")?;
    let count_only = as_bool(q.get("count_only"), "query.count_only")?;
    let only = match as_list(q.get("only"), "query.only")? {
        [] => None,
        keys => {
            let mut fields = Vec::new();
            for k in keys {
                let Some(k) = k.as_str() else {
                    return Err(Error::invalid_parameter_type("query.only", "str"));
                };
                let path = FieldPath::resolve(k).map_err(Error::db_query)?;
                if !fields.contains(&path.field) {
                    fields.push(path.field);
                }
            }
            // The ordering keys in use are loaded too.
            if sort.is_empty() {
                fields.push(Field::CreatedAt);
            }
            // The sort keys are added to `only`: one the model lacks fails as an `only` key does.
            for s in &sort {
                let p = s.path.as_ref().map_err(|e| Error::db_query(e.clone()))?;
                if !fields.contains(&p.field) {
                    fields.push(p.field);
                }
            }
            Some(fields)
        }
    };
    Ok(Query {
        filter,
        sort,
        page,
        minimal,
        count_only,
        only,
    })
}

/// `keyword` (stripped, split on spaces) OR-ed into `filter_or` as `job_id contain_in [...]`.
/// `append_keyword_filter`: the keyword's words, OR-ed as `contain_in` on `job_id`. A keyword that
/// is not a string cannot pass protobuf (`string keyword`): refused as stat refuses it.
pub(crate) fn append_keyword(query: &mut Map<String, Value>) -> Result<(), Error> {
    let Some(keyword) = query.remove("keyword") else {
        return Ok(());
    };
    if !keyword.is_null() && !keyword.is_string() {
        return Err(Error::invalid_parameter_type("query.keyword", "str"));
    }
    let words: Vec<Value> = keyword
        .as_str()
        .unwrap_or_default()
        .trim()
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| Value::String(w.to_string()))
        .collect();
    let or = query
        .entry("filter_or")
        .or_insert_with(|| Value::Array(Vec::new()));
    if words.is_empty() {
        return Ok(());
    }
    if let Value::Array(or) = or {
        or.push(serde_json::json!({"k": "job_id", "v": words, "o": "contain_in"}));
    }
    Ok(())
}

fn sort_value(r: &Rec, key: &SortKey) -> Val {
    match &key.path {
        Ok(p) => r.get(p),
        Err(_) => Val::Missing,
    }
}

fn compare(a: &Rec, b: &Rec, keys: &[SortKey]) -> Ordering {
    if keys.is_empty() {
        return b.created.cmp(&a.created).then_with(|| a.natural_cmp(b));
    }
    for k in keys {
        let o = sort_value(a, k).cmp_bson(&sort_value(b, k));
        let o = if k.desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.natural_cmp(b)
}

/// The sort as one integer field, when it is a single top-level time or count field (or the
/// default order, created_at descending): its key is `None` where BSON has null, which sorts first.
fn integer_key(keys: &[SortKey]) -> Option<(Field, bool)> {
    let [key] = keys else {
        return keys.is_empty().then_some((Field::CreatedAt, true));
    };
    let path = key.path.as_ref().ok()?;
    let integer = matches!(
        path.field,
        Field::CreatedAt
            | Field::UpdatedAt
            | Field::FinishedAt
            | Field::LastChangedAt
            | Field::TotalTasks
            | Field::RemainedTasks
    );
    (path.sub.is_empty() && integer).then_some((path.field, key.desc))
}

type Keyed = (Option<i64>, u32);

/// Query order on extracted keys: the key (reversed when descending), then the natural order.
fn keyed_cmp(index: &Index, desc: bool) -> impl Fn(&Keyed, &Keyed) -> Ordering + '_ {
    move |a, b| {
        let o = a.0.cmp(&b.0);
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| match (index.slot(a.1), index.slot(b.1)) {
            (Some(x), Some(y)) => x.natural_cmp(y),
            _ => a.1.cmp(&b.1),
        })
    }
}

/// The first `end` (`None`: all) admitted slots' records, in query order.
fn order<'a>(
    index: &'a Index,
    slots: &[u32],
    keys: &[SortKey],
    end: Option<usize>,
) -> Vec<&'a Rec> {
    if let Some((field, desc)) = integer_key(keys) {
        // Extract each key once; records are touched only to break ties.
        let mut keyed: Vec<Keyed> = slots.iter().map(|&s| (index.key_of(s, field), s)).collect();
        let by_key = |a: &Keyed, b: &Keyed| {
            let o = a.0.cmp(&b.0);
            if desc { o.reverse() } else { o }
        };
        let cmp = keyed_cmp(index, desc);
        // `end` in 1..len: the index of the last row kept.
        let nth = end
            .filter(|e| *e < keyed.len())
            .and_then(|e| e.checked_sub(1));
        if let Some(nth) = nth {
            // Many rows can share a key (creation times have one-second resolution): select
            // by key alone, then order only the rows tied with the last one kept.
            keyed.select_nth_unstable_by(nth, by_key);
        }
        if let (Some(end), Some(&last)) = (end, nth.and_then(|n| keyed.get(n))) {
            let (mut kept, mut tied): (Vec<_>, Vec<_>) = (Vec::with_capacity(end), Vec::new());
            for k in keyed {
                match by_key(&k, &last) {
                    Ordering::Less => kept.push(k),
                    Ordering::Equal => tied.push(k),
                    Ordering::Greater => {}
                }
            }
            let room = end.saturating_sub(kept.len());
            partial_sort(&mut tied, Some(room), &cmp);
            kept.extend(tied.into_iter().take(room));
            keyed = kept;
        }
        partial_sort(&mut keyed, end, &cmp);
        return keyed
            .into_iter()
            .filter_map(|(_, s)| index.slot(s))
            .collect();
    }
    let mut rows: Vec<&Rec> = slots.iter().filter_map(|&s| index.slot(s)).collect();
    partial_sort(&mut rows, end, |a, b| compare(a, b, keys));
    rows
}

/// The first `end` (`None`: all) of a creation-ordered set in query order: walks from the
/// requested end, keeps going while the key ties with the last row taken, then orders those.
fn first_by_created<'a>(
    index: &'a Index,
    set: &Created,
    desc: bool,
    end: Option<usize>,
) -> Vec<&'a Rec> {
    let end = end.unwrap_or(set.len());
    let key = |ms: i64| (ms != NO_TIME).then_some(ms);
    let walk: Box<dyn Iterator<Item = &(i64, u32)>> = if desc {
        Box::new(set.iter().rev())
    } else {
        Box::new(set.iter())
    };
    let mut taken: Vec<Keyed> = Vec::with_capacity(end.min(set.len()));
    for &(ms, slot) in walk {
        if taken.len() >= end && taken.last().is_none_or(|l| l.0 != key(ms)) {
            break;
        }
        taken.push((key(ms), slot));
    }
    partial_sort(&mut taken, Some(end), keyed_cmp(index, desc));
    taken
        .into_iter()
        .filter_map(|(_, s)| index.slot(s))
        .collect()
}

fn partial_sort<T>(rows: &mut Vec<T>, end: Option<usize>, cmp: impl Fn(&T, &T) -> Ordering) {
    if let Some(end) = end {
        // Only the first `end` rows in order are needed: partition, then sort that prefix.
        if end == 0 {
            rows.clear();
            return;
        }
        if let Some(nth) = end.checked_sub(1).filter(|_| end < rows.len()) {
            rows.select_nth_unstable_by(nth, &cmp);
            rows.truncate(end);
        }
    }
    rows.sort_unstable_by(cmp);
}

/// Records matching scope and filter, in query order, and the total before paging.
pub(crate) fn run<'a>(
    index: &'a Index,
    scope: &Scope,
    q: &Query,
    budget: &Budget<'_>,
) -> Result<(Vec<&'a Rec>, usize), Error> {
    let (rows, total) = run_unchecked(index, scope, q, budget);
    budget.check_time().map_err(Error::db_query)?;
    Ok((rows, total))
}

fn run_unchecked<'a>(
    index: &'a Index,
    scope: &Scope,
    q: &Query,
    budget: &Budget<'_>,
) -> (Vec<&'a Rec>, usize) {
    let filter = q.filter.bound(index);
    let plan = index.plan(scope, &filter);
    let created_order = integer_key(&q.sort).filter(|(f, _)| *f == Field::CreatedAt);
    if let (Some((_, desc)), Some(set)) = (created_order, plan.by_created()) {
        let total = set.len();
        if q.count_only {
            return (Vec::new(), total);
        }
        let window = q.page.window(total);
        let mut rows = first_by_created(index, set, desc, window.map(|(_, end)| end));
        if let Some((start, _)) = window {
            rows.drain(..start.min(rows.len()));
        }
        return (rows, total);
    }
    let slots: Vec<u32> = plan.into_slots(budget).collect();
    if budget.check_time().is_err() {
        return (Vec::new(), 0);
    }
    let total = slots.len();
    if q.count_only {
        return (Vec::new(), total);
    }
    match q.page.window(total) {
        Some((start, end)) => {
            let mut rows = order(index, &slots, &q.sort, Some(end));
            rows.truncate(end);
            rows.drain(..start.min(rows.len()));
            (rows, total)
        }
        None => (order(index, &slots, &q.sort, None), total),
    }
}
