//! The SpaceONE REST surface of the Job and JobTask services: the seed's paths
//! (`GET /cost-analysis/v1/job/{job_id}`, `GET /cost-analysis/v1/job-tasks`, ...) and the later
//! `POST /cost-analysis/v1/job/{verb}` and `/job-task/{verb}` forms. Handlers authenticate,
//! authorize the domain, hand the request to the query engine and encode its answer; cancel is
//! the one write.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::body::{path_request_of, query_params, read_json};
use super::caller::Caller;
use super::error::ServiceError;
use super::objects::Served;
use super::service::{Answered, JobService};
use crate::auth::UserInfo;
use crate::resources::{CostAnalysisJob, CostAnalysisJobTask};
use spaceone_query::calls::Encoded;

pub fn router() -> Router<JobService> {
    Router::new()
        .merge(reads::<CostAnalysisJob>("job", "jobs"))
        .merge(reads::<CostAnalysisJobTask>("job-task", "job-tasks"))
        .route("/cost-analysis/v1/job/cancel", post(cancel_body))
        .route("/cost-analysis/v1/job/{job_id}/cancel", post(cancel_path))
}

/// The name of `W`'s id field (`job_id`, `job_task_id`): its path parameter, and the field a
/// path-addressed request puts it under.
fn id_key<W: Served>() -> &'static str {
    <W::Record as spaceone_query::Resource>::schema()
        .id()
        .map_or("id", |f| f.name())
}

/// The read paths of one resource, the same for Job and JobTask: `POST /{one}/{get,list,stat}`,
/// the seed's `GET /{one}/{job_id}` (`{job_task_id}`) and `GET /{many}`, and
/// `POST /{many}/{search,stat}`. The route templates are the `route` label of the request metrics.
fn reads<W: Served>(one: &str, many: &str) -> Router<JobService> {
    let path = |tail: &str| format!("/cost-analysis/v1/{tail}");
    let key = id_key::<W>();
    Router::new()
        .route(&path(&format!("{one}/get")), post(get_body::<W>))
        .route(&path(&format!("{one}/list")), post(list_body::<W>))
        .route(&path(&format!("{one}/stat")), post(stat_body::<W>))
        .route(&path(&format!("{one}/{{{key}}}")), get(get_path::<W>))
        .route(&path(many), get(list_query::<W>))
        .route(&path(&format!("{many}/search")), post(list_body::<W>))
        .route(&path(&format!("{many}/stat")), post(stat_body::<W>))
}

type RestReply = Result<Response, RestError>;

/// An Info answer (get, cancel), its JSON text written from the engine's fields.
fn ok(answer: Encoded) -> Response {
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer.0,
    )
        .into_response()
}

/// JSON text built on the query pool; its share of the bytes-in-flight budget is given back when
/// the body has been sent.
fn encoded(answered: Answered<Encoded>) -> Response {
    encoded_with(StatusCode::OK, answered)
}

/// [`encoded`] with another status (the aggregated API's `201 Created`).
pub(super) fn encoded_with(status: StatusCode, answered: Answered<Encoded>) -> Response {
    let Answered { answer, permit } = answered;
    let body = http_body_util::BodyExt::map_frame(
        http_body_util::Full::new(axum::body::Bytes::from(answer.0)),
        move |frame| {
            let _ = &permit;
            frame
        },
    );
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::new(body),
    )
        .into_response()
}

/// A [`ServiceError`] as SpaceONE's REST gateway renders it: `{"detail": {"code", "message"}}`,
/// the message after a space, the HTTP status mapped from the gRPC status.
pub struct RestError(pub ServiceError);

impl<E: Into<ServiceError>> From<E> for RestError {
    fn from(e: E) -> Self {
        RestError(e.into())
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// The SpaceONE error code an answer carries (set on every SpaceONE error response).
#[derive(Clone, Copy, Debug)]
pub struct SpaceOneCode(pub &'static str);

pub fn error_response(e: &ServiceError) -> Response {
    let s = e.spaceone();
    let status = match e {
        ServiceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => {
            StatusCode::from_u16(s.grpc.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    // SpaceONE's gateway splits "CODE: message" at the first colon and keeps the space.
    let body = json!({"detail": {"code": s.code, "message": format!(" {}", s.message)}});
    let mut response = (status, axum::Json(body)).into_response();
    // For the request metrics and the request's span (`api::observe`).
    response.extensions_mut().insert(SpaceOneCode(s.code));
    response
}

/// An answer's JSON text, made on the query pool (a stat's answer can be tens of MB).
pub(super) fn json_text(v: &Value) -> Result<Encoded, ServiceError> {
    serde_json::to_vec(v)
        .map(Encoded)
        .map_err(|e| ServiceError::Internal(format!("could not encode the answer: {e}")))
}

async fn get_body<W: Served>(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(s.get_of::<W, Encoded>(&user, body).await?))
}

async fn list_body<W: Served>(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(encoded(s.list_of::<W, Encoded>(&user, body).await?))
}

async fn stat_body<W: Served>(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    let answer = s.stat_of::<W, _, _>(&user, body, |v| json_text(&v));
    Ok(encoded(answer.await?))
}

/// `GET /{one}/{job_id}`: the id from the path under the resource's id field, the rest from the
/// query string.
async fn get_path<W: Served>(
    State(s): State<JobService>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> RestReply {
    let user = authenticate(&s, &c).await?;
    let query = query_params(query.as_deref().unwrap_or(""))?;
    let request = path_request_of(id_key::<W>(), id, query, Value::Null)?;
    Ok(ok(s.get_of::<W, Encoded>(&user, request).await?))
}

async fn list_query<W: Served>(
    State(s): State<JobService>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> RestReply {
    let user = authenticate(&s, &c).await?;
    let body = query_params(query.as_deref().unwrap_or(""))?;
    Ok(encoded(
        s.list_of::<W, Encoded>(&user, Value::Object(body)).await?,
    ))
}

async fn cancel_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(s.cancel::<Encoded>(&user, body).await?))
}

async fn cancel_path(
    State(s): State<JobService>,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
    c: Caller,
    body: Body,
) -> RestReply {
    let query = query_params(query.as_deref().unwrap_or(""))?;
    let (user, body) = authenticated_body(&s, &c, body).await?;
    let request = path_request_of(id_key::<CostAnalysisJob>(), job_id, query, body)?;
    Ok(ok(s.cancel::<Encoded>(&user, request).await?))
}

async fn authenticate(s: &JobService, c: &Caller) -> Result<UserInfo, ServiceError> {
    s.authenticate(c.peer(), c.headers()).await
}

async fn authenticated_body(
    s: &JobService,
    c: &Caller,
    body: Body,
) -> Result<(UserInfo, Value), ServiceError> {
    let user = authenticate(s, c).await?;
    let body = read_json(c, body).await?;
    Ok((user, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn path_requests_take_the_job_id_from_the_path_last() {
        let query = query_params("job_id=other&domain_id=d").expect("parses");
        let request = path_request_of(
            id_key::<CostAnalysisJob>(),
            "job-1".into(),
            query,
            json!({"domain_id": "body"}),
        )
        .expect("an object");
        assert_eq!(request, json!({"job_id": "job-1", "domain_id": "d"}));
        let bad = path_request_of("job_id", "job-1".into(), Map::new(), json!([1]));
        assert!(bad.is_err());
        assert_eq!(id_key::<CostAnalysisJobTask>(), "job_task_id");
    }
}
