//! The API shim: a watch-fed catalog of jobs ([`index`]) behind one Job service ([`service`]),
//! served over HTTPS by thin protocol adapters: the SpaceONE REST API ([`spaceone`]) and the
//! Kubernetes aggregated API `query.cost-analysis.spaceone.dev/v1` ([`aggregated`]). Adapters
//! decode, call the service and encode; they never import each other.

pub mod aggregated;
pub mod answer_budget;
pub mod body;
pub mod caller;
pub mod cancel;
pub mod error;
pub mod fields;
pub mod grpc;
pub mod index;
pub mod labels;
pub mod openapi;
pub mod pool;
pub mod service;
pub mod spaceone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use kube::Client;

use crate::auth::{Authenticator, ServingCert, TlsState};
use crate::metrics::Metrics;
use crate::server::{ServerLimits, Transport};
pub use index::WatchedJobs;
pub use pool::{PoolLimits, QueryPool};
pub use service::JobService;

#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// HTTPS address of the SpaceONE and aggregated APIs.
    pub addr: SocketAddr,
    /// Plaintext (h2c) address of the gRPC Job service, when it is served there too.
    pub grpc_plaintext_addr: Option<SocketAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Host names for a generated serving certificate (when no files are given).
    pub self_signed_names: Vec<String>,
    /// Watch only this namespace.
    pub namespace: Option<String>,
    pub initial_list: InitialList,
    /// What one client can hold of the HTTPS server.
    pub server: ServerLimits,
    /// Where and how many queries run at once.
    pub pool: PoolLimits,
    /// The budgets of one query.
    pub query: spaceone_query::Limits,
    /// The longest a request may take, all included; then it is answered as unavailable.
    pub request_timeout: std::time::Duration,
    /// Bytes of answers built and not yet sent, in all.
    pub max_answer_bytes: usize,
}

/// How the index loads the jobs before it watches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialList {
    /// One watch that first sends every job from the API server's cache (WatchList).
    Streaming,
    /// LIST in pages, then a watch.
    Paged,
}

pub fn router(state: JobService, request_timeout: std::time::Duration) -> Router {
    let metrics = state.metrics().clone();
    spaceone::router()
        .merge(aggregated::router())
        .with_state(state)
        .layer({
            let metrics = metrics.clone();
            axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    guard(metrics.clone(), request_timeout, request, next)
                },
            )
        })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                observe(metrics.clone(), request, next)
            },
        ))
}

/// The last line of defence: a request that panics, or outlives `timeout`, gets an error in its
/// surface's shape (SpaceONE JSON, or a Kubernetes `Status` under `/apis` and `/openapi`) and the process lives
/// on. The panic itself is counted where it is caught (the query pool, or here).
async fn guard(
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
    spaceone::error_response(&e)
}

/// Records how long each answer took, by route template and status.
async fn observe(
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
        .get::<spaceone::SpaceOneCode>()
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

/// Serves the API until `shutdown` resolves. The catalog starts filling at once; `jobs.synced`
/// turns true after the initial list, which is what `/readyz` reports.
pub async fn run(
    client: Client,
    options: ApiOptions,
    jobs: WatchedJobs,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Supervised, not detached: should the index's watch loop ever end, the shim ends with it
    // (and is restarted) instead of serving a frozen index.
    let mut index_task = tokio::spawn(jobs.clone().run(
        client.clone(),
        options.namespace.clone(),
        options.initial_list,
    ));
    let serving = match (&options.tls_cert_file, &options.tls_key_file) {
        (Some(cert), Some(key)) => ServingCert::from_files(cert, key)?,
        _ => ServingCert::self_signed(&options.self_signed_names)?,
    };
    let tls = TlsState::new(serving, None)?;
    let auth = Arc::new(Authenticator::new(client.clone()));
    tokio::spawn(crate::auth::watch_front_proxy(
        client.clone(),
        tls.clone(),
        auth.clone(),
    ));
    let state = JobService::new(
        jobs,
        auth,
        client,
        QueryPool::new(&options.pool, &metrics),
        Arc::new(options.query.clone()),
        answer_budget::AnswerBudget::new(options.max_answer_bytes, options.pool.queue_timeout),
        metrics,
    );
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving the SpaceONE REST, gRPC and aggregated APIs over HTTPS");
    let grpc_routes =
        crate::telemetry::grpc_spans(grpc::routes(state.clone(), options.request_timeout)?);
    let app = grpc::by_content_type(router(state, options.request_timeout), grpc_routes.clone());
    // One shutdown signal for both servers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let plaintext = match options.grpc_plaintext_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(addr = %listener.local_addr()?, "serving the gRPC Job service over plaintext HTTP/2 (h2c)");
            let serving = crate::server::serve(
                listener,
                Transport::H2c,
                grpc_routes,
                options.server.clone(),
                stopped(stop_rx.clone()),
            );
            futures::future::Either::Left(serving)
        }
        None => futures::future::Either::Right(std::future::ready(Ok(()))),
    };
    let server = crate::server::serve(
        listener,
        Transport::Tls(tls),
        app,
        options.server.clone(),
        stopped(stop_rx),
    );
    // Both servers end together, on shutdown.
    let servers = async {
        let (tls, plain) = tokio::join!(server, plaintext);
        tls.and(plain)
    };
    tokio::select! {
        served = servers => served?,
        ended = &mut index_task => {
            return Err(format!("the job index stopped following the API server: {ended:?}").into());
        }
    }
    index_task.abort();
    Ok(())
}
