//! Prometheus metrics of the controller and the API shim, in OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub mod outcomes;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

/// One API route (the path template, so the label set stays small) and the answer's status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub code: u16,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 50 µs to ~1.6 s: list answers take well under a millisecond, cancels a few.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub status_writes: Counter,
    pub task_creates: Counter,
    pub task_cancels: Counter,
    pub transitions: Family<StatusLabels, Counter>,
    pub leader: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub api_cancels: Counter,
    pub api_requests: Histograms<RequestLabels>,
    pub catalog_jobs: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub catalog_tasks: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Panics contained to one reconcile (`reconcile`) or one request (`request`).
    pub panics: Family<ComponentLabels, Counter>,
    pub request_panics: Counter,
    pub reconcile_panics: Counter,
    /// Requests turned away because every query slot stayed busy.
    pub api_overloaded: Counter,
    pub watch_restarts: Family<ResourceLabels, Counter>,
    pub watch_errors: Family<ResourceLabels, Counter>,
    /// Job outcomes, the census of the controller's cache, requests by protocol (issue 21).
    pub outcomes: outcomes::Outcomes,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(outcomes::LabelOptions::default())
    }
}

impl Metrics {
    pub fn new(labels: outcomes::LabelOptions) -> Self {
        let mut registry = Registry::with_prefix("cost_analysis_operator");
        let outcomes = outcomes::Outcomes::new(labels, &mut registry);
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        // Every error kind from the start (at 0), so that rates and alerts see a series.
        for error in ["conflict", "kube", "invalid_object", "panic", "timeout"] {
            let _ = reconcile_errors.get_or_create(&ErrorLabels { error });
        }
        let reconcile_duration =
            Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]);
        let status_writes = Counter::default();
        let task_creates = Counter::default();
        let task_cancels = Counter::default();
        let transitions = Family::<StatusLabels, Counter>::default();
        let leader = Gauge::default();
        let api_cancels = Counter::default();
        let api_requests: Histograms<RequestLabels> =
            Family::new_with_constructor(request_histogram);
        let catalog_jobs = Gauge::default();
        let catalog_tasks = Gauge::default();
        let panics = Family::<ComponentLabels, Counter>::default();
        let request_panics = panics
            .get_or_create(&ComponentLabels {
                component: "request",
            })
            .clone();
        let reconcile_panics = panics
            .get_or_create(&ComponentLabels {
                component: "reconcile",
            })
            .clone();
        let api_overloaded = Counter::default();
        let watch_restarts = Family::<ResourceLabels, Counter>::default();
        let watch_errors = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watches that listed again (after an expiry or an outage), by resource",
            watch_restarts.clone(),
        );
        registry.register(
            "watch_errors",
            "Watch errors (retried with backoff), by resource",
            watch_errors.clone(),
        );
        registry.register(
            "panics",
            "Panics contained to one reconcile or one request (each is a bug: please report it)",
            panics.clone(),
        );
        registry.register(
            "api_overloaded",
            "Requests answered ERROR_UNAVAILAVBLE because every query slot stayed busy",
            api_overloaded.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time the API shim took to answer, by route and status (the body's transfer excluded)",
            api_requests.clone(),
        );
        registry.register(
            "api_cancels",
            "Jobs canceled through the API",
            api_cancels.clone(),
        );
        registry.register(
            "catalog_jobs",
            "Jobs held in the API shim's catalog",
            catalog_jobs.clone(),
        );
        registry.register(
            "catalog_tasks",
            "Job tasks held in the API shim's catalog",
            catalog_tasks.clone(),
        );
        registry.register("reconciles", "Job reconciliations", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed job reconciliations by error kind",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one job reconciliation",
            reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "Job status writes (server-side apply)",
            status_writes.clone(),
        );
        registry.register("task_creates", "Task objects created", task_creates.clone());
        registry.register(
            "task_cancels",
            "Tasks marked CANCELED",
            task_cancels.clone(),
        );
        registry.register(
            "job_transitions",
            "Job status transitions by new status",
            transitions.clone(),
        );
        registry.register(
            "leader",
            "Whether this process holds the controller lease (1) or waits for it (0)",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            status_writes,
            task_creates,
            task_cancels,
            transitions,
            leader,
            api_cancels,
            api_requests,
            catalog_jobs,
            catalog_tasks,
            panics,
            request_panics,
            reconcile_panics,
            api_overloaded,
            watch_restarts,
            watch_errors,
            outcomes,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, took: Duration, error: Option<&'static str>) {
        self.reconciles.inc();
        self.reconcile_duration.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.reconcile_errors
                .get_or_create(&ErrorLabels { error })
                .inc();
        }
    }

    pub fn watch_restart(&self, resource: &'static str) {
        self.watch_restarts
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    pub fn watch_error(&self, resource: &'static str) {
        self.watch_errors
            .get_or_create(&ResourceLabels { resource })
            .inc();
    }

    pub fn transition(&self, status: &'static str) {
        self.transitions
            .get_or_create(&StatusLabels { status })
            .inc();
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.outcomes.refresh();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
