//! Reading request messages as protobuf delivers them to the reference: unknown fields refused,
//! each field's type checked (SpaceONE's error messages), and the `page` message.

use serde_json::{Map, Value};

use crate::error::Error;

#[derive(Clone, Debug, Default)]
pub(crate) struct Page {
    pub start: u64,
    pub limit: u64,
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
