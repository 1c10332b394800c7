//! Document values with MongoDB's semantics: missing versus null, numbers compared by value across
//! int and float, and the BSON order between types used by sorting, `$max`/`$min` and comparisons.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use crate::time::Millis;

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Date(Millis),
    Arr(Vec<Val>),
    Obj(Vec<(Arc<str>, Val)>),
}

impl Val {
    pub fn str(s: &str) -> Val {
        Val::Str(Arc::from(s))
    }

    pub fn is_nullish(&self) -> bool {
        matches!(self, Val::Missing | Val::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Approximate heap and inline bytes of the value, counted conservatively: shared strings
    /// (`Arc`) as if each copy owned them.
    pub fn approx_bytes(&self) -> usize {
        const VAL: usize = std::mem::size_of::<Val>();
        match self {
            Val::Str(s) => VAL.saturating_add(s.len()),
            Val::Arr(a) => a
                .iter()
                .fold(VAL, |n: usize, x| n.saturating_add(x.approx_bytes())),
            Val::Obj(o) => o.iter().fold(VAL, |n: usize, (k, x)| {
                n.saturating_add(16)
                    .saturating_add(k.len())
                    .saturating_add(x.approx_bytes())
            }),
            _ => VAL,
        }
    }

    /// MongoDB's canonical type rank (BSON comparison order).
    fn rank(&self) -> u8 {
        match self {
            Val::Missing | Val::Null => 1,
            Val::Int(_) | Val::Float(_) => 2,
            Val::Str(_) => 3,
            Val::Obj(_) => 4,
            Val::Arr(_) => 5,
            Val::Bool(_) => 8,
            Val::Date(_) => 9,
        }
    }

    /// Total order: type rank first, then value (numbers by value, strings bytewise).
    pub fn cmp_bson(&self, other: &Val) -> Ordering {
        let (a, b) = (self.rank(), other.rank());
        if a != b {
            return a.cmp(&b);
        }
        match (self, other) {
            (Val::Int(x), Val::Int(y)) => x.cmp(y),
            (x @ (Val::Int(_) | Val::Float(_)), y) => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y)
                    .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()).reverse())
            }
            (Val::Str(x), Val::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
            (Val::Date(x), Val::Date(y)) => x.cmp(y),
            (Val::Arr(x), Val::Arr(y)) => {
                for (p, q) in x.iter().zip(y) {
                    let o = p.cmp_bson(q);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            (Val::Obj(x), Val::Obj(y)) => {
                for ((ka, va), (kb, vb)) in x.iter().zip(y) {
                    let o = va
                        .rank()
                        .cmp(&vb.rank())
                        .then_with(|| ka.cmp(kb))
                        .then_with(|| va.cmp_bson(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            _ => Ordering::Equal,
        }
    }

    /// Equality as a query compares: same type bracket and equal value (null equals missing).
    pub fn eq_query(&self, other: &Val) -> bool {
        if self.is_nullish() && other.is_nullish() {
            return true;
        }
        self.rank() == other.rank() && self.cmp_bson(other) == Ordering::Equal
    }

    /// A field path inside the value (`a.b.0.c`); arrays yield the array of the elements' values.
    ///
    /// The walk stops at the first segment the value does not have: a key path costs the depth it
    /// really reaches, not its length.
    pub fn path<S: AsRef<str>>(&self, path: &[S]) -> Val {
        let Some((first, rest)) = path.split_first() else {
            return self.clone();
        };
        let first = first.as_ref();
        match self {
            Val::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k.as_ref() == first)
                .map_or(Val::Missing, |(_, v)| v.path(rest)),
            Val::Arr(items) => {
                if let Ok(i) = first.parse::<usize>() {
                    return items.get(i).map_or(Val::Missing, |v| v.path(rest));
                }
                let found: Vec<Val> = items
                    .iter()
                    .map(|v| v.path(path))
                    .filter(|v| !matches!(v, Val::Missing))
                    .collect();
                if found.is_empty() {
                    Val::Missing
                } else {
                    Val::Arr(found)
                }
            }
            _ => Val::Missing,
        }
    }

    pub fn from_json(v: &Value) -> Val {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Val::Float(n.as_f64().unwrap_or(0.0)), Val::Int),
            Value::String(s) => Val::str(s),
            Value::Array(a) => Val::Arr(a.iter().map(Val::from_json).collect()),
            Value::Object(m) => Val::Obj(
                m.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Val::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A query value as protobuf delivers it: every number is a float.
    pub fn from_proto_json(v: &Value) -> Val {
        match v {
            Value::Number(n) => Val::Float(n.as_f64().unwrap_or(0.0)),
            Value::Array(a) => Val::Arr(a.iter().map(Val::from_proto_json).collect()),
            Value::Object(m) => Val::Obj(
                m.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Val::from_proto_json(v)))
                    .collect(),
            ),
            other => Val::from_json(other),
        }
    }

    /// The value as a `google.protobuf.Struct` holds it: numbers become doubles; a datetime at the
    /// top level of a row becomes `isoformat()+"Z"` (the seed's `change_struct_type`), deeper down
    /// it cannot be converted.
    pub fn to_struct_json(&self, top_level: bool) -> Result<Value, ()> {
        Ok(match self {
            Val::Missing | Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => float_json(*i as f64),
            Val::Float(f) => float_json(*f),
            Val::Str(s) => Value::String(s.to_string()),
            Val::Date(ms) if top_level => Value::String(crate::time::render_isoformat(*ms)),
            Val::Date(_) => return Err(()),
            Val::Arr(a) => Value::Array(
                a.iter()
                    .map(|v| v.to_struct_json(false))
                    .collect::<Result<_, _>>()?,
            ),
            Val::Obj(o) => {
                let mut m = Map::new();
                for (k, v) in o {
                    if !matches!(v, Val::Missing) {
                        m.insert(k.to_string(), v.to_struct_json(false)?);
                    }
                }
                Value::Object(m)
            }
        })
    }
}

fn float_json(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bson_order_and_query_equality() {
        assert_eq!(Val::Int(2).cmp_bson(&Val::Float(2.0)), Ordering::Equal);
        assert!(Val::Null.cmp_bson(&Val::Int(0)).is_lt());
        assert!(Val::Int(100).cmp_bson(&Val::str("1")).is_lt());
        assert!(Val::str("b").cmp_bson(&Val::Date(0)).is_lt());
        assert!(Val::Missing.eq_query(&Val::Null));
        assert!(!Val::str("5").eq_query(&Val::Float(5.0)));
        let doc = Val::from_json(&serde_json::json!({"a": [{"b": 1}, {"b": 2}], "c": {"d": "x"}}));
        assert_eq!(
            doc.path(&["a", "b"]),
            Val::Arr(vec![Val::Int(1), Val::Int(2)])
        );
        assert_eq!(doc.path(&["a", "1", "b"]), Val::Int(2));
        assert_eq!(doc.path(&["c", "d"]), Val::str("x"));
        assert_eq!(doc.path(&["zz"]), Val::Missing);
    }
}
