//! Decoding HTTP requests into the Job service's requests: JSON bodies (bounded in size and
//! time) and grpc-gateway style query strings. Shared by the REST and aggregated adapters.

use axum::body::Body;
use serde_json::{Map, Value};

use super::caller::Caller;
use super::error::ServiceError;

/// Largest request body accepted; SpaceONE queries are small.
pub const MAX_BODY: usize = 1 << 20;
/// How much of an oversized body is read and discarded before the connection is given up.
const DRAIN_LIMIT: usize = 1 << 30;
/// How long a body may take to arrive (an oversized one is then cut off, a normal one refused).
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(20);

/// Reads a JSON body: empty means `{}`; too large, not JSON or not an object is refused clearly.
/// An oversized body is still read and discarded (up to [`DRAIN_LIMIT`] bytes and [`DRAIN_TIME`]),
/// so that the client gets to read the 413: curl and other HTTP/2 clients drop an answer whose
/// stream is reset while they are still sending, and HTTP/1.1 clients see a closed connection.
/// Nothing beyond [`MAX_BODY`] is kept in memory.
pub async fn read_json(c: &Caller, body: Body) -> Result<Value, ServiceError> {
    use futures::StreamExt;
    let declared = c
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    let now = tokio::time::Instant::now();
    let deadline = now.checked_add(DRAIN_TIME).unwrap_or(now);
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            // Only an oversized body is worth waiting this long for; cut it off.
            Err(_) if seen > MAX_BODY => break,
            Err(_) => return Err(ServiceError::invalid_parameter("body", "not sent in time")),
        };
        let Some(chunk) = next else { break };
        let chunk = chunk
            .map_err(|e| ServiceError::invalid_parameter("body", &format!("unreadable: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY && declared.is_none_or(|d| d <= MAX_BODY) {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_BODY || declared.is_some_and(|d| d > MAX_BODY) {
        return Err(ServiceError::TooLarge { limit: MAX_BODY });
    }
    parse_body(&bytes)
}

/// A request body: empty means `{}`; anything but a JSON object is refused. serde_json bounds
/// nesting (128 levels), so no body can exhaust the stack.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ServiceError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ServiceError::invalid_parameter("body", &format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ServiceError::invalid_parameter(
            "body",
            "must be a JSON object",
        ));
    }
    Ok(value)
}

/// The request of a path-addressed call (`/job/{job_id}`, `/job/{job_id}/cancel`,
/// `/job-task/{job_task_id}`): the body's fields, then the query string's (already decoded by
/// [`query_params`]), then the path's id under `key`.
pub fn path_request_of(
    key: &str,
    id: String,
    query: Map<String, Value>,
    body: Value,
) -> Result<Value, ServiceError> {
    let mut body = match body {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => {
            return Err(ServiceError::invalid_parameter(
                "body",
                "must be a JSON object",
            ));
        }
    };
    body.extend(query);
    body.insert(key.into(), Value::String(id));
    Ok(Value::Object(body))
}

/// Query parameters in grpc-gateway style: `domain_id=d&status=FAILURE&only=a&only=b`, nested
/// fields as `query.page.limit=10`, or the whole query as JSON in `query={...}`.
pub fn query_params(raw: &str) -> Result<Map<String, Value>, ServiceError> {
    let mut out = Map::new();
    for (key, value) in query_pairs(raw) {
        let parsed = match key.as_str() {
            "query" => serde_json::from_str(&value).map_err(|e| {
                ServiceError::invalid_parameter("query", &format!("invalid JSON: {e}"))
            })?,
            "query.page.start" | "query.page.limit" => {
                value.parse::<u64>().map(Value::from).map_err(|_| {
                    ServiceError::invalid_parameter(&key, "must be a non-negative integer")
                })?
            }
            "query.minimal" | "query.count_only" | "query.sort.desc" => match value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    return Err(ServiceError::invalid_parameter(
                        &key,
                        "must be true or false",
                    ));
                }
            },
            _ => Value::String(value),
        };
        let repeated = matches!(key.as_str(), "only" | "query.only");
        insert_path(&mut out, &key, parsed, repeated)?;
    }
    Ok(out)
}

fn insert_path(
    out: &mut Map<String, Value>,
    key: &str,
    value: Value,
    repeated: bool,
) -> Result<(), ServiceError> {
    let mut parts = key.split('.').peekable();
    let mut map = out;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            if repeated {
                match map
                    .entry(part.to_string())
                    .or_insert_with(|| Value::Array(vec![]))
                {
                    Value::Array(a) => a.push(value),
                    _ => return Err(ServiceError::invalid_parameter(key, "given twice")),
                }
            } else if map.insert(part.to_string(), value).is_some() {
                return Err(ServiceError::invalid_parameter(key, "given twice"));
            }
            return Ok(());
        }
        map = match map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(m) => m,
            _ => {
                return Err(ServiceError::invalid_parameter(
                    key,
                    "conflicts with another parameter",
                ));
            }
        };
    }
    Ok(())
}

pub fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                crate::percent::decode(k, true),
                crate::percent::decode(v, true),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_params_follow_grpc_gateway_conventions() {
        let m = query_params("domain_id=d-1&status=FAILURE&query.page.limit=2&query.page.start=3&only=job_id&only=status&query.minimal=true")
            .expect("parses");
        assert_eq!(
            Value::Object(m),
            json!({"domain_id": "d-1", "status": "FAILURE", "only": ["job_id", "status"],
                   "query": {"page": {"limit": 2, "start": 3}, "minimal": true}})
        );
        let m =
            query_params("query=%7B%22keyword%22%3A%22a%20b%22%7D&domain_id=x+y").expect("parses");
        assert_eq!(
            Value::Object(m),
            json!({"query": {"keyword": "a b"}, "domain_id": "x y"})
        );
    }

    #[test]
    fn bad_query_params_are_refused() {
        assert!(query_params("query.page.limit=-1").is_err());
        assert!(query_params("query={").is_err());
        assert!(query_params("domain_id=a&domain_id=b").is_err());
        assert!(query_params("query.minimal=yes").is_err());
        assert!(query_params("query=1&query.page.limit=2").is_err());
    }
}
