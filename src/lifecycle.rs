//! The job lifecycle as one pure function: given a job, the tasks observed for it, the time and the
//! configuration, [`decide`] says what the job's status must be, which tasks to create or cancel,
//! which events to record, whether to delete the job, and when to look again. No I/O happens here,
//! so every transition is unit-tested without a cluster.
//!
//! Rules (SpaceONE's, made exact; see docs/design.md):
//! - a job stays IN_PROGRESS until its outcome is known, and a terminal state never changes again;
//! - while IN_PROGRESS, in this order of precedence: a task that failed before the deadline fails the
//!   job (`ERROR_JOB_TASK`); all tasks finished before the deadline (or no tasks at all) succeed it;
//!   a cancel request cancels it; the deadline having passed times it out. Outcomes the workers
//!   already reported are facts, so they win over a cancel that only concerns unfinished work;
//! - unfinished tasks of a job that ended FAILURE, TIMEOUT or CANCELED are marked CANCELED, as
//!   SpaceONE's workers do when they find their job failed or canceled.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, CostAnalysisJobStatus, JobStatus, TaskState, TaskTemplate,
};

pub const ERROR_JOB_TASK: &str = "ERROR_JOB_TASK";
pub const ERROR_JOB_TASK_MESSAGE: &str = "One or more job tasks have failed.";
pub const CONDITION_COMPLETE: &str = "Complete";
pub const CONDITION_FAILED: &str = "Failed";
pub const CONDITION_FINISHED: &str = "Finished";

#[derive(Clone, Debug)]
pub struct Config {
    /// Timeout of jobs without `spec.timeoutSeconds` (SpaceONE's JOB_TIMEOUT).
    pub default_timeout: Duration,
    /// How far the controller's clock may run ahead of the API server's. The deadline is measured
    /// from `metadata.creationTimestamp`, which the API server stamps with its own clock; waiting
    /// this much longer means a controller whose clock runs ahead never times a job out early.
    pub clock_skew_allowance: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_timeout: Duration::seconds(600),
            clock_skew_allowance: Duration::seconds(1),
        }
    }
}

/// What the decision needs to know about the job.
#[derive(Clone, Debug)]
pub struct JobView<'a> {
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`.
    pub created: DateTime<Utc>,
    pub spec: &'a CostAnalysisJobSpec,
    pub status: Option<&'a CostAnalysisJobStatus>,
}

impl<'a> JobView<'a> {
    /// The view of a stored job; `None` without a readable `creationTimestamp` (which the API
    /// server always sets).
    pub fn of(job: &'a CostAnalysisJob) -> Option<Self> {
        Some(JobView {
            generation: job.metadata.generation,
            created: job
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(crate::timestamp::from_k8s)?,
            spec: &job.spec,
            status: job.status.as_ref(),
        })
    }
}

/// What the decision needs to know about one task object owned by the job.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    pub task_id: String,
    pub state: TaskState,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    pub kind: EventKind,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status the job must have.
    pub status: CostAnalysisJobStatus,
    /// Whether `status` differs from the stored one, i.e. whether a write is needed.
    pub status_changed: bool,
    /// Task objects to create.
    pub create_tasks: Vec<TaskTemplate>,
    /// Task ids whose status must become CANCELED.
    pub cancel_tasks: Vec<String>,
    pub events: Vec<EventNote>,
    /// The job's `ttlSecondsAfterFinished` has run out: delete it (its tasks go with it).
    pub delete_job: bool,
    /// When to look at the job again if nothing else changes (a deadline or a TTL expiry).
    pub requeue_after: Option<StdDuration>,
}

/// Decides the next state of a job. `now` is truncated to milliseconds, the precision of stored
/// timestamps, so that recomputing an unchanged job gives a byte-identical status.
pub fn decide(
    job: &JobView<'_>,
    tasks: &[TaskView],
    now: DateTime<Utc>,
    config: &Config,
) -> Decision {
    let now = now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now);
    let previous = job.status.cloned().unwrap_or_default();
    let spec = job.spec;
    let created_at = previous.created_at.unwrap_or(job.created);
    let mut events = Vec::new();
    let spec_is_new = job.generation != previous.observed_generation;
    let (timeout, timeout_at) = deadline(spec.timeout_seconds, created_at, config);
    if spec_is_new && timeout_clamped(spec.timeout_seconds) {
        events.push(EventNote {
            kind: EventKind::Warning,
            reason: "TimeoutClamped",
            note: format!(
                "timeoutSeconds {} is more than the largest supported value; using {MAX_TIMEOUT_SECONDS}",
                spec.timeout_seconds.unwrap_or_default()
            ),
        });
    }
    // Said when the spec is new, not only when the job finishes (by then it may not be new).
    if let Some(ttl) = spec
        .ttl_seconds_after_finished
        .filter(|t| spec_is_new && !(0..=MAX_TTL_SECONDS).contains(t))
    {
        events.push(EventNote {
            kind: EventKind::Warning,
            reason: "TTLClamped",
            note: format!(
                "ttlSecondsAfterFinished {ttl} is out of range; using {}",
                ttl.clamp(0, MAX_TTL_SECONDS)
            ),
        });
    }

    // Task outcomes, for the tasks the spec declares (objects for other ids are ignored).
    let mut unfinished = 0usize;
    let mut first_failure: Option<DateTime<Utc>> = None;
    let mut last_finish: Option<DateTime<Utc>> = None;
    for template in &spec.tasks {
        match tasks.iter().find(|t| t.task_id == template.id) {
            Some(t) if t.state.is_finished() => {
                let at = t.finished_at.unwrap_or(now);
                last_finish = Some(last_finish.map_or(at, |l| l.max(at)));
                if t.state == TaskState::Failure {
                    first_failure = Some(first_failure.map_or(at, |f| f.min(at)));
                }
            }
            _ => unfinished = unfinished.saturating_add(1),
        }
    }
    let total = spec.tasks.len();

    let prior_state = previous.status.unwrap_or(JobStatus::InProgress);
    let mut next = CostAnalysisJobStatus {
        status: Some(prior_state),
        error_code: previous.error_code.clone(),
        error_message: previous.error_message.clone(),
        total_tasks: clamp_i32(total),
        remained_tasks: clamp_i32(unfinished),
        progress: Some(format!("{}/{}", total.saturating_sub(unfinished), total)),
        created_at: Some(created_at),
        updated_at: previous.updated_at,
        finished_at: previous.finished_at,
        observed_generation: job.generation,
        conditions: previous.conditions.clone(),
    };

    // Counters never move backwards: a task that finished stays finished, so a larger count can
    // only come from a task not seen (yet), and that is not news.
    if job.status.is_some() && previous.total_tasks == next.total_tasks {
        next.remained_tasks = next.remained_tasks.min(previous.remained_tasks.max(0));
        next.progress = Some(format!(
            "{}/{}",
            next.total_tasks.saturating_sub(next.remained_tasks),
            next.total_tasks
        ));
    }

    if prior_state.is_terminal() {
        // Terminal states never change; the counters still follow the tasks (a canceled job's
        // tasks finish after it), but state, error and finishedAt stay.
        if spec.cancel && spec_is_new {
            events.push(EventNote {
                kind: EventKind::Warning,
                reason: "CancelIgnored",
                note: format!(
                    "Only running jobs can be canceled. (job_state = {})",
                    prior_state.as_str()
                ),
            });
        }
    } else {
        let outcome = match (first_failure, unfinished, last_finish) {
            (Some(at), _, _) if at <= timeout_at => Some(JobStatus::Failure),
            (None, 0, last) if last.is_none_or(|l| l <= timeout_at) => Some(JobStatus::Success),
            _ if spec.cancel => Some(JobStatus::Canceled),
            _ if now >= timeout_at => Some(JobStatus::Timeout),
            _ => None,
        };
        if let Some(state) = outcome {
            next.status = Some(state);
            next.finished_at = Some(now);
            if state == JobStatus::Failure {
                next.error_code = Some(ERROR_JOB_TASK.to_string());
                next.error_message = Some(ERROR_JOB_TASK_MESSAGE.to_string());
            }
            events.push(transition_event(state, total, unfinished, timeout));
        }
    }

    let state = next.status.unwrap_or(JobStatus::InProgress);
    next.conditions = conditions(state, &next, &previous.conditions, job.generation, now);
    // updatedAt moves whenever anything a SpaceONE client can see changed.
    if next.updated_at.is_none() || visible_change(&previous, &next) {
        next.updated_at = Some(now);
    }
    let status_changed = job.status != Some(&next);

    let create_tasks = if state == JobStatus::InProgress {
        spec.tasks
            .iter()
            .filter(|t| !tasks.iter().any(|o| o.task_id == t.id))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let cancel_tasks = if matches!(
        state,
        JobStatus::Canceled | JobStatus::Timeout | JobStatus::Failure
    ) {
        spec.tasks
            .iter()
            .filter_map(|t| tasks.iter().find(|o| o.task_id == t.id))
            .filter(|t| !t.state.is_finished())
            .map(|t| t.task_id.clone())
            .collect()
    } else {
        Vec::new()
    };

    let mut delete_job = false;
    let requeue_at = if state == JobStatus::InProgress {
        Some(timeout_at)
    } else {
        match ttl_expiry(spec.ttl_seconds_after_finished, next.finished_at) {
            Some(expiry) if now >= expiry => {
                delete_job = true;
                None
            }
            expiry => expiry,
        }
    };
    // A little past the instant, so the next look does not land just before it (the timer runs
    // on the monotonic clock, the deadline is wall-clock time; a look that still lands early finds
    // the deadline a few milliseconds away and requeues for it). Never further than a day away
    // (timers cannot represent the end of time, and a day costs nothing).
    let requeue_after = requeue_at.map(|at| {
        at.signed_duration_since(now)
            .to_std()
            .unwrap_or(StdDuration::ZERO)
            .saturating_add(REQUEUE_MARGIN)
            .min(MAX_REQUEUE)
    });

    Decision {
        status: next,
        status_changed,
        create_tasks,
        cancel_tasks,
        events,
        delete_job,
        requeue_after,
    }
}

/// The status after a cancel through the API: only an IN_PROGRESS job can be canceled, otherwise
/// the current state comes back as the error (SpaceONE's `ERROR_JOB_STATE`). The result is what the
/// controller itself would write for a canceled job, so the controller's next pass changes nothing
/// but the task counters.
pub fn cancel(
    status: Option<&CostAnalysisJobStatus>,
    generation: Option<i64>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<CostAnalysisJobStatus, JobStatus> {
    let now = now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now);
    let previous = status.cloned().unwrap_or_default();
    let state = previous.status.unwrap_or(JobStatus::InProgress);
    if state != JobStatus::InProgress {
        return Err(state);
    }
    let mut next = CostAnalysisJobStatus {
        status: Some(JobStatus::Canceled),
        finished_at: Some(now),
        updated_at: Some(now),
        created_at: previous.created_at.or(Some(created)),
        progress: previous.progress.clone().or_else(|| {
            Some(format!(
                "{}/{}",
                previous
                    .total_tasks
                    .saturating_sub(previous.remained_tasks)
                    .max(0),
                previous.total_tasks
            ))
        }),
        ..previous.clone()
    };
    next.conditions = conditions(
        JobStatus::Canceled,
        &next,
        &previous.conditions,
        previous.observed_generation.or(generation),
        now,
    );
    Ok(next)
}

/// Largest `spec.timeoutSeconds` the schema admits (one year); larger values stored before the
/// schema said so are used as this.
pub const MAX_TIMEOUT_SECONDS: i64 = 31_536_000;
/// Largest `spec.ttlSecondsAfterFinished` the schema admits (ten years).
pub const MAX_TTL_SECONDS: i64 = 315_360_000;

/// The longest a decision waits before it looks at a job again.
pub const MAX_REQUEUE: StdDuration = StdDuration::from_secs(24 * 3600);

/// How far past a deadline or TTL expiry the next look is scheduled.
pub const REQUEUE_MARGIN: StdDuration = StdDuration::from_millis(10);

/// When the job next needs a look, for ordering a pass over many jobs: the earliest instant first.
/// A job the controller has not yet decided on (no status, or a spec it has not seen, such as a
/// new cancel request) needs one now; an unfinished job at its deadline; a finished one at its TTL
/// expiry; a finished job without a TTL only when something changes.
pub fn urgency(job: &JobView<'_>, config: &Config) -> DateTime<Utc> {
    let Some(status) = job.status else {
        return DateTime::<Utc>::MIN_UTC;
    };
    if job.generation != status.observed_generation {
        return DateTime::<Utc>::MIN_UTC;
    }
    let state = status.status.unwrap_or(JobStatus::InProgress);
    if !state.is_terminal() {
        let created_at = status.created_at.unwrap_or(job.created);
        return deadline(job.spec.timeout_seconds, created_at, config).1;
    }
    ttl_expiry(job.spec.ttl_seconds_after_finished, status.finished_at)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The instant an unfinished job times out (its deadline plus the clock-skew allowance), as
/// [`decide`] computes it; the task runner sizes its batch Jobs' `activeDeadlineSeconds` by it.
pub fn timeout_at(job: &JobView<'_>, config: &Config) -> DateTime<Utc> {
    let created_at = job.status.and_then(|s| s.created_at).unwrap_or(job.created);
    deadline(job.spec.timeout_seconds, created_at, config).1
}

/// When the job is due: its creation plus its timeout, without the clock-skew allowance (the
/// instant a TIMEOUT's lateness is measured from).
pub fn due(job: &JobView<'_>, config: &Config) -> DateTime<Utc> {
    let created_at = job.status.and_then(|s| s.created_at).unwrap_or(job.created);
    let (timeout, _) = deadline(job.spec.timeout_seconds, created_at, config);
    created_at
        .checked_add_signed(timeout)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When a finished job's TTL runs out, if it has one. Within the clamp, only a finish time near
/// the end of time can overflow; such a job is then kept, as if it had no TTL.
fn ttl_expiry(ttl: Option<i64>, finished: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    finished?.checked_add_signed(Duration::seconds(ttl?.clamp(0, MAX_TTL_SECONDS)))
}

fn timeout_clamped(timeout_seconds: Option<i64>) -> bool {
    timeout_seconds.is_some_and(|s| s > MAX_TIMEOUT_SECONDS)
}

/// The job's timeout and the instant it times out (deadline plus the clock-skew allowance). Every
/// step is checked: a value the schema should have refused is clamped, and an instant past the
/// end of representable time means "never".
fn deadline(
    timeout_seconds: Option<i64>,
    created_at: DateTime<Utc>,
    config: &Config,
) -> (Duration, DateTime<Utc>) {
    let timeout = timeout_seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::seconds(s.min(MAX_TIMEOUT_SECONDS)))
        .unwrap_or(config.default_timeout);
    let at = created_at
        .checked_add_signed(timeout)
        .and_then(|d| d.checked_add_signed(config.clock_skew_allowance))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    (timeout, at)
}

fn clamp_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn visible_change(a: &CostAnalysisJobStatus, b: &CostAnalysisJobStatus) -> bool {
    a.status != b.status
        || a.remained_tasks != b.remained_tasks
        || a.total_tasks != b.total_tasks
        || a.error_code != b.error_code
        || a.error_message != b.error_message
        || a.finished_at != b.finished_at
}

fn transition_event(
    state: JobStatus,
    total: usize,
    unfinished: usize,
    timeout: Duration,
) -> EventNote {
    let (kind, reason, note) = match state {
        JobStatus::Success => (
            EventKind::Normal,
            "Succeeded",
            format!("All {total} tasks finished"),
        ),
        JobStatus::Failure => (
            EventKind::Warning,
            "Failed",
            format!("{ERROR_JOB_TASK}: {ERROR_JOB_TASK_MESSAGE}"),
        ),
        JobStatus::Canceled => (
            EventKind::Normal,
            "Canceled",
            format!("Canceled with {unfinished} of {total} tasks unfinished"),
        ),
        JobStatus::Timeout => (
            EventKind::Warning,
            "TimedOut",
            format!(
                "Still in progress {}s after creation, {unfinished} of {total} tasks unfinished",
                timeout.num_seconds()
            ),
        ),
        JobStatus::InProgress => (EventKind::Normal, "InProgress", String::new()),
    };
    EventNote { kind, reason, note }
}

/// The standard conditions: `Complete` (SUCCESS), `Failed` (FAILURE, TIMEOUT or CANCELED; the
/// reason says which) and `Finished` (any terminal state). `lastTransitionTime` only moves when a
/// condition's status flips, as the metav1.Condition contract requires.
fn conditions(
    state: JobStatus,
    status: &CostAnalysisJobStatus,
    previous: &[Condition],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let reason = match state {
        JobStatus::InProgress => "InProgress",
        JobStatus::Success => "Succeeded",
        JobStatus::Failure => "Failed",
        JobStatus::Timeout => "TimedOut",
        JobStatus::Canceled => "Canceled",
    };
    let message = match state {
        JobStatus::InProgress => format!(
            "{} of {} tasks remain",
            status.remained_tasks, status.total_tasks
        ),
        JobStatus::Failure => status.error_message.clone().unwrap_or_default(),
        other => format!("Job {}", other.as_str()),
    };
    let wanted = [
        (CONDITION_COMPLETE, state == JobStatus::Success),
        (
            CONDITION_FAILED,
            matches!(
                state,
                JobStatus::Failure | JobStatus::Timeout | JobStatus::Canceled
            ),
        ),
        (CONDITION_FINISHED, state.is_terminal()),
    ];
    wanted
        .iter()
        .map(|(type_, on)| {
            let value = if *on { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == *type_ && c.status == value)
                .map(|c| c.last_transition_time.clone());
            Condition {
                type_: (*type_).to_string(),
                status: value.to_string(),
                reason: reason.to_string(),
                message: message.clone(),
                observed_generation: generation,
                last_transition_time: since.unwrap_or_else(|| to_k8s_time(now)),
            }
        })
        .collect()
}

fn to_k8s_time(t: DateTime<Utc>) -> Time {
    // Condition times are second-precision in the API (metav1.Time), so store them that way.
    let secs = t.timestamp();
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
