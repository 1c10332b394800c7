//! The API shim: a watch-fed catalog of jobs ([`catalog`]) behind one Job service ([`service`]),
//! served by thin protocol adapters: SpaceONE's REST API ([`rest`]), SpaceONE's gRPC service
//! ([`grpc`]) and the Kubernetes aggregated API `query.cost-analysis.spaceone.dev/v1`
//! ([`aggregated`], with its OpenAPI documents in [`openapi`]). Adapters decode, call the service
//! and encode; they never import each other. This module only declares its children and wires
//! them ([`router`], [`run`]); what they share lives in modules of its own.

pub mod aggregated;
pub mod aggregated_kinds;
pub mod answer_budget;
pub mod body;
pub mod caller;
pub mod cancel;
pub mod catalog;
pub mod cataloged;
pub mod error;
pub mod field_selector;
pub mod grpc;
pub mod label_selector;
pub mod middleware;
pub mod objects;
pub mod openapi;
pub mod options;
pub mod pool;
pub mod rest;
pub mod service;

use std::sync::Arc;

use axum::Router;

use crate::auth::{Authenticator, ServingCert, TlsState};
use crate::metrics::Metrics;
use crate::server::Transport;
pub use catalog::{Catalogs, SharedCatalog, SharedTasks};
pub use options::{ApiOptions, InitialList};
pub use pool::{PoolLimits, QueryPool};
pub use service::JobService;

pub fn router(state: JobService, request_timeout: std::time::Duration) -> Router {
    let metrics = state.metrics().clone();
    rest::router()
        .merge(aggregated::router())
        .with_state(state)
        .layer({
            let metrics = metrics.clone();
            axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    middleware::guard(metrics.clone(), request_timeout, request, next)
                },
            )
        })
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                middleware::observe(metrics.clone(), request, next)
            },
        ))
}

/// Serves the API until `shutdown` resolves. The catalog starts filling at once; `jobs.synced`
/// turns true after the initial list, which is what `/readyz` reports.
pub async fn run(
    clients: crate::clients::Clients,
    options: ApiOptions,
    catalogs: Catalogs,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Supervised, not detached: should a catalog's watch loop ever end, the shim ends with it
    // (and is restarted) instead of serving a frozen index.
    let mut index_task = tokio::spawn({
        let (jobs, tasks) = (catalogs.jobs.clone(), catalogs.tasks.clone());
        let (namespace, initial) = (options.namespace.clone(), options.initial_list);
        let client = clients.watches;
        async move {
            tokio::join!(
                jobs.run(client.clone(), namespace.clone(), initial),
                tasks.run(client, namespace, initial)
            );
        }
    });
    let serving = match (&options.tls_cert_file, &options.tls_key_file) {
        (Some(cert), Some(key)) => ServingCert::from_files(cert, key)?,
        _ => ServingCert::self_signed(&options.self_signed_names)?,
    };
    let tls = TlsState::new(serving, None)?;
    let client = clients.requests;
    let auth = Arc::new(Authenticator::new(client.clone()));
    tokio::spawn(crate::auth::watch_front_proxy(
        client.clone(),
        tls.clone(),
        auth.clone(),
    ));
    let state = JobService::new(
        catalogs,
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
            tracing::info!(addr = %listener.local_addr()?, "serving the gRPC Job and JobTask services over plaintext HTTP/2 (h2c)");
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
