//! What the controller tells the metrics and traces: a decision on the reconcile's span, a job's
//! final transition (counted once, with its duration and its tasks' final states), and the census
//! of the job cache at each scrape.

use chrono::Utc;
use tracing::debug;

use crate::caches::Caches;
use crate::lifecycle::{self, Decision, JobView};
use crate::metrics::Metrics;
use crate::resources::{CostAnalysisJob, TaskState};

/// How many API writes a decision asks for.
pub fn writes(decision: &Decision) -> usize {
    usize::from(decision.status_changed)
        .saturating_add(decision.create_tasks.len())
        .saturating_add(decision.cancel_tasks.len())
        .saturating_add(usize::from(decision.delete_job))
}

/// Whether a decision changes nothing: no write and no event (a settled job).
pub fn is_settled(decision: &Decision) -> bool {
    writes(decision) == 0 && decision.events.is_empty()
}

/// The decision on the reconcile's span: the status it leads to and the writes it asks for.
pub fn record_decision(span: &tracing::Span, decision: &Decision) {
    let status = decision.status.status.map_or("IN_PROGRESS", |s| s.as_str());
    let writes = writes(decision);
    let written = if decision.status_changed {
        " (written)"
    } else {
        ""
    };
    // Both at once: the JSON log layer parses and re-encodes a span's fields on each `record`.
    tracing::record_all!(
        span,
        decision = %format_args!("{status}{written}"),
        writes = writes
    );
    debug!(
        parent: span,
        status,
        creates = decision.create_tasks.len(),
        cancels = decision.cancel_tasks.len(),
        delete = decision.delete_job,
        "decided"
    );
}

/// Counts a job's terminal transition with its duration; `task_states` are its tasks' final
/// states as the deciding reconcile leaves them.
pub fn finished(
    job: &CostAnalysisJob,
    state: crate::resources::JobStatus,
    decision: &Decision,
    task_states: Vec<&'static str>,
    config: &lifecycle::Config,
    metrics: &Metrics,
) {
    let Some(view) = JobView::of(job) else {
        return;
    };
    let created = decision.status.created_at.unwrap_or(view.created);
    metrics
        .outcomes
        .finish(&crate::metrics::outcomes::Finished {
            status: state,
            data_source_id: &job.spec.data_source_id,
            domain_id: &job.spec.domain_id,
            created,
            finished: decision.status.finished_at.unwrap_or_else(Utc::now),
            deadline: lifecycle::due(&view, config),
            task_states,
        });
}

pub fn task_state_label(state: TaskState) -> &'static str {
    match state {
        TaskState::Pending => "PENDING",
        TaskState::InProgress => "IN_PROGRESS",
        TaskState::Success => "SUCCESS",
        TaskState::Failure => "FAILURE",
        TaskState::Canceled => "CANCELED",
    }
}

/// Keeps `cost_analysis_operator_jobs{status}`, the oldest IN_PROGRESS job's age and the jobs
/// past their deadline current: computed from the controller's job cache at each scrape, so they
/// are exact after a restart (every replica with caches serves them; the standby's agree).
pub fn census_on_scrape(caches: &Caches, config: &lifecycle::Config, metrics: &Metrics) {
    let (jobs, config) = (caches.jobs.clone(), config.clone());
    metrics.outcomes.on_scrape(move |o| {
        let state = jobs.state();
        let census = crate::metrics::outcomes::census(
            state.iter().filter_map(|job| {
                let view = JobView::of(job)?;
                Some(crate::metrics::outcomes::CensusJob {
                    status: view
                        .status
                        .and_then(|s| s.status)
                        .unwrap_or(crate::resources::JobStatus::InProgress),
                    created: view
                        .status
                        .and_then(|s| s.created_at)
                        .unwrap_or(view.created),
                    deadline: lifecycle::due(&view, &config),
                })
            }),
            Utc::now(),
        );
        o.set_census(&census);
    });
}
