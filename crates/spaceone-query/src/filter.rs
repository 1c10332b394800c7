//! One filter condition `{key|k, value|v, operator|o}`: validated in the reference's order (its
//! error classes and messages), its value coerced by the field's type as mongoengine does, and
//! compiled into a predicate over stored records.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use regex_automata::meta::Regex;
use serde_json::Value;

use crate::error::{Error, py_repr, py_repr_ordered, py_str};
use crate::index::{Index, Rec};
use crate::limits::Budget;
use crate::model::{Field, FieldPath, FieldType};
use crate::value::Val;

/// In the order the reference lists them in its error message.
pub const OPERATORS: [&str; 24] = [
    "lt",
    "lte",
    "gt",
    "gte",
    "eq",
    "not",
    "exists",
    "contain",
    "not_contain",
    "in",
    "not_in",
    "contain_in",
    "not_contain_in",
    "match",
    "regex",
    "regex_in",
    "datetime_gt",
    "datetime_lt",
    "datetime_gte",
    "datetime_lte",
    "timediff_gt",
    "timediff_lt",
    "timediff_gte",
    "timediff_lte",
];
const LIST_OPERATORS: [&str; 5] = ["in", "not_in", "contain_in", "not_contain_in", "regex_in"];
const FILTER_ORDER: [&str; 6] = ["key", "k", "value", "v", "operator", "o"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
}

#[derive(Clone, Debug)]
enum Test {
    Cmp(Cmp, Val),
    In(Values),
    NotIn(Values),
    Exists(bool),
    /// Any of the patterns matches (contain, contain_in, regex, regex_in).
    Regex(Vec<Regex>),
    /// At least one pattern does not match (not_contain, and the reference's OR-ed not_contain_in).
    NotRegex(Vec<Regex>),
    ElemMatch(Vec<(Vec<String>, Cmp, Val)>),
    Never,
    /// `eq` on an interned field, bound to one index: the index's shared copy of the string
    /// (`None`: no record holds it), so a match is a pointer comparison.
    Interned(Option<Arc<str>>),
}

/// The values of an `in` list: strings in a hash set (a field's string is found in one lookup,
/// whatever the list's length), other values compared one by one.
#[derive(Clone, Debug)]
pub(crate) struct Values {
    all: Vec<Val>,
    strs: std::collections::HashSet<Arc<str>>,
    others: Vec<Val>,
}

impl Values {
    fn new(all: Vec<Val>) -> Values {
        let mut strs = std::collections::HashSet::new();
        let mut others = Vec::new();
        for v in &all {
            match v {
                Val::Str(s) => {
                    strs.insert(s.clone());
                }
                other => others.push(other.clone()),
            }
        }
        Values { all, strs, others }
    }

    /// Whether the field equals one of the values as a query compares (a string only ever
    /// equals a string with the same bytes).
    fn any_eq(&self, v: &Val) -> bool {
        match v {
            Val::Str(s) => self.strs.contains(s),
            Val::Arr(_) => self.all.iter().any(|q| cmp_matches(Cmp::Eq, v, q)),
            _ => self.others.iter().any(|q| cmp_matches(Cmp::Eq, v, q)),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Condition {
    /// `None`: a `regex` key that names no model field (raw Mongo query: matches nothing).
    path: Option<FieldPath>,
    test: Test,
}

fn get<'a>(c: &'a serde_json::Map<String, Value>, a: &str, b: &str) -> Option<&'a Value> {
    c.get(a).or_else(|| c.get(b))
}

/// Python's type name of a protobuf-delivered value (numbers are floats).
fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Validates and compiles one condition.
pub(crate) fn parse_condition(
    raw: &Value,
    now: DateTime<Utc>,
    budget: &Budget<'_>,
) -> Result<Condition, Error> {
    let Some(c) = raw.as_object() else {
        return Err(Error::invalid_parameter_type("query.filter", "dict"));
    };
    for k in c.keys() {
        if !FILTER_ORDER.contains(&k.as_str()) {
            return Err(Error::invalid_parameter(
                &format!("query.filter.{k}"),
                "unknown field",
            ));
        }
    }
    let repr = || py_repr_ordered(raw, &FILTER_ORDER);
    let key = match get(c, "key", "k") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid_parameter_type("query.filter.key", "str")),
    };
    let operator = match get(c, "operator", "o") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(Error::invalid_parameter_type(
                "query.filter.operator",
                "str",
            ));
        }
    };
    let value = get(c, "value", "v").unwrap_or(&Value::Null);

    if !OPERATORS.contains(&operator) {
        let names: Vec<String> = OPERATORS.iter().map(|o| format!("'{o}'")).collect();
        return Err(Error::db_query(format!(
            "Filter operator is not supported. (operator = dict_keys([{}]))",
            names.join(", ")
        )));
    }
    let is_list = value.is_array();
    if LIST_OPERATORS.contains(&operator) && !is_list {
        return Err(Error::operator_list_value_type(operator, &repr()));
    }
    if !LIST_OPERATORS.contains(&operator) && is_list {
        return Err(Error::operator_value_type(operator, &repr()));
    }
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(Error::db_query(
            "Filter condition should have key, value and operator.",
        ));
    };
    budget
        .charge_values(operator, value)
        .map_err(Error::db_query)?;

    // Resolver-specific checks, still outside the query's try block.
    let mut pre_value: Option<Val> = None;
    // The exists and match resolvers rebuild the condition they report, with the key already in
    // mongoengine's `a__b` form.
    let resolver_repr = || {
        format!(
            "{{'key': {}, 'value': {}, 'operator': {}}}",
            py_str(&key.replace('.', "__")),
            py_repr(value),
            py_str(operator)
        )
    };
    match operator {
        "exists" if !value.is_boolean() => {
            return Err(Error::operator_boolean_type("exists", &resolver_repr()));
        }
        "match" if !value.is_object() => {
            return Err(Error::operator_dict_value_type("match", &resolver_repr()));
        }
        op if op.starts_with("datetime_") => {
            pre_value = Some(match value {
                Value::String(s) => crate::time::isoparse(s).map(Val::Date).ok_or_else(|| {
                    Error::db_query(format!(
                        "The value of {op} operator is required ISO 8601 format."
                    ))
                })?,
                _ => Val::Null,
            });
        }
        op if op.starts_with("timediff_") => {
            let parsed = value
                .as_str()
                .and_then(|s| crate::time::parse_timediff(s, now));
            pre_value = Some(Val::Date(parsed.ok_or_else(|| {
                let shown = value
                    .as_str()
                    .map_or_else(|| py_repr(value), str::to_string);
                Error::db_query(format!(
                    "The value of {op} operator is invalid. (value = {shown})"
                ))
            })?));
        }
        _ => {}
    }

    if matches!(operator, "regex" | "regex_in") {
        // Raw `$regex` query: no field resolution, key used as given.
        let patterns = match value {
            Value::Array(a) => a.iter().collect::<Vec<_>>(),
            v => vec![v],
        };
        let mut strings = Vec::with_capacity(patterns.len());
        for p in patterns {
            let Value::String(p) = p else {
                return Err(Error::db_query("$regex has to be a string"));
            };
            strings.push(p.clone());
        }
        // One expression for all the patterns: one automaton, one pass per value.
        let compiled = compile(budget, &strings)?.into_iter().collect();
        return Ok(Condition {
            path: FieldPath::resolve(key).ok(),
            test: Test::Regex(compiled),
        });
    }

    // From here on the reference is inside its try block: errors are ERROR_DB_QUERY(str(e)).
    let path = FieldPath::resolve(key).map_err(Error::db_query)?;
    let ty = if path.sub.is_empty() {
        path.field.ty()
    } else {
        FieldType::Dict
    };
    let coerce = |v: &Value| coerce(ty, v);
    let test = match operator {
        "eq" => Test::Cmp(Cmp::Eq, coerce(value)?),
        "not" => Test::Cmp(Cmp::Ne, coerce(value)?),
        "lt" => Test::Cmp(Cmp::Lt, coerce(value)?),
        "lte" => Test::Cmp(Cmp::Lte, coerce(value)?),
        "gt" => Test::Cmp(Cmp::Gt, coerce(value)?),
        "gte" => Test::Cmp(Cmp::Gte, coerce(value)?),
        "datetime_gt" | "timediff_gt" => Test::Cmp(Cmp::Gt, pre_value.unwrap_or(Val::Null)),
        "datetime_lt" | "timediff_lt" => Test::Cmp(Cmp::Lt, pre_value.unwrap_or(Val::Null)),
        "datetime_gte" | "timediff_gte" => Test::Cmp(Cmp::Gte, pre_value.unwrap_or(Val::Null)),
        "datetime_lte" | "timediff_lte" => Test::Cmp(Cmp::Lte, pre_value.unwrap_or(Val::Null)),
        "in" | "not_in" => {
            let items = value
                .as_array()
                .map(|a| a.iter().map(coerce).collect::<Result<Vec<_>, _>>())
                .transpose()?;
            let items = items.unwrap_or_default();
            if operator == "in" {
                Test::In(Values::new(items))
            } else {
                Test::NotIn(Values::new(items))
            }
        }
        "exists" => Test::Exists(value.as_bool().unwrap_or(false)),
        "contain" | "not_contain" | "contain_in" | "not_contain_in" => {
            let negate = operator.starts_with("not_");
            let values: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            match ty {
                FieldType::Str | FieldType::Dict => {
                    let mut patterns = Vec::new();
                    let mut equal = Vec::new();
                    for v in values {
                        match v {
                            Value::String(s) => patterns.push(regex::escape(s)),
                            // Dynamic (dict) fields compare other values by equality.
                            other if ty == FieldType::Dict => {
                                equal.push(Val::from_proto_json(other))
                            }
                            other => {
                                return Err(Error::db_query(format!(
                                    "decoding to str: need a bytes-like object, {} found",
                                    py_type(other)
                                )));
                            }
                        }
                    }
                    match (negate, equal.is_empty()) {
                        (false, true) => {
                            Test::Regex(compile(budget, &patterns)?.into_iter().collect())
                        }
                        // Each pattern on its own: the test is that one of them does not match.
                        (true, true) => Test::NotRegex({
                            budget
                                .check_pattern_bytes(&patterns)
                                .map_err(Error::db_query)?;
                            patterns
                                .chunks(1)
                                .map(|p| compile(budget, p))
                                .filter_map(Result::transpose)
                                .collect::<Result<_, _>>()?
                        }),
                        (false, false) if patterns.is_empty() => Test::In(Values::new(equal)),
                        _ => return Err(Error::db_query("$not needs a regex or a document")),
                    }
                }
                // String operators on other fields: mongoengine prepares the value for the field
                // and the operator falls back to equality.
                FieldType::Int | FieldType::Date => {
                    if negate {
                        return Err(Error::db_query("$not needs a regex or a document"));
                    }
                    Test::In(Values::new(
                        values.into_iter().map(coerce).collect::<Result<_, _>>()?,
                    ))
                }
            }
        }
        "match" => {
            let mut parts = Vec::new();
            for (k, v) in value.as_object().into_iter().flatten() {
                let (field, op) = match k.rsplit_once("__") {
                    Some((f, "gt")) => (f, Cmp::Gt),
                    Some((f, "gte")) => (f, Cmp::Gte),
                    Some((f, "lt")) => (f, Cmp::Lt),
                    Some((f, "lte")) => (f, Cmp::Lte),
                    Some((f, "ne")) => (f, Cmp::Ne),
                    _ => (k.as_str(), Cmp::Eq),
                };
                parts.push((
                    field.split("__").map(str::to_string).collect(),
                    op,
                    Val::from_proto_json(v),
                ));
            }
            if ty == FieldType::Dict {
                Test::ElemMatch(parts)
            } else {
                Test::Never
            }
        }
        _ => Test::Never,
    };
    Ok(Condition {
        path: Some(path),
        test,
    })
}

/// mongoengine's `prepare_query_value` per field type.
fn coerce(ty: FieldType, v: &Value) -> Result<Val, Error> {
    Ok(match ty {
        FieldType::Int => match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Int(i64::from(*b)),
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if !f.is_finite() {
                    return Err(Error::db_query("cannot convert float infinity to integer"));
                }
                Val::Int(f.trunc() as i64)
            }
            Value::String(s) => {
                let t = s.trim().replace('_', "");
                t.parse::<i64>().map(Val::Int).map_err(|_| {
                    Error::db_query(format!(
                        "invalid literal for int() with base 10: {}",
                        crate::error::py_str(s)
                    ))
                })?
            }
            other => {
                return Err(Error::db_query(format!(
                    "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                    py_type(other)
                )));
            }
        },
        FieldType::Date => match v {
            Value::String(s) => crate::time::lenient_parse(s).map_or(Val::Null, Val::Date),
            _ => Val::Null,
        },
        FieldType::Str | FieldType::Dict => Val::from_proto_json(v),
    })
}

fn cmp_matches(op: Cmp, field: &Val, q: &Val) -> bool {
    let single = |x: &Val| -> bool {
        match op {
            // `Ne` is the negation of `Eq` over the whole field, handled below.
            Cmp::Eq | Cmp::Ne => x.eq_query(q),
            Cmp::Lt | Cmp::Lte | Cmp::Gt | Cmp::Gte => {
                if q.is_nullish() {
                    return matches!(op, Cmp::Lte | Cmp::Gte) && x.is_nullish();
                }
                if x.is_nullish()
                    || std::mem::discriminant(&rank_bracket(x))
                        != std::mem::discriminant(&rank_bracket(q))
                {
                    return false;
                }
                let o = x.cmp_bson(q);
                match op {
                    Cmp::Lt => o.is_lt(),
                    Cmp::Lte => o.is_le(),
                    Cmp::Gt => o.is_gt(),
                    _ => o.is_ge(),
                }
            }
        }
    };
    match op {
        Cmp::Ne => !cmp_matches(Cmp::Eq, field, q),
        _ => match field {
            Val::Arr(items) => single(field) || items.iter().any(single),
            _ => single(field),
        },
    }
}

#[derive(PartialEq)]
enum Bracket {
    Null,
    Num,
    Str,
    Obj,
    Arr,
    Bool,
    Date,
}

fn rank_bracket(v: &Val) -> Bracket {
    match v {
        Val::Missing | Val::Null => Bracket::Null,
        Val::Int(_) | Val::Float(_) => Bracket::Num,
        Val::Str(_) => Bracket::Str,
        Val::Obj(_) => Bracket::Obj,
        Val::Arr(_) => Bracket::Arr,
        Val::Bool(_) => Bracket::Bool,
        Val::Date(_) => Bracket::Date,
    }
}

/// One case-insensitive expression matching when any of `patterns` does (`None` for no patterns),
/// within the request's regex budgets.
fn compile(budget: &Budget<'_>, patterns: &[String]) -> Result<Option<Regex>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    match budget.compile(patterns) {
        Ok(re) => Ok(Some(re)),
        Err(Ok(limit)) => Err(Error::db_query(limit)),
        Err(Err(invalid)) => Err(Error::db_query(format!(
            "Regular expression is invalid: {invalid}"
        ))),
    }
}

fn regex_any(field: &Val, patterns: &[Regex]) -> bool {
    match field {
        Val::Str(s) => patterns.iter().any(|p| p.is_match(s.as_ref())),
        Val::Arr(items) => items.iter().any(|i| regex_any(i, patterns)),
        _ => false,
    }
}

impl Condition {
    #[inline]
    pub(crate) fn matches(&self, r: &Rec) -> bool {
        let Some(path) = &self.path else { return false };
        if let Test::Interned(a) = &self.test {
            return match (path.field, a) {
                (Field::DomainId, Some(a)) => Arc::ptr_eq(&r.domain, a),
                (Field::DataSourceId, Some(a)) => Arc::ptr_eq(&r.data_source, a),
                _ => false,
            };
        }
        // Fast paths for the common shapes on scalar model fields (no allocation).
        if path.sub.is_empty() {
            if let Test::Cmp(Cmp::Eq, Val::Str(q)) = &self.test {
                match path.field {
                    Field::Status => return r.status.as_str() == q.as_ref(),
                    Field::DomainId => return r.domain.as_ref() == q.as_ref(),
                    Field::DataSourceId => return r.data_source.as_ref() == q.as_ref(),
                    Field::JobId => return r.job_id.as_ref() == q.as_ref(),
                    _ => {}
                }
            }
            if let (Field::Status, Test::In(items)) = (path.field, &self.test) {
                let s = r.status.as_str();
                return items.strs.contains(s);
            }
        }
        let v = r.get(path);
        match &self.test {
            Test::Cmp(op, q) => cmp_matches(*op, &v, q),
            Test::In(items) => items.any_eq(&v),
            Test::NotIn(items) => !items.any_eq(&v),
            Test::Exists(want) => !matches!(v, Val::Missing) == *want,
            Test::Regex(p) => regex_any(&v, p),
            Test::NotRegex(p) => p
                .iter()
                .any(|one| !regex_any(&v, std::slice::from_ref(one))),
            Test::ElemMatch(parts) => match &v {
                Val::Arr(items) => items.iter().any(|item| {
                    parts.iter().all(|(sub, op, q)| {
                        let subs: Vec<&str> = sub.iter().map(String::as_str).collect();
                        cmp_matches(*op, &item.path(&subs), q)
                    })
                }),
                _ => false,
            },
            Test::Never | Test::Interned(_) => false,
        }
    }
}

/// An `eq` on an interned field: the index's copy of the value (`None`: no record holds it).
pub(crate) type InternedEq<'a> = (Field, Option<&'a Arc<str>>);

/// `AND(filter...) AND OR(filter_or...)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub and: Vec<Condition>,
    pub or: Vec<Condition>,
}

impl Condition {
    fn bound(&self, index: &Index) -> Condition {
        if let (Some(path), Test::Cmp(Cmp::Eq, Val::Str(q))) = (&self.path, &self.test)
            && path.sub.is_empty()
            && matches!(path.field, Field::DomainId | Field::DataSourceId)
        {
            return Condition {
                path: self.path.clone(),
                test: Test::Interned(index.interned(q)),
            };
        }
        self.clone()
    }
}

impl Condition {
    /// Units of work one test costs (for the time budget's clock).
    fn cost(&self) -> usize {
        match &self.test {
            Test::In(v) | Test::NotIn(v) => match &v.others.len() {
                0 => 1,
                n => *n,
            },
            // A PikeVM's work per byte grows with its automaton.
            Test::Regex(p) | Test::NotRegex(p) => p.iter().fold(0, |n: usize, r| {
                n.saturating_add(r.memory_usage() / 256).saturating_add(1)
            }),
            Test::ElemMatch(p) => p.len(),
            _ => 0,
        }
        .saturating_add(1)
    }
}

impl Filter {
    /// Units of work testing one record costs (at least 1).
    pub(crate) fn cost(&self) -> usize {
        self.and
            .iter()
            .chain(&self.or)
            .fold(1, |n: usize, c| n.saturating_add(c.cost()))
    }

    /// The same filter with string equalities on interned fields resolved against `index`.
    pub(crate) fn bound(&self, index: &Index) -> Filter {
        Filter {
            and: self.and.iter().map(|c| c.bound(index)).collect(),
            or: self.or.iter().map(|c| c.bound(index)).collect(),
        }
    }

    /// Splits a bound filter into its AND-ed `eq` conditions on interned fields (the index's copy
    /// of the value; `None`: no record holds it, so nothing matches) and the conditions left to
    /// test on the records.
    pub(crate) fn split_interned(&self) -> (Vec<InternedEq<'_>>, Filter) {
        let mut eqs = Vec::new();
        let mut rest = Vec::new();
        for c in &self.and {
            match (&c.path, &c.test) {
                (Some(path), Test::Interned(v)) if path.sub.is_empty() => {
                    eqs.push((path.field, v.as_ref()));
                }
                _ => rest.push(c.clone()),
            }
        }
        let rest = Filter {
            and: rest,
            or: self.or.clone(),
        };
        (eqs, rest)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.and.is_empty() && self.or.is_empty()
    }

    #[inline]
    pub(crate) fn matches(&self, r: &Rec) -> bool {
        self.and.iter().all(|c| c.matches(r))
            && (self.or.is_empty() || self.or.iter().any(|c| c.matches(r)))
    }
}
