//! SpaceONE's own protocol: `spaceone.api.cost_analysis.v1.Job` and `...v1.JobTask` over gRPC
//! (tonic), with server reflection (v1alpha, which spacectl needs, and v1) and the standard
//! health service.
//!
//! The adapter only decodes, calls [`dispatch::call`] and encodes: a request message becomes the
//! JSON request the REST adapter passes ([`convert`], [`convert_task`]), the answer is
//! JobInfo / JobsInfo / JobTaskInfo / JobTasksInfo / `google.protobuf.Struct` bytes written
//! straight from the engine's fields ([`wire`]), and an error becomes the gRPC status of SpaceONE's table with the
//! details `"ERROR_CODE: message"`. The caller is the Kubernetes ServiceAccount token in the
//! `token` metadata (TokenReview, then the same per-domain SubjectAccessReview as REST).
//!
//! Served on the HTTPS port (requests with `content-type: application/grpc*` are routed here,
//! see [`routes`] and `api::run`) and, when asked for, on a plaintext HTTP/2 (h2c) port for
//! in-cluster SpaceONE services that dial `grpc://` (both by [`crate::server`]).

pub mod codec_errors;
pub mod convert;
pub mod convert_task;
pub mod dispatch;
pub mod pb;
pub mod status;
pub mod wire;

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::Value;
use tonic::{Request, Response, Status};

use super::answer_budget::{PermitSlot, hold_until_sent};
use super::error::ServiceError;
use super::service::Answered;
use super::service::JobService;
use crate::auth::{PeerIdentity, UserInfo};
use dispatch::{Answer, Method};
pub use status::{MAX_MESSAGE, SERVICE, TASK_SERVICE, status_of};
use wire::Proto;

use pb::job;

/// The Job and JobTask services: the adapter around [`dispatch::call`].
#[derive(Clone)]
pub struct JobGrpc {
    state: JobService,
    request_timeout: Duration,
}

/// The caller's `token` metadata, checked with a TokenReview (cached like REST's bearer tokens).
/// Identity headers never count on gRPC.
async fn caller(
    state: &JobService,
    metadata: &tonic::metadata::MetadataMap,
) -> Result<UserInfo, ServiceError> {
    let mut headers = HeaderMap::new();
    if let Some(token) = metadata
        .get("token")
        .and_then(|t| t.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let value = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ServiceError::Unauthenticated("malformed token".into()))?;
        headers.insert(axum::http::header::AUTHORIZATION, value);
    } else {
        return Err(ServiceError::Unauthenticated("no token metadata".into()));
    }
    state.authenticate(&PeerIdentity::default(), &headers).await
}

fn meta_domain(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    metadata
        .get("x_domain_id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

impl JobGrpc {
    pub fn new(state: JobService, request_timeout: Duration) -> Self {
        JobGrpc {
            state,
            request_timeout,
        }
    }

    /// Authenticates, builds the JSON request, calls the service within the time budget.
    async fn run<M>(
        &self,
        method: Method,
        request: Request<M>,
        decode: impl FnOnce(&M, Option<&str>) -> Value,
    ) -> Result<Answer, Status> {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(self.request_timeout, async {
            let user = caller(&self.state, request.metadata()).await?;
            let domain = meta_domain(request.metadata());
            let body = decode(request.get_ref(), domain.as_deref());
            dispatch::call(&self.state, &user, method, body).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(ServiceError::Unavailable(format!(
                "the request took longer than {}s",
                self.request_timeout.as_secs()
            )))
        });
        let code = match &answer {
            Ok(_) => 200,
            Err(e) => e.spaceone().grpc.http_status(),
        };
        let labels = crate::metrics::RequestLabels {
            route: format!("/{}/{}", method.service(), method.name()),
            code,
        };
        self.state
            .metrics()
            .api_requests
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let call = crate::metrics::outcomes::CallLabels {
            protocol: "grpc",
            method: method.label(),
            code: answer.as_ref().err().map_or("OK", |e| e.spaceone().code),
        };
        crate::telemetry::record_code(call.code);
        let metrics = &self.state.metrics().outcomes;
        metrics.call(&call, started.elapsed().as_secs_f64());
        answer.map_err(|e| status_of(&e))
    }
}

/// Where the answer's budget permit goes so that it is held until tonic has sent the message
/// (the routes' [`hold_until_sent`] layer put it there; a bare slot, in unit tests, just drops it).
fn permit_slot<M>(request: &Request<M>) -> PermitSlot {
    request
        .extensions()
        .get::<PermitSlot>()
        .cloned()
        .unwrap_or_default()
}

/// Runs `method` and answers its bytes, the budget permit of a list or stat held until tonic has
/// sent them.
async fn answer<M>(
    adapter: &JobGrpc,
    method: Method,
    request: Request<M>,
    decode: impl FnOnce(&M, Option<&str>) -> Value,
) -> Result<Response<Proto>, Status> {
    let slot = permit_slot(&request);
    Ok(Response::new(
        match adapter.run(method, request, decode).await? {
            Answer::Info(proto) => proto,
            Answer::Budgeted(Answered { answer, permit }) => {
                slot.put(permit);
                answer
            }
        },
    ))
}

#[tonic::async_trait]
impl pb::server::job_server::Job for JobGrpc {
    async fn cancel(&self, request: Request<job::JobRequest>) -> Result<Response<Proto>, Status> {
        answer(self, Method::Cancel, request, convert::request).await
    }

    async fn get(&self, request: Request<job::GetJobRequest>) -> Result<Response<Proto>, Status> {
        answer(self, Method::Get, request, convert::request).await
    }

    async fn list(&self, request: Request<job::JobQuery>) -> Result<Response<Proto>, Status> {
        answer(self, Method::List, request, convert::request).await
    }

    async fn stat(&self, request: Request<job::JobStatQuery>) -> Result<Response<Proto>, Status> {
        answer(self, Method::Stat, request, convert::request).await
    }
}

#[tonic::async_trait]
impl pb::server::job_task_server::JobTask for JobGrpc {
    async fn get(
        &self,
        request: Request<job::GetJobTaskRequest>,
    ) -> Result<Response<Proto>, Status> {
        answer(self, Method::TaskGet, request, convert::request).await
    }

    async fn list(&self, request: Request<job::JobTaskQuery>) -> Result<Response<Proto>, Status> {
        answer(self, Method::TaskList, request, convert::request).await
    }

    async fn stat(
        &self,
        request: Request<job::JobTaskStatQuery>,
    ) -> Result<Response<Proto>, Status> {
        answer(self, Method::TaskStat, request, convert::request).await
    }
}

/// The gRPC services of the API: Job, JobTask, health (SERVING) and reflection v1alpha and v1,
/// listing Job and JobTask (which resolve, with their imports). Errors tonic answers itself for
/// a Job or JobTask request get SpaceONE's shape ([`codec_errors`]).
pub fn routes(
    state: JobService,
    request_timeout: Duration,
) -> Result<axum::Router, Box<dyn std::error::Error + Send + Sync>> {
    let adapter = JobGrpc::new(state, request_timeout);
    let job = pb::server::job_server::JobServer::new(adapter.clone())
        .max_decoding_message_size(MAX_MESSAGE);
    let task = pb::server::job_task_server::JobTaskServer::new(adapter)
        .max_decoding_message_size(MAX_MESSAGE);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // The overall status ("") is SERVING from the start; the Job and JobTask services by name too.
    let reporter = health_reporter.clone();
    tokio::spawn(async move {
        reporter
            .set_serving::<pb::server::job_server::JobServer<JobGrpc>>()
            .await;
        reporter
            .set_serving::<pb::server::job_task_server::JobTaskServer<JobGrpc>>()
            .await;
    });
    // Only the application services are listed (Job and JobTask): spaceone-core 1.x clients
    // (spacectl 1.8) import a Python stub module for every listed service and fail on one
    // spaceone-api does not ship (1.8.7 ships job_pb2 and job_task_pb2); the health service's
    // descriptors are still served by symbol and file name.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .with_service_name(SERVICE)
            .with_service_name(TASK_SERVICE)
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1alpha = reflection().build_v1alpha()?;
    let v1 = reflection().build_v1()?;
    Ok(tonic::service::Routes::new(job)
        .add_service(task)
        .add_service(health)
        .add_service(v1alpha)
        .add_service(v1)
        .prepare()
        .into_axum_router()
        .layer(axum::middleware::from_fn(codec_errors::spaceone_shaped))
        .layer(axum::middleware::from_fn(hold_until_sent)))
}

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc<B>(request: &axum::http::Request<B>) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// One router for the HTTPS port: gRPC requests go to `grpc`, everything else to `rest`.
pub fn by_content_type(rest: axum::Router, grpc: axum::Router) -> axum::Router {
    use tower::ServiceExt;
    let dispatch = tower::service_fn(move |request: axum::extract::Request| {
        let target = if is_grpc(&request) {
            grpc.clone()
        } else {
            rest.clone()
        };
        target.oneshot(request)
    });
    axum::Router::new().fallback_service(dispatch)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use prost::Message;
    use serde_json::json;

    fn label(l: i32) -> &'static str {
        match l {
            1 => "optional",
            2 => "required",
            _ => "repeated",
        }
    }

    fn message(
        m: &prost_types::DescriptorProto,
        prefix: &str,
        messages: &mut serde_json::Map<String, Value>,
        enums: &mut serde_json::Map<String, Value>,
    ) {
        let full = format!("{prefix}.{}", m.name());
        let fields: Vec<Value> = m
            .field
            .iter()
            .map(|f| {
                json!({
                    "name": f.name(),
                    "number": f.number(),
                    "label": label(f.label.unwrap_or(1)),
                    "type": f.r#type().as_str_name(),
                    "type_name": f.type_name(),
                    "oneof": f.oneof_index.map(|i| m.oneof_decl[i as usize].name()),
                })
            })
            .collect();
        messages.insert(full.clone(), Value::Array(fields));
        for e in &m.enum_type {
            let values: serde_json::Map<String, Value> = e
                .value
                .iter()
                .map(|v| (v.name().to_string(), json!(v.number())))
                .collect();
            enums.insert(format!("{full}.{}", e.name()), Value::Object(values));
        }
        for n in &m.nested_type {
            message(n, &full, messages, enums);
        }
    }

    /// The same canonical form as hack/proto_published.py prints.
    fn canonical(fd: &prost_types::FileDescriptorProto) -> Value {
        let prefix = format!(".{}", fd.package());
        let (mut messages, mut enums) = (serde_json::Map::new(), serde_json::Map::new());
        for m in &fd.message_type {
            message(m, &prefix, &mut messages, &mut enums);
        }
        let services: serde_json::Map<String, Value> = fd
            .service
            .iter()
            .map(|s| {
                let methods: serde_json::Map<String, Value> = s
                    .method
                    .iter()
                    .map(|m| {
                        (
                            m.name().to_string(),
                            json!([m.input_type(), m.output_type()]),
                        )
                    })
                    .collect();
                (format!("{prefix}.{}", s.name()), Value::Object(methods))
            })
            .collect();
        json!({"name": fd.name(), "package": fd.package(), "dependency": fd.dependency,
               "messages": messages, "enums": enums, "services": services})
    }

    /// Our protos against the descriptors the published spaceone-api 1.8.7 embeds
    /// (proto/published.json, made by hack/proto_published.py): every published message, field
    /// (name, number, label, type, oneof), enum and method is ours unchanged. The only additions
    /// are the StatisticsAggregate stages of cloudforet-io/api 45ba07a1 the spec asks for.
    #[test]
    fn protos_match_the_published_descriptors() {
        let published: Value =
            serde_json::from_str(include_str!("../../../proto/published.json")).unwrap();
        let ours = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        for want in published["files"].as_array().unwrap() {
            let name = want["name"].as_str().unwrap();
            let fd = ours.file.iter().find(|f| f.name() == name).unwrap();
            let mut got = canonical(fd);
            // The additions of 45ba07a1, and nothing else.
            let messages = got["messages"].as_object_mut().unwrap();
            if name == "spaceone/api/core/v1/query.proto" {
                assert!(
                    messages
                        .remove(".spaceone.api.core.v1.AggregateProject")
                        .is_some()
                );
                assert!(
                    messages
                        .remove(".spaceone.api.core.v1.AggregateProjectField")
                        .is_some()
                );
                let stages = messages[".spaceone.api.core.v1.StatisticsAggregate"]
                    .as_array_mut()
                    .unwrap();
                let added: Vec<Value> = stages.drain(4..).collect();
                assert_eq!(
                    added
                        .iter()
                        .map(|f| (f["name"].clone(), f["number"].clone()))
                        .collect::<Vec<_>>(),
                    vec![
                        (json!("project"), json!(5)),
                        (json!("limit"), json!(6)),
                        (json!("skip"), json!(7))
                    ]
                );
            }
            for key in ["name", "package", "dependency", "enums", "services"] {
                assert_eq!(got[key], want[key], "{name}: {key}");
            }
            let (g, w) = (
                got["messages"].as_object().unwrap(),
                want["messages"].as_object().unwrap(),
            );
            let names = |m: &serde_json::Map<String, Value>| {
                m.keys().cloned().collect::<std::collections::BTreeSet<_>>()
            };
            assert_eq!(names(g), names(w), "{name}");
            for (m, fields) in w {
                assert_eq!(&g[m], fields, "{m}");
            }
        }
    }

    #[test]
    fn errors_carry_spaceone_codes_in_the_details() {
        let s = status_of(&ServiceError::job_state("SUCCESS"));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert_eq!(
            s.message(),
            "ERROR_JOB_STATE: Only running jobs can be canceled. (job_state = SUCCESS)"
        );
        let s = status_of(&ServiceError::Unauthenticated("x".into()));
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        assert!(s.message().starts_with("ERROR_AUTHENTICATE_FAILURE: "));
        assert_eq!(
            status_of(&ServiceError::from(crate::auth::AuthError::Forbidden(
                "x".into()
            )))
            .code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            status_of(&ServiceError::Unavailable("busy".into())).code(),
            tonic::Code::Unavailable
        );
    }
}
