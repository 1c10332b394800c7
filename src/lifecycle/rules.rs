//! The lifecycle's rules, each a small pure function with its own unit tests
//! (`rules_tests.rs`); [`crate::lifecycle::decide`] gathers the [`Facts`] and applies them.
//!
//! **The job's state** is the first answer of [`STATE_RULES`], in this order of precedence:
//! 1. [`terminal_stays`]: a terminal state never changes;
//! 2. [`task_failed`]: a task that failed before the deadline fails the job (`ERROR_JOB_TASK`);
//! 3. [`all_tasks_finished`]: all tasks finished before the deadline (or no tasks at all)
//!    succeed it;
//! 4. [`cancel_requested`]: a cancel request cancels it;
//! 5. [`deadline_passed`]: the deadline having passed times it out.
//!
//! No answer: the job stays IN_PROGRESS. Outcomes the workers already reported are facts, so they
//! win over a cancel, which only concerns unfinished work; a cancel wins over an expired deadline
//! because it is an explicit request.
//!
//! **Then, from the state decided**: [`remained_tasks`] (counters never move backwards),
//! [`tasks_to_create`] (only while IN_PROGRESS), [`tasks_to_cancel`] (unfinished tasks of a job
//! that ended FAILURE, TIMEOUT or CANCELED), [`cancel_ignored`] (a cancel request after the end is
//! answered with an event) and [`ttl_expired`] (a finished job's TTL).

use chrono::{DateTime, Utc};

use crate::resources::{CostAnalysisJobTask, JobStatus, TaskState, TaskTemplate};

/// What the decision needs to know about one task object owned by the job.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskView {
    pub task_id: String,
    /// The task object's name (`<job>.<task id>`, or `<job>-<task id>` from older releases).
    pub name: String,
    pub state: TaskState,
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker's SpaceONE error code and message, for a failed task.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl TaskView {
    /// The view of a stored task object, as the job's task `task_id`.
    pub fn of(task_id: &str, task: &CostAnalysisJobTask) -> TaskView {
        let status = task.status.as_ref();
        TaskView {
            task_id: task_id.to_string(),
            name: task.metadata.name.clone().unwrap_or_default(),
            state: task.state(),
            finished_at: status.and_then(|s| s.finished_at),
            error_code: status.and_then(|s| s.error_code.clone()),
            error_message: status.and_then(|s| s.error_message.clone()),
        }
    }

    /// A task object just created (`name`), not started.
    pub fn pending(task_id: &str, name: String) -> TaskView {
        TaskView {
            task_id: task_id.to_string(),
            name,
            state: TaskState::Pending,
            finished_at: None,
            error_code: None,
            error_message: None,
        }
    }
}

/// The outcomes of the tasks the spec declares (objects for other ids are ignored).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub total: usize,
    /// Declared tasks without an object, or whose object has not finished.
    pub unfinished: usize,
    /// The earliest `finishedAt` of a failed task (now, for one without).
    pub first_failure: Option<DateTime<Utc>>,
    /// The latest `finishedAt` of a finished task (now, for one without).
    pub last_finish: Option<DateTime<Utc>>,
}

/// Counts the declared tasks' outcomes; a finished task without `finishedAt` finished `now`.
pub fn tally(declared: &[TaskTemplate], tasks: &[TaskView], now: DateTime<Utc>) -> Tally {
    let mut t = Tally {
        total: declared.len(),
        ..Tally::default()
    };
    for template in declared {
        match tasks.iter().find(|o| o.task_id == template.id) {
            Some(o) if o.state.is_finished() => {
                let at = o.finished_at.unwrap_or(now);
                t.last_finish = Some(t.last_finish.map_or(at, |l| l.max(at)));
                if o.state == TaskState::Failure {
                    t.first_failure = Some(t.first_failure.map_or(at, |f| f.min(at)));
                }
            }
            _ => t.unfinished = t.unfinished.saturating_add(1),
        }
    }
    t
}

/// What the state rules look at.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// The stored state (IN_PROGRESS when there is none).
    pub prior: JobStatus,
    pub tasks: Tally,
    /// `spec.cancel`.
    pub cancel: bool,
    /// The deadline plus the clock-skew allowance.
    pub timeout_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// A state rule: the job's state if the rule applies, `None` to leave it to the next rule.
pub type StateRule = fn(&Facts) -> Option<JobStatus>;

/// The state rules in their order of precedence (the module comment says why), by name.
pub const STATE_RULES: [(&str, StateRule); 5] = [
    ("terminal_stays", terminal_stays),
    ("task_failed", task_failed),
    ("all_tasks_finished", all_tasks_finished),
    ("cancel_requested", cancel_requested),
    ("deadline_passed", deadline_passed),
];

/// The job's state: the first rule's answer in [`STATE_RULES`], IN_PROGRESS if none answers.
pub fn state(facts: &Facts) -> JobStatus {
    STATE_RULES
        .iter()
        .find_map(|(_, rule)| rule(facts))
        .unwrap_or(JobStatus::InProgress)
}

/// A terminal state never changes (whatever the tasks, the cancel request or the clock say).
pub fn terminal_stays(f: &Facts) -> Option<JobStatus> {
    f.prior.is_terminal().then_some(f.prior)
}

/// A task that failed before the deadline fails the job. A failure after it does not: by then
/// the job had timed out, whether or not anyone looked.
pub fn task_failed(f: &Facts) -> Option<JobStatus> {
    f.tasks
        .first_failure
        .is_some_and(|at| at <= f.timeout_at)
        .then_some(JobStatus::Failure)
}

/// Every declared task finished, none failed, the last before the deadline (or there are no
/// tasks): the job succeeds, also when the controller only looks after the deadline.
pub fn all_tasks_finished(f: &Facts) -> Option<JobStatus> {
    (f.tasks.first_failure.is_none()
        && f.tasks.unfinished == 0
        && f.tasks.last_finish.is_none_or(|l| l <= f.timeout_at))
    .then_some(JobStatus::Success)
}

/// A cancel request cancels a job whose outcome the tasks have not decided.
pub fn cancel_requested(f: &Facts) -> Option<JobStatus> {
    f.cancel.then_some(JobStatus::Canceled)
}

/// The deadline (plus the clock-skew allowance) has passed: the job times out.
pub fn deadline_passed(f: &Facts) -> Option<JobStatus> {
    (f.now >= f.timeout_at).then_some(JobStatus::Timeout)
}

/// `remainedTasks`: the unfinished tasks, but never more than the stored count for the same
/// number of tasks. A finished task stays finished, so a larger count could only come from a task
/// not seen (yet), which is not news.
pub fn remained_tasks(stored: Option<(i32, i32)>, total: i32, unfinished: i32) -> i32 {
    match stored {
        Some((stored_total, stored_remained)) if stored_total == total => {
            unfinished.min(stored_remained.max(0))
        }
        _ => unfinished,
    }
}

/// The declared tasks without an object, while the job is IN_PROGRESS; none once it ended.
pub fn tasks_to_create(
    state: JobStatus,
    declared: &[TaskTemplate],
    tasks: &[TaskView],
) -> Vec<TaskTemplate> {
    if state != JobStatus::InProgress {
        return Vec::new();
    }
    declared
        .iter()
        .filter(|t| !tasks.iter().any(|o| o.task_id == t.id))
        .cloned()
        .collect()
}

/// The ids of the declared tasks whose objects have not finished, once the job ended FAILURE,
/// TIMEOUT or CANCELED: they become CANCELED, as SpaceONE's workers do when they find their job
/// failed or canceled. A finished task is never among them.
pub fn tasks_to_cancel(
    state: JobStatus,
    declared: &[TaskTemplate],
    tasks: &[TaskView],
) -> Vec<String> {
    if !matches!(
        state,
        JobStatus::Canceled | JobStatus::Timeout | JobStatus::Failure
    ) {
        return Vec::new();
    }
    declared
        .iter()
        .filter_map(|t| tasks.iter().find(|o| o.task_id == t.id))
        .filter(|t| !t.state.is_finished())
        .map(|t| t.task_id.clone())
        .collect()
}

/// SpaceONE's answer to a cancel request a finished job receives (once per spec generation):
/// the state does not change, the message says why.
pub fn cancel_ignored(prior: JobStatus, cancel: bool, spec_is_new: bool) -> Option<String> {
    (prior.is_terminal() && cancel && spec_is_new).then(|| {
        format!(
            "Only running jobs can be canceled. (job_state = {})",
            prior.as_str()
        )
    })
}

/// Whether a finished job's TTL ran out (`expiry` from `ttlSecondsAfterFinished` and
/// `finishedAt`; none: kept).
pub fn ttl_expired(state: JobStatus, expiry: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    state.is_terminal() && expiry.is_some_and(|e| now >= e)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
