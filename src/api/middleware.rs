//! What every REST and aggregated request passes through: the last line of defence (a panic or
//! a request past its timeout gets an error in its surface's shape) and the request metrics.

use std::sync::Arc;

use super::{aggregated, error, rest};
use crate::metrics::Metrics;

/// The last line of defence: a request that panics, or outlives `timeout`, gets an error in its
/// surface's shape (SpaceONE JSON, or a Kubernetes `Status` under `/apis` and `/openapi`) and the process lives
/// on. The panic itself is counted where it is caught (the query pool, or here).
pub async fn guard(
    metrics: Arc<Metrics>,
    timeout: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures::FutureExt;
    let path = request.uri().path();
    let kubernetes = path.starts_with("/apis") || path.starts_with("/openapi");
    let answer = std::panic::AssertUnwindSafe(next.run(request)).catch_unwind();
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            tracing::error!("a request handler panicked; answered as an internal error");
            metrics.request_panics.inc();
            surface_error(
                kubernetes,
                error::ServiceError::Internal("internal error".into()),
            )
        }
        Err(_) => surface_error(
            kubernetes,
            error::ServiceError::Unavailable(format!(
                "the request took longer than {}s",
                timeout.as_secs()
            )),
        ),
    }
}

/// `e` in the shape of the surface a request was for: a Kubernetes `Status` under `/apis`,
/// SpaceONE's error body elsewhere.
fn surface_error(kubernetes: bool, e: error::ServiceError) -> axum::response::Response {
    use axum::response::IntoResponse;
    if kubernetes {
        return aggregated::StatusError::from(e).into_response();
    }
    rest::error_response(&e)
}

/// Records how long each answer took, by route template and status.
pub async fn observe(
    metrics: Arc<Metrics>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let matched = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = matched.clone().unwrap_or_else(|| "unmatched".into());
    let (protocol, method) = crate::metrics::outcomes::http_method_label(
        matched.as_deref(),
        request.method() == axum::http::Method::POST,
    );
    let span = crate::telemetry::request_span(protocol, method, request.headers());
    let started = std::time::Instant::now();
    let response = {
        use tracing::Instrument;
        next.run(request).instrument(span.clone()).await
    };
    let took = started.elapsed().as_secs_f64();
    let code = response
        .extensions()
        .get::<rest::SpaceOneCode>()
        .map_or_else(
            || crate::metrics::outcomes::code_of_http_status(response.status().as_u16()),
            |c| c.0,
        );
    crate::telemetry::record_code_on(&span, code);
    metrics.outcomes.call(
        &crate::metrics::outcomes::CallLabels {
            protocol,
            method,
            code,
        },
        took,
    );
    let labels = crate::metrics::RequestLabels {
        route,
        code: response.status().as_u16(),
    };
    metrics.api_requests.get_or_create(&labels).observe(took);
    response
}
