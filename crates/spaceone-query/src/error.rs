//! SpaceONE errors: the code (the Python class name), the message template, and the gRPC status
//! that decides the HTTP status on REST.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    /// The server cannot take the call now (overload, an authenticator that does not answer).
    Unavailable,
    Internal,
}

impl GrpcCode {
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::Internal => "INTERNAL",
        }
    }

    /// SpaceONE's REST gateway status map.
    pub fn http_status(self) -> u16 {
        match self {
            GrpcCode::InvalidArgument => 400,
            GrpcCode::NotFound => 404,
            GrpcCode::AlreadyExists => 409,
            GrpcCode::PermissionDenied => 403,
            GrpcCode::Unauthenticated => 401,
            GrpcCode::Unavailable => 503,
            GrpcCode::Internal => 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub code: &'static str,
    pub message: String,
    pub grpc: GrpcCode,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

fn err(code: &'static str, grpc: GrpcCode, message: String) -> Error {
    Error {
        code,
        message,
        grpc,
    }
}

impl Error {
    pub fn required_parameter(key: &str) -> Error {
        err(
            "ERROR_REQUIRED_PARAMETER",
            GrpcCode::InvalidArgument,
            format!("Required parameter. (key = {key})"),
        )
    }
    pub fn invalid_parameter_type(key: &str, ty: &str) -> Error {
        err(
            "ERROR_INVALID_PARAMETER_TYPE",
            GrpcCode::InvalidArgument,
            format!("Parameter type is invalid. (key = {key}, type = {ty})"),
        )
    }
    pub fn invalid_parameter(key: &str, reason: &str) -> Error {
        err(
            "ERROR_INVALID_PARAMETER",
            GrpcCode::InvalidArgument,
            format!("Parameter is invalid. (key = {key}, reason = {reason})"),
        )
    }
    pub fn operator_list_value_type(operator: &str, condition: &str) -> Error {
        err(
            "ERROR_OPERATOR_LIST_VALUE_TYPE",
            GrpcCode::InvalidArgument,
            format!("The value of '{operator} operator' must be a list type. ({condition})"),
        )
    }
    pub fn operator_value_type(operator: &str, condition: &str) -> Error {
        err(
            "ERROR_OPERATOR_VALUE_TYPE",
            GrpcCode::InvalidArgument,
            format!("The value of '{operator} operator' does not support list type. ({condition})"),
        )
    }
    pub fn operator_dict_value_type(operator: &str, condition: &str) -> Error {
        err(
            "ERROR_OPERATOR_DICT_VALUE_TYPE",
            GrpcCode::InvalidArgument,
            format!("The value of '{operator} operator' must be a dictionary type. ({condition})"),
        )
    }
    pub fn operator_boolean_type(operator: &str, condition: &str) -> Error {
        err(
            "ERROR_OPERATOR_BOOLEAN_TYPE",
            GrpcCode::InvalidArgument,
            format!("The value of '{operator} operator' must be a boolean type. ({condition})"),
        )
    }
    /// The seed's NOT_FOUND (spaceone-core 1.8.8): INVALID_ARGUMENT, "Value not found.".
    pub fn not_found(keys: &[&str], values: &[&str]) -> Error {
        let (k, v) = if let ([key], [value]) = (keys, values) {
            (py_str(key), py_str(value))
        } else {
            let k: Vec<String> = keys.iter().map(|k| py_str(k)).collect();
            let v: Vec<String> = values.iter().map(|v| py_str(v)).collect();
            (format!("({})", k.join(", ")), format!("({})", v.join(", ")))
        };
        err(
            "ERROR_NOT_FOUND",
            GrpcCode::InvalidArgument,
            format!("Value not found. ({k} = {v})"),
        )
    }
    /// A filter condition's operator outside `supported`, which the reference lists as a
    /// Python `dict_keys` of str.
    pub(crate) fn filter_operator_not_supported(supported: &[&str]) -> Error {
        Error::db_query(format!(
            "Filter operator is not supported. (operator = dict_keys([{}]))",
            py_str_list(supported)
        ))
    }
    /// A stat stage's condition (`location`, e.g. `aggregate.group.fields`) with an operator
    /// outside `supported`, which the reference lists as a Python list of str.
    pub(crate) fn stage_operator_not_supported(
        location: &str,
        operator: &str,
        supported: &[&str],
    ) -> Error {
        Error::db_query(format!(
            "'{location}' condition's {operator} operator is not supported. (supported_operator = [{}])",
            py_str_list(supported)
        ))
    }
    pub fn unknown(message: impl Into<String>) -> Error {
        err("ERROR_UNKNOWN", GrpcCode::Internal, message.into())
    }
    pub fn db_query(reason: impl std::fmt::Display) -> Error {
        err(
            "ERROR_DB_QUERY",
            GrpcCode::Internal,
            format!("Database query failed. (reason = {reason})"),
        )
    }
    pub fn locator(name: &str, reason: &str) -> Error {
        err(
            "ERROR_LOCATOR",
            GrpcCode::Internal,
            format!("'{name}' load failed. (reason = {reason})"),
        )
    }

    /// How MongoModel.stat re-raises anything raised while building or running the pipeline:
    /// the message becomes the reason of a new ERROR_DB_QUERY.
    pub fn rewrap_db_query(self) -> Error {
        Error::db_query(self.message)
    }
}

/// The items of a Python list of str as `repr` prints them, without the brackets: `'a', 'b'`.
fn py_str_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| py_str(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Python's `repr` of a str.
pub fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len().saturating_add(2));
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr` of a float.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Python's `repr` of a value as protobuf's MessageToDict produces it (numbers are floats).
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => py_float(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => py_str(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `repr` of a message dict whose fields come out in proto field order (`order`), aliases kept as
/// the caller spelled them.
pub fn py_repr_ordered(v: &Value, order: &[&str]) -> String {
    let Some(m) = v.as_object() else {
        return py_repr(v);
    };
    let mut parts: Vec<String> = Vec::new();
    for key in order {
        if let Some(val) = m.get(*key) {
            parts.push(format!("{}: {}", py_str(key), py_repr(val)));
        }
    }
    for (k, val) in m {
        if !order.contains(&k.as_str()) {
            parts.push(format!("{}: {}", py_str(k), py_repr(val)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_reprs() {
        assert_eq!(py_float(5.0), "5.0");
        assert_eq!(py_float(2.5), "2.5");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_str("it's"), "\"it's\"");
        assert_eq!(
            py_repr(&json!({"k": "status", "v": ["A", 1, true, null]})),
            "{'k': 'status', 'v': ['A', 1.0, True, None]}"
        );
        assert_eq!(
            py_repr_ordered(
                &json!({"o": "in", "v": "FAILURE", "k": "status"}),
                &["key", "k", "value", "v", "operator", "o"]
            ),
            "{'k': 'status', 'v': 'FAILURE', 'o': 'in'}"
        );
        assert_eq!(
            Error::not_found(&["job_id", "domain_id"], &["nope", "domain-a"]).message,
            "Value not found. (('job_id', 'domain_id') = ('nope', 'domain-a'))"
        );
    }
}
