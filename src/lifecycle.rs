//! The job lifecycle as one pure function: given a job, the tasks observed for it, the time and the
//! configuration, [`decide`] says what the job's status must be, which tasks to create or cancel,
//! which events to record, whether to delete the job, and when to look again. No I/O happens here,
//! so every transition is unit-tested without a cluster.
//!
//! The rules (SpaceONE's, made exact; see docs/design.md) are named pure functions in [`rules`],
//! each with its own unit tests; `decide` gathers their facts and applies them. The job's state is
//! the first answer of [`rules::STATE_RULES`], in this order of precedence:
//! 1. `terminal_stays`: a terminal state never changes again;
//! 2. `task_failed`: a task that failed before the deadline fails the job (`ERROR_JOB_TASK`);
//! 3. `all_tasks_finished`: all tasks finished before the deadline (or no tasks at all) succeed it;
//! 4. `cancel_requested`: a cancel request cancels it;
//! 5. `deadline_passed`: the deadline having passed times it out;
//!
//! and none answering leaves it IN_PROGRESS. Outcomes the workers already reported are facts, so
//! they win over a cancel that only concerns unfinished work. From the state: counters never move
//! backwards (`remained_tasks`), tasks are created only while IN_PROGRESS (`tasks_to_create`),
//! unfinished tasks of a job that ended FAILURE, TIMEOUT or CANCELED are marked CANCELED, as
//! SpaceONE's workers do when they find their job failed or canceled (`tasks_to_cancel`), a cancel
//! request after the end is answered with an event (`cancel_ignored`), and a finished job's TTL
//! deletes it (`ttl_expired`).
//!
//! A job that its tasks failed names them, with their errors, in its `Failed` event and its
//! conditions ([`explain`]); its SpaceONE error stays SpaceONE's.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, DurationRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, CostAnalysisJobStatus, JobStatus, TaskTemplate,
};

pub mod explain;
pub mod rules;

pub use rules::TaskView;

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
/// timestamps, so that recomputing an unchanged job gives a byte-identical status. The rules and
/// their order of precedence are in [`rules`]; this function gathers their facts and applies them.
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
    let spec_is_new = job.generation != previous.observed_generation;
    let (timeout, timeout_at) = deadline(spec.timeout_seconds, created_at, config);
    let mut events = if spec_is_new {
        clamp_warnings(spec)
    } else {
        Vec::new()
    };

    let facts = rules::Facts {
        prior: previous.status.unwrap_or(JobStatus::InProgress),
        tasks: rules::tally(&spec.tasks, tasks, now),
        cancel: spec.cancel,
        timeout_at,
        now,
    };
    let state = rules::state(&facts);
    let (total, unfinished) = (facts.tasks.total, facts.tasks.unfinished);
    let remained = rules::remained_tasks(
        job.status.map(|s| (s.total_tasks, s.remained_tasks)),
        clamp_i32(total),
        clamp_i32(unfinished),
    );
    let mut next = CostAnalysisJobStatus {
        status: Some(state),
        error_code: previous.error_code.clone(),
        error_message: previous.error_message.clone(),
        total_tasks: clamp_i32(total),
        remained_tasks: remained,
        progress: Some(format!(
            "{}/{}",
            clamp_i32(total).saturating_sub(remained),
            clamp_i32(total)
        )),
        created_at: Some(created_at),
        updated_at: previous.updated_at,
        finished_at: previous.finished_at,
        observed_generation: job.generation,
        conditions: previous.conditions.clone(),
    };

    // The failed tasks, named in the Failed event and the conditions (`explain`); once said, the
    // conditions keep saying it.
    let failure = (state == JobStatus::Failure).then(|| {
        kept_failure_message(&previous.conditions).unwrap_or_else(|| {
            let declared: Vec<&TaskView> = tasks
                .iter()
                .filter(|t| spec.tasks.iter().any(|d| d.id == t.task_id))
                .collect();
            explain::task_failure(ERROR_JOB_TASK, ERROR_JOB_TASK_MESSAGE, &declared)
        })
    });
    if let Some(note) = rules::cancel_ignored(facts.prior, spec.cancel, spec_is_new) {
        events.push(EventNote {
            kind: EventKind::Warning,
            reason: "CancelIgnored",
            note,
        });
    }
    if state != facts.prior {
        next.finished_at = Some(now);
        if state == JobStatus::Failure {
            next.error_code = Some(ERROR_JOB_TASK.to_string());
            next.error_message = Some(ERROR_JOB_TASK_MESSAGE.to_string());
        }
        events.push(transition_event(
            state,
            total,
            unfinished,
            timeout,
            failure.as_deref(),
        ));
    }

    let message = condition_message(state, &next, failure.as_deref());
    next.conditions = conditions(state, &message, &previous.conditions, job.generation, now);
    // updatedAt moves whenever anything a SpaceONE client can see changed.
    if next.updated_at.is_none() || visible_change(&previous, &next) {
        next.updated_at = Some(now);
    }
    let status_changed = job.status != Some(&next);

    let create_tasks = rules::tasks_to_create(state, &spec.tasks, tasks);
    let cancel_tasks = rules::tasks_to_cancel(state, &spec.tasks, tasks);

    let ttl = ttl_expiry(spec.ttl_seconds_after_finished, next.finished_at);
    let delete_job = rules::ttl_expired(state, ttl, now);
    let requeue_at = if state == JobStatus::InProgress {
        Some(timeout_at)
    } else if delete_job {
        None
    } else {
        ttl
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

/// Warnings about spec values past what the schema admits (stored before it said so), said when
/// the spec is new, not only when the job finishes (by then it may not be new).
fn clamp_warnings(spec: &CostAnalysisJobSpec) -> Vec<EventNote> {
    let mut events = Vec::new();
    if timeout_clamped(spec.timeout_seconds) {
        events.push(EventNote {
            kind: EventKind::Warning,
            reason: "TimeoutClamped",
            note: format!(
                "timeoutSeconds {} is more than the largest supported value; using {MAX_TIMEOUT_SECONDS}",
                spec.timeout_seconds.unwrap_or_default()
            ),
        });
    }
    if let Some(ttl) = spec
        .ttl_seconds_after_finished
        .filter(|t| !(0..=MAX_TTL_SECONDS).contains(t))
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
    events
}

/// The message of a `Failed` condition already `True`: what the job said when it failed.
fn kept_failure_message(previous: &[Condition]) -> Option<String> {
    previous
        .iter()
        .find(|c| c.type_ == CONDITION_FAILED && c.status == "True")
        .map(|c| c.message.clone())
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
        &condition_message(JobStatus::Canceled, &next, None),
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
    failure: Option<&str>,
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
            failure.map_or_else(
                || format!("{ERROR_JOB_TASK}: {ERROR_JOB_TASK_MESSAGE}"),
                str::to_string,
            ),
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

/// The conditions' message: the remaining tasks while the job runs; for a FAILURE the failed
/// tasks and their errors (`failure`, from [`explain`]; SpaceONE's message without it); the state
/// otherwise.
fn condition_message(
    state: JobStatus,
    status: &CostAnalysisJobStatus,
    failure: Option<&str>,
) -> String {
    match (state, failure) {
        (JobStatus::InProgress, _) => format!(
            "{} of {} tasks remain",
            status.remained_tasks, status.total_tasks
        ),
        (JobStatus::Failure, Some(f)) => f.to_string(),
        (JobStatus::Failure, None) => status.error_message.clone().unwrap_or_default(),
        (other, _) => format!("Job {}", other.as_str()),
    }
}

/// The standard conditions: `Complete` (SUCCESS), `Failed` (FAILURE, TIMEOUT or CANCELED; the
/// reason says which) and `Finished` (any terminal state). `lastTransitionTime` only moves when a
/// condition's status flips, as the metav1.Condition contract requires.
fn conditions(
    state: JobStatus,
    message: &str,
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
                message: message.to_string(),
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
