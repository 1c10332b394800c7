//! Document values with MongoDB's semantics: missing versus null, numbers compared by value across
//! int and float, and the BSON order between types used by sorting, `$max`/`$min` and comparisons.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use crate::time::Millis;

#[derive(Clone, Debug, PartialEq)]
pub enum Bson {
    Missing,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<str>),
    Date(Millis),
    Arr(Vec<Bson>),
    Obj(Vec<(Arc<str>, Bson)>),
}

impl Bson {
    pub fn str(s: &str) -> Bson {
        Bson::Str(Arc::from(s))
    }

    pub fn is_nullish(&self) -> bool {
        matches!(self, Bson::Missing | Bson::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Bson::Int(i) => Some(*i as f64),
            Bson::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Approximate heap and inline bytes of the value, counted conservatively: shared strings
    /// (`Arc`) as if each copy owned them.
    pub fn approx_bytes(&self) -> usize {
        const VAL: usize = std::mem::size_of::<Bson>();
        match self {
            Bson::Str(s) => VAL.saturating_add(s.len()),
            Bson::Arr(a) => a
                .iter()
                .fold(VAL, |n: usize, x| n.saturating_add(x.approx_bytes())),
            Bson::Obj(o) => o.iter().fold(VAL, |n: usize, (k, x)| {
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
            Bson::Missing | Bson::Null => 1,
            Bson::Int(_) | Bson::Float(_) => 2,
            Bson::Str(_) => 3,
            Bson::Obj(_) => 4,
            Bson::Arr(_) => 5,
            Bson::Bool(_) => 8,
            Bson::Date(_) => 9,
        }
    }

    /// Total order: type rank first, then value (numbers by value, strings bytewise).
    pub fn cmp_bson(&self, other: &Bson) -> Ordering {
        let (a, b) = (self.rank(), other.rank());
        if a != b {
            return a.cmp(&b);
        }
        match (self, other) {
            (Bson::Int(x), Bson::Int(y)) => x.cmp(y),
            (x @ (Bson::Int(_) | Bson::Float(_)), y) => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.partial_cmp(&y)
                    .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()).reverse())
            }
            (Bson::Str(x), Bson::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
            (Bson::Bool(x), Bson::Bool(y)) => x.cmp(y),
            (Bson::Date(x), Bson::Date(y)) => x.cmp(y),
            (Bson::Arr(x), Bson::Arr(y)) => {
                for (p, q) in x.iter().zip(y) {
                    let o = p.cmp_bson(q);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                x.len().cmp(&y.len())
            }
            (Bson::Obj(x), Bson::Obj(y)) => {
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
    pub fn eq_query(&self, other: &Bson) -> bool {
        if self.is_nullish() && other.is_nullish() {
            return true;
        }
        self.rank() == other.rank() && self.cmp_bson(other) == Ordering::Equal
    }

    /// A field path inside the value (`a.b.0.c`); arrays yield the array of the elements' values.
    ///
    /// The walk stops at the first segment the value does not have: a key path costs the depth it
    /// really reaches, not its length.
    pub fn path<S: AsRef<str>>(&self, path: &[S]) -> Bson {
        let Some((first, rest)) = path.split_first() else {
            return self.clone();
        };
        let first = first.as_ref();
        match self {
            Bson::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k.as_ref() == first)
                .map_or(Bson::Missing, |(_, v)| v.path(rest)),
            Bson::Arr(items) => {
                if let Ok(i) = first.parse::<usize>() {
                    return items.get(i).map_or(Bson::Missing, |v| v.path(rest));
                }
                let found: Vec<Bson> = items
                    .iter()
                    .map(|v| v.path(path))
                    .filter(|v| !matches!(v, Bson::Missing))
                    .collect();
                if found.is_empty() {
                    Bson::Missing
                } else {
                    Bson::Arr(found)
                }
            }
            _ => Bson::Missing,
        }
    }

    pub fn from_json(v: &Value) -> Bson {
        match v {
            Value::Null => Bson::Null,
            Value::Bool(b) => Bson::Bool(*b),
            Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Bson::Float(n.as_f64().unwrap_or(0.0)), Bson::Int),
            Value::String(s) => Bson::str(s),
            Value::Array(a) => Bson::Arr(a.iter().map(Bson::from_json).collect()),
            Value::Object(m) => Bson::Obj(
                m.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Bson::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A query value as protobuf delivers it: every number is a float.
    pub fn from_proto_json(v: &Value) -> Bson {
        match v {
            Value::Number(n) => Bson::Float(n.as_f64().unwrap_or(0.0)),
            Value::Array(a) => Bson::Arr(a.iter().map(Bson::from_proto_json).collect()),
            Value::Object(m) => Bson::Obj(
                m.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Bson::from_proto_json(v)))
                    .collect(),
            ),
            other => Bson::from_json(other),
        }
    }

    /// The value as a `google.protobuf.Struct` holds it: numbers become doubles; a datetime at the
    /// top level of a row becomes `isoformat()+"Z"` (the seed's `change_struct_type`), deeper down
    /// it cannot be converted.
    pub fn to_struct_json(&self, top_level: bool) -> Result<Value, ()> {
        Ok(match self {
            Bson::Missing | Bson::Null => Value::Null,
            Bson::Bool(b) => Value::Bool(*b),
            Bson::Int(i) => float_json(*i as f64),
            Bson::Float(f) => float_json(*f),
            Bson::Str(s) => Value::String(s.to_string()),
            Bson::Date(ms) if top_level => Value::String(crate::time::render_isoformat(*ms)),
            Bson::Date(_) => return Err(()),
            Bson::Arr(a) => Value::Array(
                a.iter()
                    .map(|v| v.to_struct_json(false))
                    .collect::<Result<_, _>>()?,
            ),
            Bson::Obj(o) => {
                let mut m = Map::new();
                for (k, v) in o {
                    if !matches!(v, Bson::Missing) {
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
        assert_eq!(Bson::Int(2).cmp_bson(&Bson::Float(2.0)), Ordering::Equal);
        assert!(Bson::Null.cmp_bson(&Bson::Int(0)).is_lt());
        assert!(Bson::Int(100).cmp_bson(&Bson::str("1")).is_lt());
        assert!(Bson::str("b").cmp_bson(&Bson::Date(0)).is_lt());
        assert!(Bson::Missing.eq_query(&Bson::Null));
        assert!(!Bson::str("5").eq_query(&Bson::Float(5.0)));
        let doc = Bson::from_json(&serde_json::json!({"a": [{"b": 1}, {"b": 2}], "c": {"d": "x"}}));
        assert_eq!(
            doc.path(&["a", "b"]),
            Bson::Arr(vec![Bson::Int(1), Bson::Int(2)])
        );
        assert_eq!(doc.path(&["a", "1", "b"]), Bson::Int(2));
        assert_eq!(doc.path(&["c", "d"]), Bson::str("x"));
        assert_eq!(doc.path(&["zz"]), Bson::Missing);
    }
}
