//! Parsing one filter condition `{key|k, value|v, operator|o}`: validated in the reference's
//! order (its error classes and messages), its value coerced by the field's type as mongoengine
//! does, and compiled into a [`Condition`].

use chrono::{DateTime, Utc};
use regex_automata::meta::Regex;
use serde_json::Value;

use crate::error::{Error, py_repr, py_repr_ordered, py_str};
use crate::filter::{Cmp, Condition, Test, Values};
use crate::limits::Budget;
use crate::schema::{FieldPath, FieldType, Schema};
use crate::value::Bson;

/// The filter operators, in the order the reference lists them in its error message.
pub const FILTER_OPERATORS: [&str; 24] = [
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
    schema: &'static Schema,
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

    if !FILTER_OPERATORS.contains(&operator) {
        return Err(Error::filter_operator_not_supported(&FILTER_OPERATORS));
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
    let mut pre_value: Option<Bson> = None;
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
                Value::String(s) => crate::time::isoparse(s).map(Bson::Date).ok_or_else(|| {
                    Error::db_query(format!(
                        "The value of {op} operator is required ISO 8601 format."
                    ))
                })?,
                _ => Bson::Null,
            });
        }
        op if op.starts_with("timediff_") => {
            let parsed = value
                .as_str()
                .and_then(|s| crate::time::parse_timediff(s, now));
            pre_value = Some(Bson::Date(parsed.ok_or_else(|| {
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
            path: FieldPath::resolve(schema, key).ok(),
            test: Test::Regex(compiled),
        });
    }

    // From here on the reference is inside its try block: errors are ERROR_DB_QUERY(str(e)).
    let path = FieldPath::resolve(schema, key).map_err(Error::db_query)?;
    let ty = if path.sub.is_empty() {
        path.field.ty()
    } else {
        FieldType::Dict
    };
    let coerce = |v: &Value| coerce(ty, v);
    if let Some(cmp) = Cmp::named(operator) {
        return Ok(Condition {
            path: Some(path),
            test: Test::Cmp(cmp, coerce(value)?),
        });
    }
    let test = match operator {
        "datetime_gt" | "timediff_gt" => Test::Cmp(Cmp::Gt, pre_value.unwrap_or(Bson::Null)),
        "datetime_lt" | "timediff_lt" => Test::Cmp(Cmp::Lt, pre_value.unwrap_or(Bson::Null)),
        "datetime_gte" | "timediff_gte" => Test::Cmp(Cmp::Gte, pre_value.unwrap_or(Bson::Null)),
        "datetime_lte" | "timediff_lte" => Test::Cmp(Cmp::Lte, pre_value.unwrap_or(Bson::Null)),
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
                                equal.push(Bson::from_proto_json(other))
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
                    Bson::from_proto_json(v),
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
fn coerce(ty: FieldType, v: &Value) -> Result<Bson, Error> {
    Ok(match ty {
        FieldType::Int => match v {
            Value::Null => Bson::Null,
            Value::Bool(b) => Bson::Int(i64::from(*b)),
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if !f.is_finite() {
                    return Err(Error::db_query("cannot convert float infinity to integer"));
                }
                Bson::Int(f.trunc() as i64)
            }
            Value::String(s) => {
                let t = s.trim().replace('_', "");
                t.parse::<i64>().map(Bson::Int).map_err(|_| {
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
            Value::String(s) => crate::time::lenient_parse(s).map_or(Bson::Null, Bson::Date),
            _ => Bson::Null,
        },
        FieldType::Str | FieldType::Dict => Bson::from_proto_json(v),
    })
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
