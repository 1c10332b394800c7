//! The SpaceONE REST surface: the seed's paths (`GET /cost-analysis/v1/job/{job_id}`, ...) and the
//! later `POST /cost-analysis/v1/job/{verb}` form. Handlers authenticate, authorize the domain,
//! hand the request to the query engine and encode its answer; cancel is the one write.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Map, Value, json};

use super::ApiState;
use super::aggregated::Caller;
use super::error::ApiError;
use super::index::record;
use crate::auth::{ResourceAttrs, UserInfo};
use crate::resources::CostAnalysisJob;

/// Who wrote a cancel, in the job's managedFields.
pub const API_FIELD_MANAGER: &str = "cost-analysis-operator-api";

/// Largest request body accepted; SpaceONE queries are small.
pub const MAX_BODY: usize = 1 << 20;
/// How much of an oversized body is read and discarded before the connection is given up.
const DRAIN_LIMIT: usize = 1 << 30;
/// How long a body may take to arrive (an oversized one is then cut off, a normal one refused).
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(20);

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/cost-analysis/v1/job/get", post(get_body))
        .route("/cost-analysis/v1/job/list", post(list_body))
        .route("/cost-analysis/v1/job/stat", post(stat_body))
        .route("/cost-analysis/v1/job/cancel", post(cancel_body))
        .route("/cost-analysis/v1/job/{job_id}", get(get_path))
        .route("/cost-analysis/v1/job/{job_id}/cancel", post(cancel_path))
        .route("/cost-analysis/v1/jobs", get(list_query))
        .route("/cost-analysis/v1/jobs/search", post(list_body))
        .route("/cost-analysis/v1/jobs/stat", post(stat_body))
}

type Answer = Result<Response, ApiError>;

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn encoded(answer: spaceone_query::api::Encoded) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer.0,
    )
        .into_response()
}

async fn get_body(State(s): State<ApiState>, c: Caller, body: Body) -> Answer {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(get_job(&s, &user, body).await?))
}

async fn list_body(State(s): State<ApiState>, c: Caller, body: Body) -> Answer {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(encoded(list(&s, &user, body).await?))
}

async fn stat_body(State(s): State<ApiState>, c: Caller, body: Body) -> Answer {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(stat(&s, &user, body).await?))
}

async fn cancel_body(State(s): State<ApiState>, c: Caller, body: Body) -> Answer {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(cancel(&s, &user, body).await?))
}

async fn get_path(
    State(s): State<ApiState>,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> Answer {
    let user = authenticate(&s, &c).await?;
    let request = path_request(
        job_id,
        query_params(query.as_deref().unwrap_or(""))?,
        Value::Null,
    )?;
    Ok(ok(get_job(&s, &user, request).await?))
}

async fn cancel_path(
    State(s): State<ApiState>,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
    c: Caller,
    body: Body,
) -> Answer {
    let query = query_params(query.as_deref().unwrap_or(""))?;
    let (user, body) = authenticated_body(&s, &c, body).await?;
    let request = path_request(job_id, query, body)?;
    Ok(ok(cancel(&s, &user, request).await?))
}

async fn list_query(State(s): State<ApiState>, RawQuery(query): RawQuery, c: Caller) -> Answer {
    let user = authenticate(&s, &c).await?;
    let body = query_params(query.as_deref().unwrap_or(""))?;
    Ok(encoded(list(&s, &user, Value::Object(body)).await?))
}

async fn authenticate(s: &ApiState, c: &Caller) -> Result<UserInfo, ApiError> {
    Ok(s.auth.authenticate(c.peer(), c.headers()).await?)
}

async fn authenticated_body(
    s: &ApiState,
    c: &Caller,
    body: Body,
) -> Result<(UserInfo, Value), ApiError> {
    let user = authenticate(s, c).await?;
    let body = read_json(c, body).await?;
    Ok((user, body))
}

/// Reads a JSON body: empty means `{}`; too large, not JSON or not an object is refused clearly.
/// An oversized body is still read and discarded (up to [`DRAIN_LIMIT`] bytes and [`DRAIN_TIME`]),
/// so that the client gets to read the 413: curl and other HTTP/2 clients drop an answer whose
/// stream is reset while they are still sending, and HTTP/1.1 clients see a closed connection.
/// Nothing beyond [`MAX_BODY`] is kept in memory.
pub async fn read_json(c: &Caller, body: Body) -> Result<Value, ApiError> {
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
            Err(_) => return Err(ApiError::invalid_parameter("body", "not sent in time")),
        };
        let Some(chunk) = next else { break };
        let chunk =
            chunk.map_err(|e| ApiError::invalid_parameter("body", &format!("unreadable: {e}")))?;
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY && declared.is_none_or(|d| d <= MAX_BODY) {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > MAX_BODY || declared.is_some_and(|d| d > MAX_BODY) {
        return Err(too_large());
    }
    parse_body(&bytes)
}

/// A request body: empty means `{}`; anything but a JSON object is refused. serde_json bounds
/// nesting (128 levels), so no body can exhaust the stack.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid_parameter("body", &format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid_parameter("body", "must be a JSON object"));
    }
    Ok(value)
}

/// The request of a path-addressed call (`/job/{job_id}`, `/job/{job_id}/cancel`): the body's
/// fields, then the query string's (already decoded by [`query_params`]), then the path's job id.
pub fn path_request(
    job_id: String,
    query: Map<String, Value>,
    body: Value,
) -> Result<Value, ApiError> {
    let mut body = match body {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        _ => return Err(ApiError::invalid_parameter("body", "must be a JSON object")),
    };
    body.extend(query);
    body.insert("job_id".into(), Value::String(job_id));
    Ok(Value::Object(body))
}

fn too_large() -> ApiError {
    ApiError::new(
        "ERROR_INVALID_PARAMETER",
        format!("Parameter is invalid. (key = body, reason = larger than {MAX_BODY} bytes)"),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
}

/// Query parameters in grpc-gateway style: `domain_id=d&status=FAILURE&only=a&only=b`, nested
/// fields as `query.page.limit=10`, or the whole query as JSON in `query={...}`.
pub fn query_params(raw: &str) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for (key, value) in query_pairs(raw) {
        let parsed = match key.as_str() {
            "query" => serde_json::from_str(&value)
                .map_err(|e| ApiError::invalid_parameter("query", &format!("invalid JSON: {e}")))?,
            "query.page.start" | "query.page.limit" => value
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| ApiError::invalid_parameter(&key, "must be a non-negative integer"))?,
            "query.minimal" | "query.count_only" | "query.sort.desc" => match value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(ApiError::invalid_parameter(&key, "must be true or false")),
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
) -> Result<(), ApiError> {
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
                    _ => return Err(ApiError::invalid_parameter(key, "given twice")),
                }
            } else if map.insert(part.to_string(), value).is_some() {
                return Err(ApiError::invalid_parameter(key, "given twice"));
            }
            return Ok(());
        }
        map = match map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
        {
            Value::Object(m) => m,
            _ => {
                return Err(ApiError::invalid_parameter(
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

/// The domain a request names, if it names one as a string.
fn domain_of(request: &Value) -> Option<String> {
    request
        .get("domain_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Authorizes reading (`get`) or canceling (`cancel`) in the request's domain and returns the scope
/// the engine may look at: that one domain, or nothing when the request names none (the engine then
/// reports the missing parameter).
async fn domain_scope(
    s: &ApiState,
    user: &UserInfo,
    verb: &str,
    request: &Value,
) -> Result<spaceone_query::Scope, ApiError> {
    let Some(domain) = domain_of(request) else {
        return Ok(spaceone_query::Scope {
            namespace: None,
            domains: Some(vec![]),
        });
    };
    if !s
        .auth
        .authorize(user, ResourceAttrs::domain(verb, &domain))
        .await?
    {
        return Err(ApiError::permission_denied());
    }
    Ok(spaceone_query::Scope {
        namespace: None,
        domains: Some(vec![domain]),
    })
}

/// Authorizes reading the request's domain, then answers from the index on the query pool.
async fn read<F, A>(s: &ApiState, user: &UserInfo, request: Value, call: F) -> Result<A, ApiError>
where
    F: FnOnce(
            &spaceone_query::Index,
            &spaceone_query::Scope,
            &Value,
            &spaceone_query::Limits,
        ) -> Result<A, spaceone_query::Error>
        + Send
        + 'static,
    A: Send + 'static,
{
    let scope = domain_scope(s, user, "get", &request).await?;
    let (index, limits) = (s.index.clone(), s.limits.clone());
    let answer = s
        .pool
        .run(move || call(&index.read().jobs, &scope, &request, &limits))
        .await?;
    Ok(answer?)
}

pub(crate) async fn get_job(
    s: &ApiState,
    user: &UserInfo,
    request: Value,
) -> Result<Value, ApiError> {
    read(s, user, request, |i, sc, r, _| {
        spaceone_query::api::get(i, sc, r)
    })
    .await
}

pub(crate) async fn list(
    s: &ApiState,
    user: &UserInfo,
    request: Value,
) -> Result<spaceone_query::api::Encoded, ApiError> {
    read(s, user, request, |i, sc, r, limits| {
        spaceone_query::api::list_as(i, sc, r, Utc::now(), limits)
    })
    .await
}

pub(crate) async fn stat(s: &ApiState, user: &UserInfo, request: Value) -> Result<Value, ApiError> {
    read(s, user, request, |i, sc, r, limits| {
        spaceone_query::api::stat(i, sc, r, Utc::now(), limits)
    })
    .await
}

/// Cancels an IN_PROGRESS job synchronously. The status write is conditional on a
/// resourceVersion, so a cancel racing the controller's completion ends in exactly one terminal
/// state: whichever write lands first wins, the loser re-reads, and the answer is the truth (the
/// CANCELED job, or ERROR_JOB_STATE naming the state that won).
///
/// The first attempt writes from the index's copy of the job (one round trip); only when that copy
/// is stale (409) is the job read fresh and the write retried. A terminal state in the index is
/// final, so it is answered without a round trip.
pub(crate) async fn cancel(
    s: &ApiState,
    user: &UserInfo,
    request: Value,
) -> Result<Value, ApiError> {
    let fields = request.as_object().into_iter().flat_map(|m| m.keys());
    if let Some(unknown) = fields
        .into_iter()
        .find(|k| !matches!(k.as_str(), "job_id" | "domain_id"))
    {
        return Err(ApiError::invalid_parameter(unknown, "unknown field"));
    }
    let scope = domain_scope(s, user, "cancel", &request).await?;
    let scope_again = scope.clone();
    let job_id = request
        .get("job_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let domain = domain_of(&request).unwrap_or_default();
    let (index, lookup) = (s.index.clone(), request.clone());
    let (id, dom) = (job_id.clone(), domain.clone());
    let known = s
        .pool
        .run(move || known_copies(&index, &scope, &lookup, &id, &dom))
        .await??;
    for (ns, known) in known {
        let api: Api<CostAnalysisJob> = Api::namespaced(s.client.clone(), &ns);
        match known {
            Known::OtherDomain => continue,
            Known::Final(state) => return Err(ApiError::job_state(state.as_str())),
            Known::Live(live) => {
                let created = live.created.unwrap_or_else(Utc::now);
                let written = apply_cancel(
                    &api,
                    &job_id,
                    &live.resource_version,
                    live.status.as_ref(),
                    live.generation,
                    created,
                )
                .await?;
                if let Some(updated) = written {
                    return Ok(s.canceled(updated).await);
                }
            }
        }
        for _attempt in 0..10 {
            let Some(job) = api.get_opt(&job_id).await.map_err(kube_error)? else {
                break;
            };
            if job.spec.domain_id != domain {
                break;
            }
            let created = job
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(crate::timestamp::from_k8s)
                .unwrap_or_else(Utc::now);
            let rv = job.metadata.resource_version.clone().unwrap_or_default();
            let written = apply_cancel(
                &api,
                &job_id,
                &rv,
                job.status.as_ref(),
                job.metadata.generation,
                created,
            )
            .await?;
            if let Some(updated) = written {
                return Ok(s.canceled(updated).await);
            }
        }
    }
    // The job vanished between the index lookup and the write.
    let index = s.index.clone();
    s.pool
        .run(move || spaceone_query::api::get(&index.read().jobs, &scope_again, &request))
        .await??;
    Err(ApiError::unknown(
        "the job changed too often to be canceled; try again",
    ))
}

/// The index's copies of `job_id` in every namespace that holds one, for a cancel. Existence and
/// required parameters are judged exactly as `get` judges them.
fn known_copies(
    index: &super::JobIndex,
    scope: &spaceone_query::Scope,
    request: &Value,
    job_id: &str,
    domain: &str,
) -> Result<Vec<(String, Known)>, ApiError> {
    let store = index.read();
    spaceone_query::api::get(&store.jobs, scope, request)?;
    Ok(store
        .namespaces_of(job_id)
        .iter()
        .map(|ns| {
            let known = match (store.live(ns, job_id), store.jobs.get(ns, job_id)) {
                (Some(live), _) if live.domain_id == domain => Known::Live(Box::new(live.clone())),
                (None, Some(job)) if job.domain_id == domain => Known::Final(job.status),
                _ => Known::OtherDomain,
            };
            (ns.clone(), known)
        })
        .collect())
}

/// What the index knows of a job in one namespace, for a cancel.
enum Known {
    Live(Box<crate::api::index::Live>),
    Final(spaceone_query::JobStatus),
    OtherDomain,
}

/// Writes the CANCELED status computed from `status` if the job is still at `resource_version`.
/// `Ok(None)`: it is not (409) or is gone (404): read it again. A job no longer in progress is ERROR_JOB_STATE.
async fn apply_cancel(
    api: &Api<CostAnalysisJob>,
    job_id: &str,
    resource_version: &str,
    status: Option<&crate::resources::CostAnalysisJobStatus>,
    generation: Option<i64>,
    created: chrono::DateTime<Utc>,
) -> Result<Option<CostAnalysisJob>, ApiError> {
    let status = crate::lifecycle::cancel(status, generation, created, Utc::now())
        .map_err(|state| ApiError::job_state(state.as_str()))?;
    // A merge patch that names a resourceVersion is conditional on it (409 otherwise). It is
    // one plain PATCH: cheaper for the API server than a server-side apply, and the status it
    // carries is whole (lifecycle::cancel keeps every field), so nothing else is touched. The
    // controller's next apply (forced) takes the fields' ownership back.
    let patch = json!({
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    let params = PatchParams {
        field_manager: Some(API_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch_status(job_id, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(updated) => Ok(Some(updated)),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(None),
        Err(e) => Err(kube_error(e)),
    }
}

impl ApiState {
    /// Records a cancel the shim wrote, so that the next answer already reflects it.
    async fn canceled(&self, updated: CostAnalysisJob) -> Value {
        let info = spaceone_query::api::job_info(&record(&updated));
        self.index.observe_write(updated).await;
        self.metrics_cancels();
        info
    }
}

fn kube_error(e: kube::Error) -> ApiError {
    ApiError::unknown(format!("kubernetes API: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects
    )]
    use super::*;

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
