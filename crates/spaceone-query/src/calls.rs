//! The Job and JobTask API calls of the seed (spaceone-cost-analysis 1.8.7): the request messages
//! as REST JSON bodies, validated as protobuf would, passed through the service's decorators
//! (`check_required`, `append_query_filter`, `append_keyword_filter`) and answered in proto3 JSON.
//! Every call is generic over the resource: its table names the list parameters, the keyword's
//! field, the id `get` looks up and the Info fields.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::filter::Filter;
use crate::index::Index;
use crate::limits::{Budget, Limits};
use crate::message::{as_object, check_fields};
use crate::model::Job;
use crate::query::{Query, append_keyword, parse_filters};
use crate::record::Scope;
use crate::render::Projection;
pub use crate::render::{InfoFields, InfoRow, InfoValue, JobsInfo, info_time};
use crate::scan::run;
use crate::schema::{FieldPath, Resource, Schema};

/// The name of the resource's id field (`job_id`, `job_task_id`).
pub(crate) fn id_name(schema: &'static Schema) -> &'static str {
    schema.id().map_or("", |f| f.name())
}

/// The name of the resource's domain field (`domain_id`).
fn domain_name(schema: &'static Schema) -> &'static str {
    schema.domain().map_or("domain_id", |f| f.name())
}

/// Request fields after protobuf's MessageToDict: default values (empty strings, SCOPE_NONE) are
/// absent, other types are refused as invalid parameters.
fn params(
    schema: &'static Schema,
    request: &Value,
    allowed: &[&str],
) -> Result<Map<String, Value>, Error> {
    let statuses = schema.statuses();
    let req = match request {
        Value::Null => return Ok(Map::new()),
        v => as_object(v, "request")?,
    };
    check_fields(req, "", allowed)?;
    let mut out = Map::new();
    for (k, v) in req {
        match (k.as_str(), v) {
            (_, Value::Null) => {}
            ("query", Value::Object(_)) => {
                out.insert(k.clone(), v.clone());
            }
            ("query", _) => return Err(Error::invalid_parameter_type("query", "dict")),
            ("only", Value::Array(items)) => {
                if items.iter().any(|i| !i.is_string()) {
                    return Err(Error::invalid_parameter_type("only", "str"));
                }
                if !items.is_empty() {
                    out.insert(k.clone(), v.clone());
                }
            }
            ("only", _) => return Err(Error::invalid_parameter_type("only", "list")),
            ("status", Value::String(s)) => {
                if s == "SCOPE_NONE" || s.is_empty() {
                    continue;
                }
                if !statuses.is_some_and(|e| e.api.contains(&s.as_str())) {
                    return Err(Error::invalid_parameter(
                        "status",
                        &format!("unknown enum value {s}"),
                    ));
                }
                out.insert(k.clone(), v.clone());
            }
            (_, Value::String(s)) => {
                if !s.is_empty() {
                    out.insert(k.clone(), v.clone());
                }
            }
            (key, _) => return Err(Error::invalid_parameter_type(key, "str")),
        }
    }
    Ok(out)
}

fn check_required(p: &Map<String, Value>, keys: &[&str]) -> Result<(), Error> {
    for k in keys {
        if !p.contains_key(*k) {
            return Err(Error::required_parameter(k));
        }
    }
    Ok(())
}

/// `append_query_filter`: each present key becomes an `eq` condition after the caller's filters.
fn append_query_filter(p: &mut Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    let mut query = match p.remove("query") {
        Some(Value::Object(q)) => q,
        _ => Map::new(),
    };
    let filter = query
        .entry("filter")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(f) = filter {
        for k in keys {
            if let Some(v) = p.get(*k) {
                let op = if v.is_array() { "in" } else { "eq" };
                f.push(json!({"k": k, "v": v, "o": op}));
            }
        }
    }
    query
}

/// How an answer comes out: a JSON value, its encoding straight from the records, or (for a
/// list) any form built from the fields of each JobInfo.
pub trait AnswerForm: Sized {
    fn from_serialize(s: &impl serde::Serialize) -> Self;

    /// A list's answer: by default its JSON form through [`AnswerForm::from_serialize`]; a form
    /// that is not JSON (protobuf) reads [`JobsInfo::infos`] instead, without JSON in between.
    fn from_jobs(jobs: &JobsInfo<'_>) -> Self {
        Self::from_serialize(jobs)
    }

    /// One Info's answer (`get`, `cancel`): by default its JSON form; a form that is not JSON
    /// reads [`InfoRow::values`] instead.
    fn from_info(row: &InfoRow<'_>) -> Self {
        Self::from_serialize(row)
    }
}

impl AnswerForm for Value {
    fn from_serialize(s: &impl serde::Serialize) -> Self {
        serde_json::to_value(s).unwrap_or(Value::Null)
    }
}

/// The answer encoded as JSON text, written without building a `Value` first (what a server sends).
pub struct Encoded(pub Vec<u8>);

impl AnswerForm for Encoded {
    fn from_serialize(s: &impl serde::Serialize) -> Self {
        Encoded(serde_json::to_vec(s).unwrap_or_default())
    }
}

/// `list` (`Job.list`: JobQuery -> JobsInfo; `JobTask.list`: JobTaskQuery -> JobTasksInfo),
/// within `limits`.
pub fn list<R: Resource>(
    index: &Index<R>,
    scope: &Scope,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, Error> {
    list_as(index, scope, request, now, limits)
}

/// [`list`], answered as a [`Value`] or as [`Encoded`] JSON text.
pub fn list_as<A: AnswerForm>(
    index: &Index<impl Resource>,
    scope: &Scope,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<A, Error> {
    let budget = Budget::new(limits);
    let schema = index.slots().schema();
    let q = list_query(schema, request, now, &budget)?;
    let (rows, total) = run(index.slots(), scope, &q, &budget)?;
    let projection = match (&q.minimal, &q.only) {
        (true, _) => Projection::Minimal,
        (false, Some(fields)) => Projection::Only(fields),
        (false, None) => Projection::Full,
    };
    Ok(A::from_jobs(&JobsInfo {
        rows: &rows,
        total,
        schema,
        projection: &projection,
    }))
}

/// The query a list request asks, validated as [`list`] validates it.
pub(crate) fn list_query(
    schema: &'static Schema,
    request: &Value,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<Query, Error> {
    let filters: Vec<&str> = schema.params().collect();
    let allowed: Vec<&str> = std::iter::once("query").chain(schema.params()).collect();
    let mut p = params(schema, request, &allowed)?;
    check_required(&p, &[domain_name(schema)])?;
    let mut query = append_query_filter(&mut p, &filters);
    append_keyword(&mut query, id_name(schema))?;
    crate::query::parse_query(schema, &Value::Object(query), now, budget)
}

/// `stat` (`Job.stat`: JobStatQuery -> Struct; `JobTask.stat`: JobTaskStatQuery -> Struct),
/// within `limits`.
pub fn stat<R: Resource>(
    index: &Index<R>,
    scope: &Scope,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, Error> {
    let query = stat_request(R::schema(), request)?;
    stat_query(index, scope, &query, now, limits)
}

/// The StatisticsQuery a stat request asks (its domain appended as a filter).
fn stat_request(schema: &'static Schema, request: &Value) -> Result<Value, Error> {
    let domain = domain_name(schema);
    let mut p = params(schema, request, &["query", domain])?;
    if !p.contains_key("query") && request.get("query").is_some_and(Value::is_object) {
        p.insert("query".into(), json!({}));
    }
    check_required(&p, &["query", domain])?;
    Ok(Value::Object(append_query_filter(&mut p, &[domain])))
}

/// The filter of a stat request, validated as far as [`stat`] validates it before it reads a
/// record, and which admitted records its pipeline can read at all.
pub(crate) fn stat_filter(
    schema: &'static Schema,
    request: &Value,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<(Filter, Option<crate::stat::Reads>), Error> {
    let query = stat_request(schema, request)?;
    let (filter, q) = stat_parts(schema, &query, now, budget)?;
    Ok((filter, crate::stat::Reads::of(schema, &q)))
}

/// [`stat`] over records read one chunk at a time by `each`, for a pipeline that starts with an
/// order-insensitive group (`None`, before `each` is called, for any other).
pub(crate) fn stat_chunks(
    schema: &'static Schema,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
    each: &mut crate::stat::Each<'_>,
) -> Option<Result<Value, Error>> {
    let budget = Budget::new(limits);
    match stat_request(schema, request).and_then(|query| stat_parts(schema, &query, now, &budget)) {
        Err(e) => Some(Err(e)),
        Ok((filter, q)) => {
            crate::stat::stat_chunks(schema, each, &Scope::all(), &filter, &q, &budget)
        }
    }
}

/// [`stat`] over records its filter already admitted (the offline command keeps them without
/// an index).
pub(crate) fn stat_records(
    schema: &'static Schema,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
    recs: Vec<&crate::record::Record>,
) -> Result<Value, Error> {
    let budget = Budget::new(limits);
    let query = stat_request(schema, request)?;
    let (_, q) = stat_parts(schema, &query, now, &budget)?;
    crate::stat::stat_records(schema, recs, &q, &budget)
}

/// A StatisticsQuery's filter (its keyword included) and its fields, checked.
fn stat_parts(
    schema: &'static Schema,
    query: &Value,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<(Filter, Map<String, Value>), Error> {
    let mut q = as_object(query, "query")?.clone();
    check_fields(
        &q,
        "query",
        &[
            "filter",
            "filter_or",
            "aggregate",
            "page",
            "distinct",
            "keyword",
        ],
    )?;
    // A keyword that is not a string is refused here.
    append_keyword(&mut q, id_name(schema))?;
    let filter = parse_filters(schema, &q, "query.", now, budget)?;
    Ok((filter, q))
}

/// A StatisticsQuery on its own (the Kubernetes `JobStat` resource): keyword, filter, aggregate.
pub fn stat_query<R: Resource>(
    index: &Index<R>,
    scope: &Scope,
    query: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, Error> {
    let budget = Budget::new(limits);
    let (filter, q) = stat_parts(R::schema(), query, now, &budget)?;
    crate::stat::stat(index.slots(), scope, &filter, &q, &budget)
}

/// `get` (`Job.get`: GetJobRequest -> JobInfo; `JobTask.get`: GetJobTaskRequest -> JobTaskInfo).
pub fn get<R: Resource>(index: &Index<R>, scope: &Scope, request: &Value) -> Result<Value, Error> {
    get_as(index, scope, request)
}

/// [`get`], answered in the form `A` (a [`Value`], [`Encoded`] JSON text, protobuf).
pub fn get_as<A: AnswerForm, R: Resource>(
    index: &Index<R>,
    scope: &Scope,
    request: &Value,
) -> Result<A, Error> {
    let schema = R::schema();
    let (id_key, domain_key) = (id_name(schema), domain_name(schema));
    let p = params(schema, request, &[id_key, domain_key, "only"])?;
    check_required(&p, &[id_key, domain_key])?;
    let id = p.get(id_key).and_then(Value::as_str).unwrap_or_default();
    let domain = p
        .get(domain_key)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let only = match p.get("only").and_then(Value::as_array) {
        None => None,
        Some(keys) => {
            let mut fields = Vec::new();
            for k in keys.iter().filter_map(Value::as_str) {
                let f = FieldPath::resolve(schema, k).map_err(Error::unknown)?.field;
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
            Some(fields)
        }
    };
    let found = index
        .slots()
        .named(id)
        .filter(|r| r.domain.as_ref() == domain && scope.admits(r))
        .min_by(|a, b| a.natural_cmp(b));
    let Some(rec) = found else {
        return Err(Error::not_found(&[id_key, domain_key], &[id, domain]));
    };
    let projection = match &only {
        Some(fields) => Projection::Only(fields),
        None => Projection::Full,
    };
    Ok(A::from_info(&crate::render::row(rec, schema, &projection)))
}

/// JobInfo of one job (used for the answer of a cancel).
pub fn job_info(job: &Job) -> Value {
    crate::render::info_of(job)
}

/// The Info of one plain record (JobInfo, JobTaskInfo).
pub fn info<R: Resource + Clone>(record: &R) -> Value {
    crate::render::info_of(record)
}

/// [`info`] in the form `A` (`None` for a record the index cannot hold).
pub fn info_as<A: AnswerForm, R: Resource + Clone>(record: &R) -> Option<A> {
    crate::render::with_info_row(record, A::from_info)
}

/// A datetime of an Info as SpaceONE prints it, written into `buf` (`None` past the years
/// `buf` holds: [`info_time`] then).
pub fn write_info_time(ms: i64, buf: &mut [u8; 24]) -> Option<&str> {
    crate::time::write_info(ms, buf)
}

/// Filter, order and page a core `Query` (no request wrapper, no required domain): the typed entry
/// point of the Kubernetes aggregated API. Returns the page and the total before paging.
pub fn select<R: Resource>(
    index: &Index<R>,
    scope: &Scope,
    query: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<(Vec<R>, usize), Error> {
    let budget = Budget::new(limits);
    let q = parse(R::schema(), query, now, &budget)?;
    let (rows, total) = run(index.slots(), scope, &q, &budget)?;
    Ok((
        rows.into_iter()
            .map(|r| R::from_columns(r.to_columns()))
            .collect(),
        total,
    ))
}

/// Parses a core `Query` once (its `keyword` OR-ed into `filter_or` on `job_id`), so it can be
/// evaluated many times with [`Index::query`]. `now` resolves `timediff_*` values; `limits`
/// bound its values and regular expressions.
pub fn parse_query(query: &Value, now: DateTime<Utc>, limits: &Limits) -> Result<Query, Error> {
    parse_query_of::<Job>(query, now, limits)
}

/// [`parse_query`] for the resource `R` (its keyword on its id), evaluated with an `Index<R>`.
pub fn parse_query_of<R: Resource>(
    query: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Query, Error> {
    parse(R::schema(), query, now, &Budget::new(limits))
}

fn parse(
    schema: &'static Schema,
    query: &Value,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<Query, Error> {
    let mut q = as_object(query, "query")?.clone();
    append_keyword(&mut q, id_name(schema))?;
    crate::query::parse_query(schema, &Value::Object(q), now, budget)
}
