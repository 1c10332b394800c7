//! The process wiring of `controller`, `api` and `run`: the health endpoints, the components as
//! supervised tasks (the first to end ends the process), and readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::{ApiArgs, CommonArgs, ControllerArgs};
use crate::{api, caches, controller, health, leader, metrics, shutdown};

pub struct Serve {
    pub controller: Option<ControllerArgs>,
    pub api: Option<ApiArgs>,
    pub common: CommonArgs,
}

impl Serve {
    pub async fn run(self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let clients = crate::clients::Clients::infer().await?;
        let metrics = Arc::new(metrics::Metrics::new(self.common.metric_labels()));
        let stop = shutdown::on_signal();
        let stopping = Arc::new(AtomicBool::new(false));
        let catalogs = api::Catalogs::new(&metrics);
        // Ready while not stopping and, with the API shim in the process, once its catalogs hold
        // their initial lists and unless a watch has been failing for longer than --index-grace.
        // Judged when /readyz is asked; nothing polls.
        let trust: Option<(api::Catalogs, std::time::Duration)> = self.api.as_ref().map(|args| {
            (
                catalogs.clone(),
                std::time::Duration::from_secs(args.limits.index_grace),
            )
        });
        let ready: health::Readiness = {
            let stopping = stopping.clone();
            let trust_ready = trust.clone();
            Arc::new(move || {
                !stopping.load(Ordering::Acquire)
                    && trust_ready
                        .as_ref()
                        .is_none_or(|(jobs, grace)| jobs.is_trusted(*grace))
            })
        };
        {
            let ready = ready.clone();
            metrics.outcomes.on_scrape(move |o| {
                o.ready.set(i64::from(ready()));
            });
        }
        if let Some((jobs, grace)) = trust.clone() {
            metrics.outcomes.on_scrape(move |o| {
                o.catalog_trusted.set(i64::from(jobs.is_trusted(grace)));
            });
        }
        let (addr, server) = health::serve(
            self.common.metrics_addr,
            health::Health {
                ready,
                metrics: metrics.clone(),
            },
            shutdown::requested(stop.clone()),
        )
        .await?;
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");

        // One watch per resource for both components when they watch the same namespaces.
        let feeds = match (&self.controller, &self.api) {
            (Some(c), Some(a)) if c.namespace == a.api_namespace => catalogs.feeds(),
            _ => caches::Feeds::default(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(args) = self.api {
            let options = args.options();
            let (c, m) = (clients.clone(), metrics.clone());
            let until = shutdown::requested(stop.clone());
            tasks.spawn(async move { api::run(c, options, catalogs, m, until).await });
        }
        if let Some(args) = self.controller {
            let (clients, metrics, stop) = (clients.clone(), metrics.clone(), stop.clone());
            tasks.spawn(async move { run_controller(clients, args, metrics, stop, feeds).await });
        }
        let mut result = Ok(());
        // Whichever component ends first (shutdown, lost lease, fatal error) ends the process.
        if let Some(first) = tasks.join_next().await {
            result = first
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .and_then(|r| r);
        }
        stopping.store(true, Ordering::Release);
        tasks.shutdown().await;
        server.abort();
        result
    }
}

async fn run_controller(
    clients: crate::clients::Clients,
    args: ControllerArgs,
    metrics: Arc<metrics::Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
    feeds: caches::Feeds,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runner_config = args.runner();
    let lease = args.lease();
    let config = args.lifecycle();
    let resync = std::time::Duration::from_secs(args.resync_interval);
    // The caches run from the start, also while this replica waits for the lease (a warm standby).
    let client = clients.requests;
    let caches = caches::Caches::start(
        clients.watches,
        args.namespace.as_deref(),
        metrics.clone(),
        feeds,
    );
    let runner = args.task_runner.then(|| {
        let hub = caches.hub.clone();
        crate::runner_shell::Runner::start(
            client.clone(),
            runner_config,
            args.namespace.as_deref(),
            hub,
        )
    });
    crate::job_metrics::census_on_scrape(&caches, &config, &metrics);
    leader::run_while_leader(client.clone(), lease, metrics.clone(), stop, |until| {
        controller::run(caches, client, config, metrics, resync, runner, until)
    })
    .await?;
    Ok(())
}
