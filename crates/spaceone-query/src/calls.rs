//! The Job API calls of the seed (spaceone-cost-analysis 1.8.7): the request messages as REST JSON
//! bodies, validated as protobuf would, passed through the service's decorators
//! (`check_required`, `append_query_filter`, `append_keyword_filter`) and answered in proto3 JSON.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::Error;
use crate::index::Index;
use crate::limits::{Budget, Limits};
use crate::message::{as_object, check_fields};
use crate::model::{FieldPath, Job, JobStatus};
use crate::query::{Query, append_keyword, parse_filters};
use crate::record::{Record, Scope};
pub use crate::render::{InfoFields, JobsInfo, info_time};
use crate::render::{Projection, job_info as render_info};
use crate::scan::run;

/// Request fields after protobuf's MessageToDict: default values (empty strings, SCOPE_NONE) are
/// absent, other types are refused as invalid parameters.
fn params(request: &Value, allowed: &[&str]) -> Result<Map<String, Value>, Error> {
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
                if s.parse::<JobStatus>().is_err() {
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

/// `Job.list`: JobQuery -> JobsInfo, within `limits`.
pub fn list(
    index: &Index,
    scope: &Scope,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, Error> {
    list_as(index, scope, request, now, limits)
}

/// [`list`], answered as a [`Value`] or as [`Encoded`] JSON text.
pub fn list_as<A: AnswerForm>(
    index: &Index,
    scope: &Scope,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<A, Error> {
    let budget = Budget::new(limits);
    let mut p = params(
        request,
        &["query", "job_id", "status", "data_source_id", "domain_id"],
    )?;
    check_required(&p, &["domain_id"])?;
    let mut query =
        append_query_filter(&mut p, &["job_id", "status", "data_source_id", "domain_id"]);
    append_keyword(&mut query)?;
    let q = crate::query::parse_query(&Value::Object(query), now, &budget)?;
    let (rows, total) = run(index.slots(), scope, &q, &budget)?;
    let projection = match (&q.minimal, &q.only) {
        (true, _) => Projection::Minimal,
        (false, Some(fields)) => Projection::Only(fields),
        (false, None) => Projection::Full,
    };
    Ok(A::from_jobs(&JobsInfo {
        rows: &rows,
        total,
        projection: &projection,
    }))
}

/// `Job.stat`: JobStatQuery -> Struct, within `limits`.
pub fn stat(
    index: &Index,
    scope: &Scope,
    request: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, Error> {
    let mut p = params(request, &["query", "domain_id"])?;
    if !p.contains_key("query") && request.get("query").is_some_and(Value::is_object) {
        p.insert("query".into(), json!({}));
    }
    check_required(&p, &["query", "domain_id"])?;
    let query = append_query_filter(&mut p, &["domain_id"]);
    stat_query(index, scope, &Value::Object(query), now, limits)
}

/// A StatisticsQuery on its own (the Kubernetes `JobStat` resource): keyword, filter, aggregate.
pub fn stat_query(
    index: &Index,
    scope: &Scope,
    query: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Value, Error> {
    let budget = Budget::new(limits);
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
    append_keyword(&mut q)?;
    let filter = parse_filters(&q, "query.", now, &budget)?;
    crate::stat::stat(index.slots(), scope, &filter, &q, &budget)
}

/// `Job.get`: GetJobRequest -> JobInfo.
pub fn get(index: &Index, scope: &Scope, request: &Value) -> Result<Value, Error> {
    let p = params(request, &["job_id", "domain_id", "only"])?;
    check_required(&p, &["job_id", "domain_id"])?;
    let job_id = p.get("job_id").and_then(Value::as_str).unwrap_or_default();
    let domain = p
        .get("domain_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let only = match p.get("only").and_then(Value::as_array) {
        None => None,
        Some(keys) => {
            let mut fields = Vec::new();
            for k in keys.iter().filter_map(Value::as_str) {
                let f = FieldPath::resolve(k).map_err(Error::unknown)?.field;
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
            Some(fields)
        }
    };
    let found = index
        .slots()
        .named(job_id)
        .filter(|r| r.domain.as_ref() == domain && scope.admits(r))
        .min_by(|a, b| a.natural_cmp(b));
    let Some(rec) = found else {
        return Err(Error::not_found(
            &["job_id", "domain_id"],
            &[job_id, domain],
        ));
    };
    let projection = match &only {
        Some(fields) => Projection::Only(fields),
        None => Projection::Full,
    };
    Ok(render_info(rec, &projection))
}

/// JobInfo of one job (used for the answer of a cancel).
pub fn job_info(job: &Job) -> Value {
    crate::render::job_info_of(job)
}

/// Filter, order and page a core `Query` (no request wrapper, no required domain): the typed entry
/// point of the Kubernetes aggregated API. Returns the page and the total before paging.
pub fn select(
    index: &Index,
    scope: &Scope,
    query: &Value,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<(Vec<Job>, usize), Error> {
    let budget = Budget::new(limits);
    let q = parse(query, now, &budget)?;
    let (rows, total) = run(index.slots(), scope, &q, &budget)?;
    Ok((rows.into_iter().map(Record::to_job).collect(), total))
}

/// Parses a core `Query` once (its `keyword` OR-ed into `filter_or` on `job_id`), so it can be
/// evaluated many times with [`Index::query`]. `now` resolves `timediff_*` values; `limits`
/// bound its values and regular expressions.
pub fn parse_query(query: &Value, now: DateTime<Utc>, limits: &Limits) -> Result<Query, Error> {
    parse(query, now, &Budget::new(limits))
}

fn parse(query: &Value, now: DateTime<Utc>, budget: &Budget<'_>) -> Result<Query, Error> {
    let mut q = as_object(query, "query")?.clone();
    append_keyword(&mut q)?;
    crate::query::parse_query(&Value::Object(q), now, budget)
}
