//! The `Query` message (core v1, with the v2 list form of `sort` accepted too), parsed into a
//! typed [`Query`]: filter conditions compiled, sort keys resolved, page and projection flags read,
//! every error raised before the index is touched ([`crate::scan`] evaluates it).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::condition::parse_condition;
use crate::error::Error;
use crate::filter::Filter;
use crate::limits::Budget;
use crate::message::{Page, as_bool, as_list, as_object, check_fields, parse_page};
use crate::schema::{Field, FieldPath, Schema};

#[derive(Clone, Debug)]
pub(crate) struct SortKey {
    /// The model field, or why the key names none: an unknown key sorts as a tie everywhere, but
    /// fails when `only` is given (the sort keys are added to `only`).
    pub path: Result<FieldPath, String>,
    pub desc: bool,
}

/// A parsed core `Query` (filter, sort, page, projection flags), validated like the reference and
/// with `timediff` values already resolved against the clock given to [`crate::calls::parse_query`].
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// The resource whose table resolved its fields (`None`: no field named).
    pub(crate) schema: Option<&'static Schema>,
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

pub(crate) fn parse_filters(
    schema: &'static Schema,
    q: &Map<String, Value>,
    prefix: &str,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<Filter, Error> {
    let mut filter = Filter::default();
    for c in as_list(q.get("filter"), &format!("{prefix}filter"))? {
        filter.and.push(parse_condition(schema, c, now, budget)?);
    }
    for c in as_list(q.get("filter_or"), &format!("{prefix}filter_or"))? {
        filter.or.push(parse_condition(schema, c, now, budget)?);
    }
    Ok(filter)
}

fn sort_entry(schema: &'static Schema, e: &Value) -> Result<SortKey, Error> {
    let m = as_object(e, "query.sort")?;
    check_fields(m, "query.sort", &["key", "desc"])?;
    let key = match m.get("key") {
        Some(Value::String(k)) => k,
        None | Some(Value::Null) => return Err(Error::unknown("'key'")),
        Some(_) => return Err(Error::invalid_parameter_type("query.sort.key", "str")),
    };
    Ok(SortKey {
        path: FieldPath::resolve(schema, key),
        desc: as_bool(m.get("desc"), "query.sort.desc")?,
    })
}

/// v1 `{key, desc}` / `{keys: [...]}` (key wins), or the v2 list.
pub(crate) fn parse_sort(
    schema: &'static Schema,
    v: Option<&Value>,
) -> Result<Vec<SortKey>, Error> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(entries)) => entries.iter().map(|e| sort_entry(schema, e)).collect(),
        Some(Value::Object(m)) => {
            check_fields(m, "query.sort", &["key", "desc", "keys"])?;
            match m.get("key") {
                Some(Value::String(k)) if !k.is_empty() => Ok(vec![SortKey {
                    path: FieldPath::resolve(schema, k),
                    desc: as_bool(m.get("desc"), "query.sort.desc")?,
                }]),
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    as_list(m.get("keys"), "query.sort.keys")?
                        .iter()
                        .map(|e| sort_entry(schema, e))
                        .collect()
                }
                Some(_) => Err(Error::invalid_parameter_type("query.sort.key", "str")),
            }
        }
        Some(_) => Err(Error::invalid_parameter_type("query.sort", "dict")),
    }
}

pub(crate) fn parse_query(
    schema: &'static Schema,
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
    let filter = parse_filters(schema, q, "query.", now, budget)?;
    let sort = parse_sort(schema, q.get("sort"))?;
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
                let path = FieldPath::resolve(schema, k).map_err(Error::db_query)?;
                if !fields.contains(&path.field) {
                    fields.push(path.field);
                }
            }
            // The ordering keys in use are loaded too.
            if sort.is_empty()
                && let Some(created) = schema.created()
            {
                fields.push(created);
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
        schema: Some(schema),
        filter,
        sort,
        page,
        minimal,
        count_only,
        only,
    })
}

/// `append_keyword_filter`: the keyword's words, OR-ed as `contain_in` on `key` (the resource's
/// id: `job_id`, `job_task_id`). A keyword that
/// is not a string cannot pass protobuf (`string keyword`): refused as an invalid parameter type,
/// by list and stat alike.
pub(crate) fn append_keyword(query: &mut Map<String, Value>, key: &str) -> Result<(), Error> {
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
        or.push(serde_json::json!({"k": key, "v": words, "o": "contain_in"}));
    }
    Ok(())
}
