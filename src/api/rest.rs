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

use super::body::{path_request, path_request_of, query_params, read_json};
use super::caller::Caller;
use super::error::ServiceError;
use super::service::{Answered, JobService};
use crate::auth::UserInfo;
use spaceone_query::calls::Encoded;

pub fn router() -> Router<JobService> {
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
        .route("/cost-analysis/v1/job-task/get", post(task_get_body))
        .route("/cost-analysis/v1/job-task/list", post(task_list_body))
        .route("/cost-analysis/v1/job-task/stat", post(task_stat_body))
        .route(
            "/cost-analysis/v1/job-task/{job_task_id}",
            get(task_get_path),
        )
        .route("/cost-analysis/v1/job-tasks", get(task_list_query))
        .route("/cost-analysis/v1/job-tasks/search", post(task_list_body))
        .route("/cost-analysis/v1/job-tasks/stat", post(task_stat_body))
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

async fn get_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(s.get::<Encoded>(&user, body).await?))
}

async fn list_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(encoded(s.list(&user, body).await?))
}

async fn stat_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    let answer = s.stat(&user, body, |v| json_text(&v));
    Ok(encoded(answer.await?))
}

async fn cancel_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(s.cancel::<Encoded>(&user, body).await?))
}

async fn get_path(
    State(s): State<JobService>,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> RestReply {
    let user = authenticate(&s, &c).await?;
    let request = path_request(
        job_id,
        query_params(query.as_deref().unwrap_or(""))?,
        Value::Null,
    )?;
    Ok(ok(s.get::<Encoded>(&user, request).await?))
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
    let request = path_request(job_id, query, body)?;
    Ok(ok(s.cancel::<Encoded>(&user, request).await?))
}

async fn list_query(
    State(s): State<JobService>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> RestReply {
    let user = authenticate(&s, &c).await?;
    let body = query_params(query.as_deref().unwrap_or(""))?;
    Ok(encoded(s.list(&user, Value::Object(body)).await?))
}

async fn task_get_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(ok(s.get_task::<Encoded>(&user, body).await?))
}

async fn task_list_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    Ok(encoded(s.list_tasks(&user, body).await?))
}

async fn task_stat_body(State(s): State<JobService>, c: Caller, body: Body) -> RestReply {
    let (user, body) = authenticated_body(&s, &c, body).await?;
    let answer = s.stat_tasks(&user, body, |v| json_text(&v));
    Ok(encoded(answer.await?))
}

async fn task_get_path(
    State(s): State<JobService>,
    Path(job_task_id): Path<String>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> RestReply {
    let user = authenticate(&s, &c).await?;
    let request = path_request_of(
        "job_task_id",
        job_task_id,
        query_params(query.as_deref().unwrap_or(""))?,
        Value::Null,
    )?;
    Ok(ok(s.get_task::<Encoded>(&user, request).await?))
}

async fn task_list_query(
    State(s): State<JobService>,
    RawQuery(query): RawQuery,
    c: Caller,
) -> RestReply {
    let user = authenticate(&s, &c).await?;
    let body = query_params(query.as_deref().unwrap_or(""))?;
    Ok(encoded(s.list_tasks(&user, Value::Object(body)).await?))
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
        let request =
            path_request("job-1".into(), query, json!({"domain_id": "body"})).expect("an object");
        assert_eq!(request, json!({"job_id": "job-1", "domain_id": "d"}));
        assert!(path_request("job-1".into(), Map::new(), json!([1])).is_err());
    }
}
