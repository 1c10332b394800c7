//! Job outcome and request metrics (issue 21): what operators graph and page on. The pure parts
//! (label capping, the census of a set of jobs, the request labels) are unit-tested here; the
//! controller and the API shim only call in.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::resources::JobStatus;

/// The label value that stands for every value past a label's cap.
pub const OTHER: &str = "other";

/// How the outcome metrics label jobs.
#[derive(Clone, Debug)]
pub struct LabelOptions {
    /// Add `domain_id` to `jobs_finished_total` (off by default: domains can be many).
    pub domain_label: bool,
    /// Distinct values one label (`data_source_id`, `domain_id`) takes before the rest are
    /// counted as `other`.
    pub max_label_values: usize,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            domain_label: false,
            max_label_values: 100,
        }
    }
}

/// A label whose values come from users: the first `cap` distinct values are kept, later new
/// ones become [`OTHER`]. A value once kept stays kept, so a series never changes its name.
#[derive(Debug)]
pub struct Capped {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl Capped {
    pub fn new(cap: usize) -> Self {
        Capped {
            cap,
            seen: Mutex::new(HashSet::new()),
        }
    }

    pub fn value(&self, v: &str) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return OTHER.into();
        };
        if seen.contains(v) {
            return v.into();
        }
        if seen.len() < self.cap {
            seen.insert(v.into());
            return v.into();
        }
        OTHER.into()
    }
}

/// `status`, `data_source_id` and, when asked for, `domain_id`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct FinishedLabels {
    pub status: &'static str,
    pub data_source_id: String,
    pub domain_id: Option<String>,
}

impl EncodeLabelSet for FinishedLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let mut labels: Vec<(&str, &str)> = vec![
            ("status", self.status),
            ("data_source_id", self.data_source_id.as_str()),
        ];
        if let Some(domain) = &self.domain_id {
            labels.push(("domain_id", domain.as_str()));
        }
        labels.encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

/// One request of any protocol: `protocol` (rest, grpc, aggregated), `method` (a fixed name per
/// route) and `code` (`OK`, or the SpaceONE error code of the answer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CallLabels {
    pub protocol: &'static str,
    pub method: &'static str,
    pub code: &'static str,
}

/// A scrape-time update of some of the gauges.
type Refresher = Box<dyn Fn(&Outcomes) + Send + Sync>;

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn job_duration_histogram() -> Histogram {
    // 1 s to a day: sync jobs run for minutes to hours.
    Histogram::new([
        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
        43200.0, 86400.0,
    ])
}

fn call_histogram() -> Histogram {
    // 100 µs to ~6.5 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_1, 2.0, 17,
    ))
}

/// What the census of the controller's cache found (see [`census`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Census {
    /// Jobs per status, every status present (0 when none).
    pub by_status: [(JobStatus, i64); 5],
    /// Seconds since the oldest IN_PROGRESS job was created (0 without one).
    pub oldest_in_progress_seconds: f64,
    /// IN_PROGRESS jobs whose deadline (creation + timeout) has passed.
    pub past_deadline: i64,
}

/// One job as the census needs it.
#[derive(Clone, Copy, Debug)]
pub struct CensusJob {
    pub status: JobStatus,
    pub created: DateTime<Utc>,
    /// When it times out (without the clock-skew allowance).
    pub deadline: DateTime<Utc>,
}

pub fn census(jobs: impl IntoIterator<Item = CensusJob>, now: DateTime<Utc>) -> Census {
    let mut by_status = JobStatus::ALL.map(|s| (s, 0_i64));
    let mut oldest: Option<DateTime<Utc>> = None;
    let mut past_deadline = 0_i64;
    for job in jobs {
        if let Some((_, n)) = by_status.iter_mut().find(|(s, _)| *s == job.status) {
            *n = n.saturating_add(1);
        }
        if job.status == JobStatus::InProgress {
            oldest = Some(oldest.map_or(job.created, |o| o.min(job.created)));
            if job.deadline < now {
                past_deadline = past_deadline.saturating_add(1);
            }
        }
    }
    let oldest_in_progress_seconds = oldest
        .map(|o| seconds(now.signed_duration_since(o)).max(0.0))
        .unwrap_or(0.0);
    Census {
        by_status,
        oldest_in_progress_seconds,
        past_deadline,
    }
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// A job's terminal transition, as the controller wrote it.
#[derive(Clone, Debug)]
pub struct Finished<'a> {
    pub status: JobStatus,
    pub data_source_id: &'a str,
    pub domain_id: &'a str,
    pub created: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// When the job was due to time out (creation + timeout), for TIMEOUT's lateness.
    pub deadline: DateTime<Utc>,
    /// The final state of each of its tasks that exists.
    pub task_states: Vec<&'static str>,
}

pub struct Outcomes {
    options: LabelOptions,
    data_sources: Capped,
    domains: Capped,
    pub finished: Family<FinishedLabels, Counter>,
    pub duration: Histograms<StatusLabels>,
    pub timeout_lateness: Histogram,
    pub tasks_finished: Family<StatusLabels, Counter>,
    pub jobs: Family<StatusLabels, Gauge>,
    pub oldest_in_progress: Gauge<f64, AtomicU64>,
    pub past_deadline: Gauge<i64, AtomicI64>,
    pub calls: Histograms<CallLabels>,
    /// 1 while the process is ready (its /readyz answer), computed at scrape time.
    pub ready: Gauge<i64, AtomicI64>,
    /// The API shim's catalog: 1 once it holds the initial list and while its watch has not
    /// failed for longer than the grace.
    pub catalog_trusted: Gauge<i64, AtomicI64>,
    /// The process's resident memory (Linux: VmRSS), at scrape time.
    pub resident_memory: Gauge<i64, AtomicI64>,
    /// Scrape-time refreshers (the census of the controller's cache, readiness).
    refreshers: Mutex<Vec<Refresher>>,
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes").finish_non_exhaustive()
    }
}

impl Outcomes {
    pub fn new(options: LabelOptions, registry: &mut Registry) -> Self {
        let o = Outcomes {
            data_sources: Capped::new(options.max_label_values),
            domains: Capped::new(options.max_label_values),
            options,
            finished: Family::default(),
            duration: Family::new_with_constructor(job_duration_histogram),
            timeout_lateness: Histogram::new([
                0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
            ]),
            tasks_finished: Family::default(),
            jobs: Family::default(),
            oldest_in_progress: Gauge::default(),
            past_deadline: Gauge::default(),
            calls: Family::new_with_constructor(call_histogram),
            ready: Gauge::default(),
            catalog_trusted: Gauge::default(),
            resident_memory: Gauge::default(),
            refreshers: Mutex::new(Vec::new()),
        };
        registry.register(
            "jobs_finished",
            "Jobs that reached a final status, by status and data source (counted once, when the controller writes the final status)",
            o.finished.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Time from a job's creation to its final status, by final status",
            o.duration.clone(),
        );
        registry.register(
            "job_timeout_lateness_seconds",
            "Time from a job's deadline to the write of its TIMEOUT",
            o.timeout_lateness.clone(),
        );
        registry.register(
            "tasks_finished",
            "Tasks of finished jobs by final status (counted when their job finishes)",
            o.tasks_finished.clone(),
        );
        registry.register(
            "jobs",
            "Jobs in the controller's cache by status (computed at scrape time)",
            o.jobs.clone(),
        );
        registry.register(
            "oldest_in_progress_job_age_seconds",
            "Seconds since the oldest IN_PROGRESS job was created (0 without one)",
            o.oldest_in_progress.clone(),
        );
        registry.register(
            "jobs_past_deadline",
            "IN_PROGRESS jobs whose deadline has passed (the controller times them out at once; more than a moment means it does not)",
            o.past_deadline.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time the API shim took to answer, by protocol, method and SpaceONE code (OK on success)",
            o.calls.clone(),
        );
        registry.register(
            "ready",
            "Whether the process is ready (its /readyz answer), at scrape time",
            o.ready.clone(),
        );
        registry.register(
            "catalog_trusted",
            "Whether the API shim's job catalog holds the initial list and its watch is healthy (1) or it is stale (0)",
            o.catalog_trusted.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process (Linux VmRSS), at scrape time",
            o.resident_memory.clone(),
        );
        o
    }

    /// Counts a job's terminal transition. Called once per job, by the controller, after its
    /// write of the final status succeeded.
    pub fn finish(&self, job: &Finished<'_>) {
        let status = job.status.as_str();
        let labels = FinishedLabels {
            status,
            data_source_id: self.data_sources.value(job.data_source_id),
            domain_id: self
                .options
                .domain_label
                .then(|| self.domains.value(job.domain_id)),
        };
        self.finished.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&StatusLabels { status })
            .observe(seconds(job.finished.signed_duration_since(job.created)).max(0.0));
        if job.status == JobStatus::Timeout {
            self.timeout_lateness
                .observe(seconds(job.finished.signed_duration_since(job.deadline)).max(0.0));
        }
        for state in &job.task_states {
            self.tasks_finished
                .get_or_create(&StatusLabels { status: state })
                .inc();
        }
    }

    pub fn call(&self, labels: &CallLabels, seconds: f64) {
        self.calls.get_or_create(labels).observe(seconds);
    }

    pub fn set_census(&self, census: &Census) {
        for (status, n) in census.by_status {
            self.jobs
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(n);
        }
        self.oldest_in_progress
            .set(census.oldest_in_progress_seconds);
        self.past_deadline.set(census.past_deadline);
    }

    /// Runs `f` before every scrape.
    pub fn on_scrape(&self, f: impl Fn(&Outcomes) + Send + Sync + 'static) {
        if let Ok(mut r) = self.refreshers.lock() {
            r.push(Box::new(f));
        }
    }

    pub fn refresh(&self) {
        if let Some(bytes) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| vm_rss_bytes(&s))
        {
            self.resident_memory.set(bytes);
        }
        if let Ok(r) = self.refreshers.lock() {
            for f in r.iter() {
                f(self);
            }
        }
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn vm_rss_bytes(status: &str) -> Option<i64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The `method` label of a REST or aggregated API route (its path template and HTTP method);
/// every other path is `other`, so the label set stays fixed.
pub fn http_method_label(route: Option<&str>, post: bool) -> (&'static str, &'static str) {
    const REST: &str = "rest";
    const AGG: &str = "aggregated";
    let Some(route) = route else {
        return (REST, OTHER);
    };
    match route {
        "/cost-analysis/v1/job/get" | "/cost-analysis/v1/job/{job_id}" => (REST, "get"),
        "/cost-analysis/v1/job/list"
        | "/cost-analysis/v1/jobs"
        | "/cost-analysis/v1/jobs/search" => (REST, "list"),
        "/cost-analysis/v1/job/stat" | "/cost-analysis/v1/jobs/stat" => (REST, "stat"),
        "/cost-analysis/v1/job/cancel" | "/cost-analysis/v1/job/{job_id}/cancel" => {
            (REST, "cancel")
        }
        "/cost-analysis/v1/job-task/get" | "/cost-analysis/v1/job-task/{job_task_id}" => {
            (REST, "jobtask.get")
        }
        "/cost-analysis/v1/job-task/list"
        | "/cost-analysis/v1/job-tasks"
        | "/cost-analysis/v1/job-tasks/search" => (REST, "jobtask.list"),
        "/cost-analysis/v1/job-task/stat" | "/cost-analysis/v1/job-tasks/stat" => {
            (REST, "jobtask.stat")
        }
        r if r.starts_with("/apis") => {
            let method = if r.ends_with("/jobstats") && post {
                "jobstats.create"
            } else if r.ends_with("/jobtaskstats") && post {
                "jobtaskstats.create"
            } else if r.ends_with("/jobs/{name}") {
                "jobs.get"
            } else if r.ends_with("/jobs") {
                "jobs.list"
            } else if r.ends_with("/jobtasks/{name}") {
                "jobtasks.get"
            } else if r.ends_with("/jobtasks") {
                "jobtasks.list"
            } else {
                "discovery"
            };
            (AGG, method)
        }
        _ => (REST, OTHER),
    }
}

/// The SpaceONE code of an answer of the Kubernetes surface (which carries a `Status`, not
/// SpaceONE's body), from its HTTP status, as [`crate::api::error::ServiceError::spaceone`]
/// maps errors.
pub fn code_of_http_status(status: u16) -> &'static str {
    match status {
        200..=299 => "OK",
        400 | 413 => "ERROR_INVALID_PARAMETER",
        401 => "ERROR_AUTHENTICATE_FAILURE",
        403 => "ERROR_PERMISSION_DENIED",
        404 => "ERROR_NOT_FOUND",
        503 => "ERROR_UNAVAILAVBLE",
        _ => "ERROR_UNKNOWN",
    }
}

#[cfg(test)]
#[path = "outcomes_tests.rs"]
mod tests;
