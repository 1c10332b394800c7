//! The Kubernetes aggregated API `query.cost-analysis.spaceone.dev/v1`, reached through the
//! cluster's own API server so that kubectl works: discovery, `jobs` and `jobtasks` (get and list,
//! Table output, `limit`/`continue`, label and field selectors, a SpaceONE query in `?query=`) and
//! `jobstats` and `jobtaskstats` (create-only: POST a JobStat or JobTaskStat whose spec holds a
//! StatisticsQuery, get it back with the results in its status). Both resources are served by the
//! same handlers, generic over the kind ([`super::aggregated_kinds`]).
//! Every request is authorized with a SubjectAccessReview for the caller the aggregator vouches for.
//! The group's OpenAPI v2 and v3 documents ([`super::openapi`]) are served to any authenticated
//! caller, for the aggregator and `kubectl explain`.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use serde_json::{Value, json};

use super::aggregated_kinds::{GV, Kind, table, to_object};
use super::body::{query_pairs, read_json};
use super::caller::Caller;
use super::error::{ServiceError, kubernetes_status};
use super::field_selector::{FieldError, FieldSelector};
use super::label_selector::Selector;
use super::objects::Selection;
use super::service::JobService;
use crate::auth::{QUERY_GROUP as GROUP, QUERY_VERSION as VERSION, UserInfo};
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};

pub fn router() -> Router<JobService> {
    let base = "/apis/query.cost-analysis.spaceone.dev/v1";
    let router = Router::new()
        .route("/apis", get(group_list))
        .route("/apis/query.cost-analysis.spaceone.dev", get(group))
        .route(base, get(resources))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_discovery))
        .route(
            &format!("/openapi/v3/{}", super::openapi::V3_PATH),
            get(openapi_v3),
        );
    serve::<CostAnalysisJob>(serve::<CostAnalysisJobTask>(router, base), base)
}

/// The routes of one kind: list in every namespace and in one, get, and create of its stats.
fn serve<W: Kind>(router: Router<JobService>, base: &str) -> Router<JobService> {
    let (plural, stats) = (W::RESOURCE, W::STATS);
    router
        .route(&format!("{base}/{plural}"), get(list_all::<W>))
        .route(
            &format!("{base}/namespaces/{{ns}}/{plural}"),
            get(list_namespaced::<W>),
        )
        .route(
            &format!("{base}/namespaces/{{ns}}/{plural}/{{name}}"),
            get(get_one::<W>),
        )
        .route(
            &format!("{base}/namespaces/{{ns}}/{stats}"),
            post(create_stat::<W>),
        )
}

/// The group's OpenAPI documents, to any authenticated caller (as kube-apiserver serves its own:
/// the aggregator downloads them as `system:aggregator`).
async fn openapi_v2(State(s): State<JobService>, c: Caller) -> StatusReply {
    caller(&s, &c).await?;
    Ok(json_ok(super::openapi::v2().clone()))
}

async fn openapi_v3_discovery(State(s): State<JobService>, c: Caller) -> StatusReply {
    caller(&s, &c).await?;
    Ok(json_ok(super::openapi::v3_discovery()))
}

async fn openapi_v3(State(s): State<JobService>, c: Caller) -> StatusReply {
    caller(&s, &c).await?;
    Ok(json_ok(super::openapi::v3().clone()))
}

/// A `metav1.Status` failure, the error shape kubectl understands.
#[derive(Debug)]
pub struct StatusError {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl StatusError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        StatusError {
            code,
            reason,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
}

impl From<ServiceError> for StatusError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unauthenticated(m) => {
                Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", m)
            }
            ServiceError::Forbidden(d) => {
                let (resource, verb) = (d.resource, d.verb);
                let scope = d.namespace.map_or_else(
                    || "at the cluster scope".to_string(),
                    |n| format!("in the namespace \"{n}\""),
                );
                Self::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "{resource}.{GROUP} is forbidden: User \"{}\" cannot {verb} resource \"{resource}\" in API group \"{GROUP}\" {scope}",
                        d.user
                    ),
                )
            }
            ServiceError::NotFound { resource, name } => Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{resource}.{GROUP} \"{name}\" not found"),
            ),
            ServiceError::TooLarge { .. } => {
                let s = e.spaceone();
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    s.message,
                )
            }
            ServiceError::Unavailable(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", m)
            }
            ServiceError::Internal(m) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", m)
            }
            ServiceError::SpaceOne(e) => {
                let code = StatusCode::from_u16(e.grpc.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let reason = match code.as_u16() {
                    400 => "BadRequest",
                    404 => "NotFound",
                    503 => "ServiceUnavailable",
                    _ => "InternalError",
                };
                Self::new(code, reason, format!("{}: {}", e.code, e.message))
            }
        }
    }
}

impl IntoResponse for StatusError {
    fn into_response(self) -> Response {
        let body = kubernetes_status(self.code.as_u16(), self.reason, &self.message);
        (self.code, axum::Json(body)).into_response()
    }
}

type StatusReply = Result<Response, StatusError>;

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

async fn caller(s: &JobService, c: &Caller) -> Result<UserInfo, StatusError> {
    Ok(s.authenticate(c.peer(), c.headers()).await?)
}

async fn group_list(State(s): State<JobService>, c: Caller) -> StatusReply {
    caller(&s, &c).await?;
    Ok(json_ok(
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group_json()]}),
    ))
}

async fn group(State(s): State<JobService>, c: Caller) -> StatusReply {
    caller(&s, &c).await?;
    Ok(json_ok(group_json()))
}

fn group_json() -> Value {
    json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
        "versions": [{"groupVersion": GV, "version": VERSION}],
        "preferredVersion": {"groupVersion": GV, "version": VERSION},
    })
}

async fn resources(State(s): State<JobService>, c: Caller) -> StatusReply {
    caller(&s, &c).await?;
    Ok(json_ok(resource_list()))
}

pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV,
        "resources": [
            {"name": "jobs", "singularName": "job", "namespaced": true, "kind": "Job",
             "verbs": ["get", "list"], "categories": ["cost-analysis"], "shortNames": ["cajq"]},
            {"name": "jobstats", "singularName": "jobstat", "namespaced": true, "kind": "JobStat",
             "verbs": ["create"]},
            {"name": "jobtasks", "singularName": "jobtask", "namespaced": true, "kind": "JobTask",
             "verbs": ["get", "list"], "categories": ["cost-analysis"], "shortNames": ["cajtq"]},
            {"name": "jobtaskstats", "singularName": "jobtaskstat", "namespaced": true,
             "kind": "JobTaskStat", "verbs": ["create"]},
        ],
    })
}

#[derive(Default, Debug, PartialEq)]
pub struct ListOptions {
    label_selector: Selector,
    field_selector: FieldSelector,
    limit: Option<usize>,
    offset: usize,
    query: Option<Value>,
}

/// The options of a list of `W`: its field selectors name `W`'s fields.
pub fn list_options<W: Kind>(raw: Option<&str>) -> Result<ListOptions, StatusError> {
    let resource = W::RESOURCE;
    let mut o = ListOptions::default();
    let params = query_pairs(raw.unwrap_or(""));
    for (k, v) in params {
        match k.as_str() {
            "labelSelector" => {
                o.label_selector = Selector::parse(&v).map_err(StatusError::bad_request)?
            }
            "fieldSelector" => {
                o.field_selector = FieldSelector::parse_for::<W::Record>(&v).map_err(|e| {
                    let reason = match e {
                        FieldError::Invalid(m) => m,
                        FieldError::Unsupported(f) => {
                            format!("field label not supported: {f}")
                        }
                    };
                    // kube-apiserver's wording for a CRD, so kubectl users recognise it.
                    StatusError::bad_request(format!(
                        "Unable to find \"{GV}, Resource={resource}\" that match label selector \"\", field selector \"{v}\": {reason}"
                    ))
                })?
            }
            "limit" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| StatusError::bad_request(format!("invalid limit {v:?}")))?;
                o.limit = (n > 0).then_some(n);
            }
            "continue" if !v.is_empty() => o.offset = decode_continue(&v)?,
            "query" => {
                o.query = Some(serde_json::from_str(&v).map_err(|e| {
                    StatusError::bad_request(format!("query is not valid JSON: {e}"))
                })?)
            }
            "watch" if v == "true" || v == "1" => {
                return Err(StatusError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!(
                        "watch is not supported on {resource}.{GROUP}; watch {} instead",
                        W::CRD
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(o)
}

fn encode_continue(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"offset\":{offset}}}"))
}

fn decode_continue(token: &str) -> Result<usize, StatusError> {
    let bad = || {
        StatusError::new(
            StatusCode::GONE,
            "Expired",
            "the continue token is invalid; restart the list without it",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    v.get("offset")
        .and_then(Value::as_u64)
        .map(|o| o as usize)
        .ok_or_else(bad)
}

async fn list_all<W: Kind>(
    State(s): State<JobService>,
    RawQuery(q): RawQuery,
    c: Caller,
) -> StatusReply {
    list::<W>(&s, None, q, c).await
}

async fn list_namespaced<W: Kind>(
    State(s): State<JobService>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
    c: Caller,
) -> StatusReply {
    list::<W>(&s, Some(ns), q, c).await
}

async fn list<W: Kind>(
    s: &JobService,
    ns: Option<String>,
    raw: Option<String>,
    c: Caller,
) -> StatusReply {
    let user = caller(s, &c).await?;
    s.allow(&user, "list", W::RESOURCE, ns.as_deref(), None)
        .await?;
    let opts = list_options::<W>(raw.as_deref())?;
    let selection = Selection {
        query: opts.query,
        labels: opts.label_selector,
        fields: opts.field_selector,
        offset: opts.offset,
        limit: opts.limit,
    };
    let as_table = wants_table(c.headers());
    let answer = s.list_objects::<W, _, _>(&user, ns, selection, move |page| {
        let cont = (page.end < page.total).then(|| encode_continue(page.end));
        let mut meta = serde_json::Map::new();
        meta.insert("resourceVersion".into(), json!(""));
        if let Some(c) = cont {
            meta.insert("continue".into(), json!(c));
            meta.insert(
                "remainingItemCount".into(),
                json!(page.total.saturating_sub(page.end)),
            );
        }
        let meta = Value::Object(meta);
        let body = if as_table {
            table::<W>(&page.items, meta)
        } else {
            let items: Vec<Value> = page.items.iter().map(to_object::<W>).collect();
            let kind = format!("{}List", W::KIND);
            json!({"kind": kind, "apiVersion": GV, "metadata": meta, "items": items})
        };
        super::rest::json_text(&body)
    });
    Ok(super::rest::encoded_with(StatusCode::OK, answer.await?))
}

async fn get_one<W: Kind>(
    State(s): State<JobService>,
    Path((ns, name)): Path<(String, String)>,
    c: Caller,
) -> StatusReply {
    let user = caller(&s, &c).await?;
    let object = s.get_object::<W>(&user, ns, name).await?;
    if wants_table(c.headers()) {
        let meta = json!({"resourceVersion": ""});
        return Ok(json_ok(table::<W>(std::slice::from_ref(&object), meta)));
    }
    Ok(json_ok(to_object::<W>(&object)))
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table"))
}

/// POST a JobStat (JobTaskStat): `spec.query` is a SpaceONE StatisticsQuery, `spec.domainId`
/// optionally limits it to one domain; the answer is the same object with `status` holding the
/// results.
async fn create_stat<W: Kind>(
    State(s): State<JobService>,
    Path(ns): Path<String>,
    c: Caller,
    body: axum::body::Body,
) -> StatusReply {
    let user = caller(&s, &c).await?;
    s.allow(&user, "create", W::STATS, Some(&ns), None).await?;
    let kind = W::STAT_KIND;
    let body = read_json(&c, body).await.map_err(|e| match e {
        ServiceError::SpaceOne(e) => StatusError::bad_request(e.message),
        e => StatusError::from(e),
    })?;
    if body
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k != kind)
    {
        return Err(StatusError::bad_request(format!("kind must be {kind}")));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let Some(query) = spec.get("query").cloned() else {
        return Err(StatusError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{kind}.spec.query: Required value"),
        ));
    };
    let domains = match spec.get("domainId") {
        None => None,
        Some(Value::String(d)) => Some(vec![d.clone()]),
        Some(_) => {
            return Err(StatusError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{kind}.spec.domainId: must be a string"),
            ));
        }
    };
    let mut meta = match body.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    meta.insert("namespace".into(), json!(ns));
    meta.insert(
        "creationTimestamp".into(),
        json!(Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    );
    let answer = s.stat_objects::<W, _, _>(&user, ns, domains, query, move |result| {
        super::rest::json_text(&json!({"apiVersion": GV, "kind": kind, "metadata": meta, "spec": spec, "status": result}))
    });
    Ok(super::rest::encoded_with(
        StatusCode::CREATED,
        answer.await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_expired() {
        assert_eq!(decode_continue(&encode_continue(42)).ok(), Some(42));
        assert!(decode_continue("!!!").is_err());
        assert!(
            decode_continue(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{}"))
                .is_err()
        );
    }

    #[test]
    fn list_options_parse() {
        let o = list_options::<CostAnalysisJob>(Some("limit=5&labelSelector=a%3Db&query=%7B%7D"))
            .map_err(|e| e.message)
            .expect("ok");
        assert_eq!(o.limit, Some(5));
        assert_eq!(o.query, Some(json!({})));
        assert!(!o.label_selector.is_empty());
        let jobs = list_options::<CostAnalysisJob>;
        assert!(jobs(Some("limit=x")).is_err());
        assert!(jobs(Some("watch=true")).is_err());
        assert!(jobs(Some("labelSelector=a%20in%20b")).is_err());
    }

    #[test]
    fn task_lists_select_by_the_task_crds_fields() {
        let tasks = list_options::<CostAnalysisJobTask>;
        let o = tasks(Some(
            "fieldSelector=spec.jobName%3Djob-a1%2Cstatus.status%3DPENDING",
        ))
        .map_err(|e| e.message)
        .expect("ok");
        assert!(!o.field_selector.is_empty());
        let refused = tasks(Some("fieldSelector=spec.domainId%3Dd1")).unwrap_err();
        assert_eq!(refused.code, StatusCode::BAD_REQUEST);
        assert!(
            refused
                .message
                .contains("Resource=jobtasks\" that match label selector \"\", field selector \"spec.domainId=d1\": field label not supported: spec.domainId"),
            "{}",
            refused.message
        );
        // A job's selectable field is not a task's, and the other way round.
        assert!(list_options::<CostAnalysisJob>(Some("fieldSelector=spec.jobName%3Dx")).is_err());
        let watch = tasks(Some("watch=1")).unwrap_err();
        assert!(
            watch.message.contains("costanalysisjobtasks"),
            "{}",
            watch.message
        );
    }

    #[test]
    fn discovery_lists_both_kinds_and_their_stats() {
        let list = resource_list();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(names, ["jobs", "jobstats", "jobtasks", "jobtaskstats"]);
        assert_eq!(list["resources"][2]["kind"], "JobTask");
        assert_eq!(list["resources"][3]["verbs"], json!(["create"]));
    }
}
