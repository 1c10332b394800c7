//! Building a stat pipeline: the whole `aggregate` list is checked and turned into typed
//! [`Stage`]s before any stage runs, so a build error in any stage wins over a runtime error of an
//! earlier one (spec, Corrections). Errors come in the seed's tiers: the checks SpaceONE makes
//! while it builds the MongoDB pipeline (in stage order), then the ones MongoDB makes when it
//! parses the pipeline (a non-positive `$limit`, a negative `$skip`, an empty `$sort`, `$not`
//! with two arguments), and only then what fails while documents flow.

use serde_json::{Map, Value};

use super::rows::{P, raw};
use crate::error::{Error, py_repr_ordered};
use crate::filter::Cmp;
use crate::message::{as_bool, as_list, as_object, check_fields};
use crate::schema::Schema;
use crate::value::Bson;

pub(super) const GROUP_OPERATORS: [&str; 10] = [
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
/// The group conditions' operators: the filter's comparisons, in the order the seed's error
/// lists them.
const CONDITION_OPERATORS: [Cmp; 6] = [Cmp::Eq, Cmp::Ne, Cmp::Gt, Cmp::Gte, Cmp::Lt, Cmp::Lte];
const STAGES: &str = "aggregate.unwind or aggregate.group or aggregate.count or aggregate.sort or aggregate.project or aggregate.limit or aggregate.skip";

/// The seed's `'<location>' condition requires <what>: <condition>` (ERROR_DB_QUERY).
fn requires(location: &str, what: &str, condition: String) -> Error {
    Error::db_query(format!(
        "'{location}' condition requires {what}: {condition}"
    ))
}

fn named(v: &Map<String, Value>, a: &str, b: &str) -> Option<String> {
    v.get(a)
        .or_else(|| v.get(b))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// One `aggregate.group.fields` entry.
pub(super) struct GroupField {
    pub(super) name: String,
    pub(super) op: &'static str,
    pub(super) key: Option<P>,
    pub(super) push_fields: Vec<(String, P)>,
    pub(super) conditions: Vec<(P, Cmp, Bson)>,
}

/// A group key: its output name, the path it reads and its `date_format`.
pub(super) type GroupKey = (String, P, Option<String>);

/// A project field: its output name, the path it reads and its operator.
pub(super) type ProjectRule = (String, String, Option<String>);

/// One stage of a built pipeline; paths already point at `_id.<name>` where they name a group key.
pub(super) enum Stage {
    Unwind {
        path: String,
        parts: Vec<String>,
    },
    Group {
        keys: Vec<GroupKey>,
        fields: Vec<GroupField>,
    },
    Count {
        name: String,
    },
    Sort(Vec<(String, bool)>),
    Project {
        rules: Vec<ProjectRule>,
        exclude: bool,
    },
    Limit(usize),
    Skip(usize),
}

impl Stage {
    /// A `group` whose results do not depend on input order.
    /// Whether the stage, first in a pipeline, reads its records in any order: a group whose
    /// accumulators do not depend on it, or a count.
    pub(super) fn reads_in_any_order(&self) -> bool {
        matches!(self, Stage::Count { .. }) || self.is_unordered_group()
    }

    pub(super) fn is_unordered_group(&self) -> bool {
        match self {
            Stage::Group { fields, .. } => fields
                .iter()
                .all(|f| matches!(f.op, "count" | "sum" | "average" | "max" | "min")),
            _ => false,
        }
    }
}

struct Builder {
    /// Names of the current group keys: stages address them as `_id.<name>`.
    group_keys: Vec<String>,
    /// The first error MongoDB would raise parsing the pipeline, kept until every stage is built.
    mongo: Option<Error>,
    /// The resource the stored records are of.
    schema: &'static Schema,
}

impl Builder {
    fn key_path(&self, key: &str) -> String {
        if self.group_keys.iter().any(|k| k == key) {
            format!("_id.{key}")
        } else {
            key.to_string()
        }
    }

    fn mongo_error(&mut self, e: Error) {
        self.mongo.get_or_insert(e);
    }
}

/// Builds the whole `aggregate` list, or answers its first error in the seed's order.
pub(super) fn pipeline(schema: &'static Schema, stages: &[Value]) -> Result<Vec<Stage>, Error> {
    let mut b = Builder {
        group_keys: Vec::new(),
        mongo: None,
        schema,
    };
    let mut out = Vec::with_capacity(stages.len());
    for stage in stages {
        let Some((name, body)) = stage
            .as_object()
            .and_then(|m| m.iter().find(|(_, v)| !v.is_null()))
        else {
            return Err(Error::required_parameter(STAGES));
        };
        let built = match name.as_str() {
            "unwind" => unwind(&b, body)?,
            "group" => group(&mut b, body)?,
            "count" => count(&mut b, body)?,
            "sort" => sort(&mut b, body)?,
            "project" => project(&mut b, body)?,
            "limit" => {
                let n = int_arg(body, "aggregate.limit")?;
                if n <= 0 {
                    b.mongo_error(raw("the limit must be positive"));
                }
                Stage::Limit(usize::try_from(n).unwrap_or(usize::MAX))
            }
            "skip" => {
                let n = int_arg(body, "aggregate.skip")?;
                if n < 0 {
                    b.mongo_error(raw(
                        "invalid argument to skip stage: value must be non-negative",
                    ));
                }
                Stage::Skip(usize::try_from(n).unwrap_or(0))
            }
            _ => return Err(Error::required_parameter(STAGES)),
        };
        out.push(built);
    }
    match b.mongo {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn int_arg(v: &Value, key: &str) -> Result<i64, Error> {
    v.as_f64()
        .filter(|f| f.fract() == 0.0)
        .map(|f| f as i64)
        .ok_or_else(|| Error::invalid_parameter_type(key, "int"))
}

fn unwind(b: &Builder, body: &Value) -> Result<Stage, Error> {
    let m = as_object(body, "aggregate.unwind")?;
    check_fields(m, "aggregate.unwind", &["path", "filter"])?;
    let Some(path) = m
        .get("path")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(Error::required_parameter("aggregate.unwind.path"));
    };
    let path = b.key_path(path);
    let parts = path.split('.').map(str::to_string).collect();
    Ok(Stage::Unwind { path, parts })
}

fn count(b: &mut Builder, body: &Value) -> Result<Stage, Error> {
    let m = as_object(body, "aggregate.count")?;
    check_fields(m, "aggregate.count", &["name"])?;
    let Some(name) = m
        .get("name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(Error::required_parameter("aggregate.count.name"));
    };
    b.group_keys.clear();
    Ok(Stage::Count {
        name: name.to_string(),
    })
}

fn sort(b: &mut Builder, body: &Value) -> Result<Stage, Error> {
    let entries: Vec<&Value> = match body {
        Value::Array(a) => {
            if a.is_empty() {
                b.mongo_error(raw("$sort stage must have at least one sort key"));
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
            b.key_path(k),
            as_bool(em.get("desc"), "aggregate.sort.desc")?,
        ));
    }
    Ok(Stage::Sort(keys))
}

fn project(b: &mut Builder, body: &Value) -> Result<Stage, Error> {
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
                return Err(requires("aggregate.project.fields", "a fields", repr()));
            }
            if !PROJECT_OPERATORS.contains(&op.as_str()) {
                return Err(Error::stage_operator_not_supported(
                    "aggregate.project.fields",
                    op,
                    &PROJECT_OPERATORS,
                ));
            }
        }
        let name = named(fm, "name", "n")
            .ok_or_else(|| requires("aggregate.project.fields", "a name", repr()))?;
        // Without an operator a missing key is `"$None"`: a field no row has.
        let key = match (named(fm, "key", "k"), &op) {
            (Some(k), _) => k,
            (None, None) => "None".to_string(),
            (None, Some(_)) => {
                return Err(requires("aggregate.project.fields", "a key", repr()));
            }
        };
        rules.push((name, b.key_path(&key), op));
    }
    if exclude {
        b.group_keys.clear();
    }
    Ok(Stage::Project { rules, exclude })
}

fn group(b: &mut Builder, body: &Value) -> Result<Stage, Error> {
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
    let mut rules: Vec<GroupKey> = Vec::new();
    for k in keys {
        let km = as_object(k, "aggregate.group.keys")?;
        check_fields(km, "aggregate.group.keys", &key_order)?;
        let repr = || py_repr_ordered(k, &key_order);
        // The seed checks the key before the name.
        let key = named(km, "key", "k")
            .ok_or_else(|| requires("aggregate.group.keys", "a key", repr()))?;
        let name = named(km, "name", "n")
            .ok_or_else(|| requires("aggregate.group.keys", "a name", repr()))?;
        let fmt = km
            .get("date_format")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        rules.push((name, P::new(b.schema, &b.key_path(&key)), fmt));
    }
    let mut specs = Vec::new();
    for f in fields {
        specs.push(group_field(b, f)?);
    }
    b.group_keys = rules.iter().map(|(n, _, _)| n.clone()).collect();
    Ok(Stage::Group {
        keys: rules,
        fields: specs,
    })
}

/// One `aggregate.group.fields` entry, checked in the seed's order: operator, name, the push
/// sub-fields, the conditions, then what the operator itself requires.
fn group_field(b: &mut Builder, f: &Value) -> Result<GroupField, Error> {
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
    let fm = as_object(f, "aggregate.group.fields")?;
    check_fields(fm, "aggregate.group.fields", &field_order)?;
    let repr = || py_repr_ordered(f, &field_order);
    let op_name = named(fm, "operator", "o").unwrap_or_default();
    let Some(op) = GROUP_OPERATORS.iter().copied().find(|o| *o == op_name) else {
        return Err(Error::stage_operator_not_supported(
            "aggregate.group.fields",
            &op_name,
            &GROUP_OPERATORS,
        ));
    };
    let name = named(fm, "name", "n")
        .ok_or_else(|| requires("aggregate.group.fields", "a name", repr()))?;
    let key = named(fm, "key", "k").map(|k| P::new(b.schema, &b.key_path(&k)));
    let mut push_fields = Vec::new();
    for pf in as_list(fm.get("fields"), "aggregate.group.fields.fields")? {
        let pm = as_object(pf, "aggregate.group.fields.fields")?;
        check_fields(
            pm,
            "aggregate.group.fields.fields",
            &["key", "k", "name", "n"],
        )?;
        // The seed's message shows the whole group field, not the sub-field.
        let k = named(pm, "key", "k")
            .ok_or_else(|| requires("aggregate.group.fields.fields", "a key", repr()))?;
        let n = named(pm, "name", "n")
            .ok_or_else(|| requires("aggregate.group.fields.fields", "a name", repr()))?;
        push_fields.push((n, P::new(b.schema, &b.key_path(&k))));
    }
    let conditions = conditions(b, fm)?;
    let requires_key = || requires("aggregate.group.fields", "a key", repr());
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
                return Err(requires("aggregate.group.fields", "fields", repr()));
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
    // MongoDB refuses `{$not: [a, b]}` when it parses the pipeline.
    if conditions.iter().any(|(_, co, _)| *co == Cmp::Ne) {
        b.mongo_error(raw(
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

fn conditions(b: &Builder, fm: &Map<String, Value>) -> Result<Vec<(P, Cmp, Bson)>, Error> {
    let mut conditions = Vec::new();
    for c in as_list(fm.get("conditions"), "aggregate.group.fields.conditions")? {
        let cm = as_object(c, "aggregate.group.fields.conditions")?;
        let order = ["key", "k", "value", "v", "operator", "o"];
        check_fields(cm, "aggregate.group.fields.conditions", &order)?;
        let crepr = || py_repr_ordered(c, &order);
        let Some(ck) = named(cm, "key", "k") else {
            return Err(requires(
                "aggregate.group.fields.conditions.key",
                "a key",
                crepr(),
            ));
        };
        // `if value is None`: a null value counts as missing.
        let Some(cv) = cm
            .get("value")
            .or_else(|| cm.get("v"))
            .filter(|v| !v.is_null())
        else {
            return Err(requires(
                "aggregate.group.fields.conditions.value",
                "a value",
                crepr(),
            ));
        };
        let Some(co) = named(cm, "operator", "o") else {
            return Err(requires(
                "aggregate.group.fields.conditions.operator",
                "a operator",
                crepr(),
            ));
        };
        let Some(co) = Cmp::named(&co).filter(|c| CONDITION_OPERATORS.contains(c)) else {
            let supported: Vec<&str> = CONDITION_OPERATORS.iter().map(|c| c.name()).collect();
            return Err(Error::db_query(format!(
                "'aggregate.group.fields.conditions.operator' condition's operator is not supported: supported operator = {}",
                supported.join(" | ")
            )));
        };
        conditions.push((
            P::new(b.schema, &b.key_path(&ck)),
            co,
            Bson::from_proto_json(cv),
        ));
    }
    Ok(conditions)
}
