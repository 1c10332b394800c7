#![allow(clippy::arithmetic_side_effects)]

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::resources::{CostAnalysisJobSpec, CostAnalysisJobStatus, JobStatus, TaskState};
use crate::testing::SpecBuilder;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn spec(tasks: &[&str]) -> CostAnalysisJobSpec {
    SpecBuilder::new().tasks(tasks).build()
}

fn task(id: &str, state: TaskState, finished: Option<DateTime<Utc>>) -> TaskView {
    TaskView {
        task_id: id.into(),
        name: format!("job-1.{id}"),
        state,
        finished_at: finished,
        error_code: None,
        error_message: None,
    }
}

/// Runs `decide` and feeds its status back, like the API server would store it.
struct Job {
    spec: CostAnalysisJobSpec,
    status: Option<CostAnalysisJobStatus>,
    generation: i64,
}

impl Job {
    fn new(spec: CostAnalysisJobSpec) -> Self {
        Job {
            spec,
            status: None,
            generation: 1,
        }
    }

    fn step(&mut self, tasks: &[TaskView], now: DateTime<Utc>) -> Decision {
        let view = JobView {
            generation: Some(self.generation),
            created: t0(),
            spec: &self.spec,
            status: self.status.as_ref(),
        };
        let d = decide(&view, tasks, now, &Config::default());
        self.status = Some(d.status.clone());
        d
    }

    fn state(&self) -> Option<JobStatus> {
        self.status.as_ref().and_then(|s| s.status)
    }
}

fn condition<'a>(d: &'a Decision, t: &str) -> &'a str {
    d.status
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.as_str())
        .unwrap_or("missing")
}

#[test]
fn job_without_tasks_succeeds_at_once() {
    let mut job = Job::new(spec(&[]));
    let d = job.step(&[], t0() + Duration::seconds(1));
    assert_eq!(job.state(), Some(JobStatus::Success));
    assert_eq!(d.status.finished_at, Some(t0() + Duration::seconds(1)));
    assert_eq!(d.status.total_tasks, 0);
    assert_eq!(d.status.remained_tasks, 0);
    assert_eq!(d.status.progress.as_deref(), Some("0/0"));
    assert_eq!(condition(&d, CONDITION_COMPLETE), "True");
    assert_eq!(condition(&d, CONDITION_FINISHED), "True");
    assert_eq!(condition(&d, CONDITION_FAILED), "False");
    assert!(d.create_tasks.is_empty() && d.cancel_tasks.is_empty());
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].reason, "Succeeded");
    assert_eq!(d.requeue_after, None);
}

#[test]
fn new_job_creates_its_tasks_and_waits_for_the_deadline() {
    let mut job = Job::new(spec(&["a", "b", "c"]));
    let now = t0() + Duration::seconds(10);
    let d = job.step(&[], now);
    assert_eq!(job.state(), Some(JobStatus::InProgress));
    assert_eq!(
        d.create_tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!((d.status.total_tasks, d.status.remained_tasks), (3, 3));
    assert_eq!(d.status.created_at, Some(t0()));
    assert_eq!(d.status.finished_at, None);
    assert_eq!(condition(&d, CONDITION_FINISHED), "False");
    // 600 s default timeout + 1 s skew allowance, from creation; 10 s have passed.
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_millis(591_010))
    );
    assert!(d.status_changed);
}

#[test]
fn remained_tasks_count_down_then_success() {
    let mut job = Job::new(spec(&["a", "b", "c"]));
    let pending: Vec<TaskView> = ["a", "b", "c"]
        .iter()
        .map(|i| task(i, TaskState::Pending, None))
        .collect();
    job.step(&pending, t0() + Duration::seconds(1));
    let mut tasks = pending.clone();
    let mut remained = vec![];
    for (i, at) in [(0usize, 5i64), (1, 6), (2, 7)] {
        tasks[i] = task(
            &tasks[i].task_id.clone(),
            TaskState::Success,
            Some(t0() + Duration::seconds(at)),
        );
        let d = job.step(&tasks, t0() + Duration::seconds(at));
        remained.push(d.status.remained_tasks);
        assert_eq!(d.status.updated_at, Some(t0() + Duration::seconds(at)));
    }
    assert_eq!(remained, [2, 1, 0]);
    assert_eq!(job.state(), Some(JobStatus::Success));
    assert_eq!(
        job.status
            .as_ref()
            .and_then(|s| s.progress.clone())
            .as_deref(),
        Some("3/3")
    );
}

#[test]
fn in_progress_and_canceled_tasks_count_as_unfinished_or_finished() {
    let mut job = Job::new(spec(&["a", "b"]));
    let d = job.step(
        &[
            task("a", TaskState::InProgress, None),
            task("b", TaskState::Canceled, Some(t0())),
        ],
        t0() + Duration::seconds(2),
    );
    assert_eq!(d.status.remained_tasks, 1);
    assert_eq!(job.state(), Some(JobStatus::InProgress));
}

#[test]
fn a_failed_task_fails_the_job_and_cancels_the_rest() {
    let mut job = Job::new(spec(&["a", "b", "c"]));
    let tasks = [
        task("a", TaskState::Success, Some(t0() + Duration::seconds(3))),
        task("b", TaskState::Failure, Some(t0() + Duration::seconds(4))),
        task("c", TaskState::InProgress, None),
    ];
    let d = job.step(&tasks, t0() + Duration::seconds(5));
    assert_eq!(job.state(), Some(JobStatus::Failure));
    assert_eq!(d.status.error_code.as_deref(), Some("ERROR_JOB_TASK"));
    assert_eq!(
        d.status.error_message.as_deref(),
        Some("One or more job tasks have failed.")
    );
    assert_eq!(d.cancel_tasks, ["c"]);
    assert_eq!(d.status.remained_tasks, 1);
    assert_eq!(condition(&d, CONDITION_FAILED), "True");
    assert_eq!(condition(&d, CONDITION_COMPLETE), "False");
    let failed = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_FAILED);
    assert_eq!(failed.map(|c| c.reason.as_str()), Some("Failed"));
    assert_eq!(d.events[0].kind, EventKind::Warning);
}

fn failed_task(id: &str, at: i64, code: &str, message: &str) -> TaskView {
    TaskView {
        error_code: Some(code.into()),
        error_message: Some(message.into()),
        ..task(id, TaskState::Failure, Some(t0() + Duration::seconds(at)))
    }
}

#[test]
fn a_failed_job_names_its_failed_tasks_in_its_event_and_conditions() {
    let mut job = Job::new(spec(&["a", "b", "c"]));
    let tasks = [
        failed_task("b", 4, "ERROR_QUOTA", "quota exceeded"),
        task("a", TaskState::Success, Some(t0() + Duration::seconds(3))),
        failed_task("c", 2, "ERROR_TOKEN", "token expired"),
    ];
    let d = job.step(&tasks, t0() + Duration::seconds(5));
    let said = "ERROR_JOB_TASK: One or more job tasks have failed. Failed tasks: \
                job-1.c (ERROR_TOKEN: token expired); job-1.b (ERROR_QUOTA: quota exceeded)";
    // JobInfo's own error stays SpaceONE's.
    assert_eq!(d.status.error_code.as_deref(), Some(ERROR_JOB_TASK));
    assert_eq!(
        d.status.error_message.as_deref(),
        Some(ERROR_JOB_TASK_MESSAGE)
    );
    assert_eq!(d.events.len(), 1);
    assert_eq!(
        (d.events[0].reason, d.events[0].note.as_str()),
        ("Failed", said)
    );
    for c in &d.status.conditions {
        assert_eq!(c.message, said, "{}", c.type_);
    }
    // What was said stays said: a task that fails later (or is canceled) changes nothing.
    let later = [
        failed_task("b", 4, "ERROR_QUOTA", "quota exceeded"),
        failed_task("a", 9, "ERROR_LATE", "late"),
        failed_task("c", 2, "ERROR_TOKEN", "token expired"),
    ];
    let d2 = job.step(&later, t0() + Duration::seconds(10));
    assert!(!d2.status_changed);
    assert!(d2.events.is_empty());
}

#[test]
fn a_failure_stored_without_conditions_is_explained_once() {
    let mut job = Job::new(spec(&["a"]));
    job.status = Some(CostAnalysisJobStatus {
        status: Some(JobStatus::Failure),
        observed_generation: Some(1),
        ..CostAnalysisJobStatus::default()
    });
    let tasks = [failed_task("a", 1, "E", "m")];
    let d = job.step(&tasks, t0() + Duration::seconds(2));
    assert!(d.events.is_empty(), "no second Failed event");
    let failed = d
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_FAILED);
    assert!(failed.is_some_and(|c| c.message.ends_with("Failed task: job-1.a (E: m)")));
    assert!(!job.step(&tasks, t0() + Duration::seconds(3)).status_changed);
}

#[test]
fn cancel_request_cancels_a_running_job_and_its_unfinished_tasks() {
    let mut job = Job::new(spec(&["a", "b"]));
    job.step(&[], t0() + Duration::seconds(1));
    job.spec.cancel = true;
    job.generation = 2;
    let tasks = [
        task("a", TaskState::Success, Some(t0() + Duration::seconds(2))),
        task("b", TaskState::Pending, None),
    ];
    let d = job.step(&tasks, t0() + Duration::seconds(3));
    assert_eq!(job.state(), Some(JobStatus::Canceled));
    assert_eq!(d.status.finished_at, Some(t0() + Duration::seconds(3)));
    assert_eq!(d.cancel_tasks, ["b"]);
    // SpaceONE: canceling touches neither total nor remained.
    assert_eq!((d.status.total_tasks, d.status.remained_tasks), (2, 1));
    assert_eq!(d.status.observed_generation, Some(2));
    assert_eq!(d.events[0].reason, "Canceled");
    // Tasks not created yet are never created for a finished job.
    let d = job.step(&[tasks[0].clone()], t0() + Duration::seconds(4));
    assert!(d.create_tasks.is_empty());
}

#[test]
fn cancel_after_success_changes_nothing_but_warns_once() {
    let mut job = Job::new(spec(&[]));
    job.step(&[], t0() + Duration::seconds(1));
    let settled = job.status.clone();
    job.spec.cancel = true;
    job.generation = 2;
    let d = job.step(&[], t0() + Duration::seconds(30));
    assert_eq!(job.state(), Some(JobStatus::Success));
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.events[0].kind, EventKind::Warning);
    assert_eq!(
        d.events[0].note,
        "Only running jobs can be canceled. (job_state = SUCCESS)"
    );
    let mut expected = settled.clone().unwrap_or_default();
    expected.observed_generation = Some(2);
    for c in &mut expected.conditions {
        c.observed_generation = Some(2);
    }
    assert_eq!(d.status, expected, "only observedGeneration moves");
    let again = job.step(&[], t0() + Duration::seconds(60));
    assert!(again.events.is_empty());
    assert!(!again.status_changed);
}

#[test]
fn deadline_times_the_job_out_and_cancels_unfinished_tasks() {
    let mut s = spec(&["a", "b"]);
    s.timeout_seconds = Some(30);
    let mut job = Job::new(s);
    let tasks = [
        task("a", TaskState::InProgress, None),
        task("b", TaskState::Success, Some(t0() + Duration::seconds(5))),
    ];
    let d = job.step(&tasks, t0() + Duration::seconds(30));
    assert_eq!(
        job.state(),
        Some(JobStatus::InProgress),
        "the skew allowance is not over yet"
    );
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_millis(1010))
    );
    let d = job.step(&tasks, t0() + Duration::seconds(31));
    assert_eq!(job.state(), Some(JobStatus::Timeout));
    assert_eq!(d.cancel_tasks, ["a"]);
    assert_eq!(d.status.finished_at, Some(t0() + Duration::seconds(31)));
    assert_eq!(condition(&d, CONDITION_FAILED), "True");
    assert_eq!(d.events[0].reason, "TimedOut");
}

#[test]
fn default_timeout_comes_from_the_config() {
    let s = spec(&["a"]);
    let view = JobView {
        generation: Some(1),
        created: t0(),
        spec: &s,
        status: None,
    };
    let config = Config {
        default_timeout: Duration::seconds(5),
        clock_skew_allowance: Duration::zero(),
    };
    let d = decide(&view, &[], t0() + Duration::seconds(5), &config);
    assert_eq!(d.status.status, Some(JobStatus::Timeout));
}

#[test]
fn work_finished_before_the_deadline_is_a_success_even_if_seen_late() {
    let mut s = spec(&["a"]);
    s.timeout_seconds = Some(10);
    let mut job = Job::new(s);
    let d = job.step(
        &[task(
            "a",
            TaskState::Success,
            Some(t0() + Duration::seconds(9)),
        )],
        t0() + Duration::seconds(100),
    );
    assert_eq!(job.state(), Some(JobStatus::Success));
    assert_eq!(d.status.finished_at, Some(t0() + Duration::seconds(100)));
    let mut job2 = Job::new(job.spec.clone());
    job2.step(
        &[task(
            "a",
            TaskState::Success,
            Some(t0() + Duration::seconds(20)),
        )],
        t0() + Duration::seconds(100),
    );
    assert_eq!(
        job2.state(),
        Some(JobStatus::Timeout),
        "finished after the deadline"
    );
}

#[test]
fn reported_outcomes_win_over_a_cancel_in_the_same_pass() {
    let mut s = spec(&["a"]);
    s.cancel = true;
    let mut job = Job::new(s.clone());
    job.step(
        &[task("a", TaskState::Success, Some(t0()))],
        t0() + Duration::seconds(1),
    );
    assert_eq!(job.state(), Some(JobStatus::Success));
    let mut job = Job::new(s);
    job.step(
        &[task("a", TaskState::Failure, Some(t0()))],
        t0() + Duration::seconds(1),
    );
    assert_eq!(job.state(), Some(JobStatus::Failure));
}

#[test]
fn cancel_wins_over_an_expired_deadline() {
    let mut s = spec(&["a"]);
    s.timeout_seconds = Some(1);
    s.cancel = true;
    let mut job = Job::new(s);
    job.step(
        &[task("a", TaskState::Pending, None)],
        t0() + Duration::seconds(100),
    );
    assert_eq!(job.state(), Some(JobStatus::Canceled));
}

#[test]
fn terminal_states_never_change_but_counters_follow_tasks() {
    for terminal in [
        JobStatus::Success,
        JobStatus::Failure,
        JobStatus::Timeout,
        JobStatus::Canceled,
    ] {
        let mut job = Job::new(spec(&["a", "b"]));
        job.status = Some(CostAnalysisJobStatus {
            status: Some(terminal),
            finished_at: Some(t0() + Duration::seconds(1)),
            remained_tasks: 2,
            total_tasks: 2,
            ..Default::default()
        });
        let tasks = [
            task("a", TaskState::Failure, Some(t0())),
            task("b", TaskState::Success, Some(t0())),
        ];
        let d = job.step(&tasks, t0() + Duration::seconds(5000));
        assert_eq!(job.state(), Some(terminal));
        assert_eq!(d.status.finished_at, Some(t0() + Duration::seconds(1)));
        assert_eq!(d.status.remained_tasks, 0);
        assert!(d.cancel_tasks.is_empty());
        assert!(d.create_tasks.is_empty());
        assert!(d.events.is_empty());
    }
}

#[test]
fn a_settled_job_needs_no_write() {
    let mut job = Job::new(spec(&["a"]));
    let tasks = [task("a", TaskState::Pending, None)];
    assert!(job.step(&tasks, t0() + Duration::seconds(1)).status_changed);
    let d = job.step(&tasks, t0() + Duration::seconds(2));
    assert!(
        !d.status_changed,
        "an in-progress job with no news is not rewritten"
    );
    let done = [task(
        "a",
        TaskState::Success,
        Some(t0() + Duration::seconds(3)),
    )];
    assert!(job.step(&done, t0() + Duration::seconds(3)).status_changed);
    for s in [4, 50, 5000] {
        let d = job.step(&done, t0() + Duration::seconds(s));
        assert!(!d.status_changed);
        assert!(d.events.is_empty());
        assert_eq!(d.requeue_after, None);
    }
}

#[test]
fn conditions_keep_their_transition_time() {
    let mut job = Job::new(spec(&["a", "b"]));
    let d1 = job.step(&[], t0() + Duration::seconds(1));
    let d2 = job.step(
        &[task("a", TaskState::Success, Some(t0()))],
        t0() + Duration::seconds(9),
    );
    let time = |d: &Decision| {
        d.status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_FINISHED)
            .map(|c| c.last_transition_time.clone())
    };
    assert_eq!(time(&d1), time(&d2));
}

#[test]
fn a_controller_clock_behind_the_server_never_goes_negative() {
    let mut s = spec(&["a"]);
    s.timeout_seconds = Some(10);
    let mut job = Job::new(s);
    // creationTimestamp is 5 s ahead of the controller's clock.
    let d = job.step(&[], t0() - Duration::seconds(5));
    assert_eq!(job.state(), Some(JobStatus::InProgress));
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_millis(16_010))
    );
}

#[test]
fn ttl_after_finished_requeues_then_deletes() {
    let mut s = spec(&[]);
    s.ttl_seconds_after_finished = Some(60);
    let mut job = Job::new(s);
    let d = job.step(&[], t0() + Duration::seconds(1));
    assert_eq!(
        d.requeue_after,
        Some(std::time::Duration::from_millis(60_010))
    );
    assert!(!d.delete_job);
    let d = job.step(&[], t0() + Duration::seconds(61));
    assert!(d.delete_job);
}

#[test]
fn tasks_the_spec_does_not_declare_are_ignored() {
    let mut job = Job::new(spec(&["a"]));
    let d = job.step(
        &[
            task("zzz", TaskState::Failure, Some(t0())),
            task("a", TaskState::Pending, None),
        ],
        t0(),
    );
    assert_eq!(job.state(), Some(JobStatus::InProgress));
    assert_eq!(d.status.remained_tasks, 1);
}

#[test]
fn sub_millisecond_clock_noise_does_not_cause_writes() {
    let mut job = Job::new(spec(&["a"]));
    job.step(&[], t0() + Duration::nanoseconds(1_500_000));
    let d = job.step(&[], t0() + Duration::nanoseconds(1_900_000));
    assert!(!d.status_changed);
    assert_eq!(d.status.updated_at, Some(t0() + Duration::milliseconds(1)));
}

#[test]
fn api_cancel_only_cancels_running_jobs_and_matches_the_controller() {
    let mut job = Job::new(spec(&["a"]));
    job.step(
        &[task("a", TaskState::Pending, None)],
        t0() + Duration::seconds(1),
    );
    let now = t0() + Duration::seconds(2);
    let canceled = cancel(job.status.as_ref(), Some(1), t0(), now).expect("running job cancels");
    assert_eq!(canceled.status, Some(JobStatus::Canceled));
    assert_eq!(canceled.finished_at, Some(now));
    assert_eq!((canceled.total_tasks, canceled.remained_tasks), (1, 1));
    job.status = Some(canceled.clone());
    // The controller's next pass only cancels the task; the job's status stays as written.
    let d = job.step(
        &[task("a", TaskState::Pending, None)],
        t0() + Duration::seconds(3),
    );
    assert!(!d.status_changed, "{:?} vs {:?}", d.status, canceled);
    assert_eq!(d.cancel_tasks, ["a"]);
    assert_eq!(
        cancel(job.status.as_ref(), Some(1), t0(), now),
        Err(JobStatus::Canceled)
    );
}

// Issue 9, item 1: values the schema now refuses, but that an object stored before the schema
// said so (or a direct etcd write) can still hold, must never make the decision panic.
#[test]
fn huge_or_extreme_numbers_never_panic_and_are_clamped_with_a_warning() {
    for timeout in [
        Some(10_000_000_000_000),
        Some(i64::MAX),
        Some(i64::MIN),
        Some(-1),
        Some(0),
        Some(MAX_TIMEOUT_SECONDS + 1),
    ] {
        for ttl in [
            Some(i64::MAX),
            Some(i64::MIN),
            Some(-5),
            Some(MAX_TTL_SECONDS + 1),
        ] {
            let mut s = spec(&["a"]);
            s.timeout_seconds = timeout;
            s.ttl_seconds_after_finished = ttl;
            s.cancel = true;
            let mut job = Job::new(s);
            let first = job.step(&[], t0());
            assert_eq!(job.state(), Some(JobStatus::Canceled));
            assert!(first.requeue_after.is_none_or(|d| d <= MAX_REQUEUE));
            let clamped = first.events.iter().any(|e| e.reason == "TimeoutClamped");
            assert_eq!(clamped, timeout.is_some_and(|t| t > MAX_TIMEOUT_SECONDS));
            assert!(first.events.iter().any(|e| e.reason == "TTLClamped"));
            // The warning is said once per spec generation, not on every pass.
            let again = job.step(&[], t0() + Duration::seconds(1));
            assert!(again.events.is_empty(), "{:?}", again.events);
        }
    }
}

#[test]
fn an_out_of_range_ttl_is_warned_about_before_the_job_finishes() {
    let mut s = spec(&["a"]);
    s.ttl_seconds_after_finished = Some(MAX_TTL_SECONDS + 1);
    let mut job = Job::new(s);
    let first = job.step(&[], t0());
    assert_eq!(job.state(), Some(JobStatus::InProgress));
    assert!(first.events.iter().any(|e| e.reason == "TTLClamped"));
    let done = job.step(&[task("a", TaskState::Success, Some(t0()))], t0());
    assert_eq!(job.state(), Some(JobStatus::Success));
    assert!(!done.events.iter().any(|e| e.reason == "TTLClamped"));
}

#[test]
fn a_huge_timeout_is_used_as_the_maximum() {
    let mut s = spec(&["a"]);
    s.timeout_seconds = Some(10_000_000_000_000);
    let mut job = Job::new(s);
    let d = job.step(&[], t0());
    assert_eq!(job.state(), Some(JobStatus::InProgress));
    // Requeued no further than a day ahead, whatever the deadline.
    assert_eq!(d.requeue_after, Some(MAX_REQUEUE));
    job.step(&[], t0() + Duration::seconds(MAX_TIMEOUT_SECONDS - 1));
    assert_eq!(job.state(), Some(JobStatus::InProgress));
    job.step(&[], t0() + Duration::seconds(MAX_TIMEOUT_SECONDS + 2));
    assert_eq!(job.state(), Some(JobStatus::Timeout));
}

#[test]
fn dates_at_the_end_of_time_never_panic() {
    let mut s = spec(&["a"]);
    s.ttl_seconds_after_finished = Some(MAX_TTL_SECONDS);
    s.timeout_seconds = Some(MAX_TIMEOUT_SECONDS);
    let end = DateTime::<Utc>::MAX_UTC;
    let view = JobView {
        generation: Some(1),
        created: end,
        spec: &s,
        status: None,
    };
    let d = decide(
        &view,
        &[task("a", TaskState::Success, Some(end))],
        end,
        &Config::default(),
    );
    assert_eq!(d.status.status, Some(JobStatus::Success));
    assert!(!d.delete_job);
    let start = DateTime::<Utc>::MIN_UTC;
    let view = JobView {
        generation: Some(1),
        created: start,
        spec: &s,
        status: None,
    };
    let d = decide(&view, &[], start, &Config::default());
    assert_eq!(d.status.status, Some(JobStatus::InProgress));
}

#[test]
fn hostile_counters_in_a_stored_status_do_not_panic_a_cancel() {
    let status = CostAnalysisJobStatus {
        total_tasks: i32::MIN,
        remained_tasks: i32::MAX,
        ..CostAnalysisJobStatus::default()
    };
    let next = cancel(Some(&status), Some(1), t0(), t0()).map_err(|s| s.as_str());
    assert_eq!(next.map(|s| s.status), Ok(Some(JobStatus::Canceled)));
}

// Issue 10, item 1: a task the controller has not seen (yet) never makes a counter go back up.
#[test]
fn counters_never_move_backwards_when_tasks_are_unseen() {
    let mut job = Job::new(spec(&["a", "b", "c"]));
    let all = [
        task("a", TaskState::Success, Some(t0())),
        task("b", TaskState::Success, Some(t0())),
        task("c", TaskState::InProgress, None),
    ];
    job.step(&all, t0());
    assert_eq!(job.status.as_ref().map(|s| s.remained_tasks), Some(1));
    // A cache that has lost sight of the finished tasks does not undo them.
    let d = job.step(&all[2..], t0() + Duration::seconds(1));
    assert_eq!(d.status.remained_tasks, 1);
    assert_eq!(d.status.progress.as_deref(), Some("2/3"));
    assert!(!d.status_changed);
    // A settled job is not rewritten by a partial view either.
    let done = [
        task("a", TaskState::Success, Some(t0())),
        task("b", TaskState::Success, Some(t0())),
        task("c", TaskState::Success, Some(t0())),
    ];
    job.step(&done, t0() + Duration::seconds(2));
    assert_eq!(job.state(), Some(JobStatus::Success));
    let d = job.step(&[], t0() + Duration::seconds(3));
    assert!(!d.status_changed, "{:?}", d.status);
    assert!(d.events.is_empty() && d.create_tasks.is_empty());
}

#[test]
fn urgency_puts_undecided_jobs_first_then_deadlines_then_ttl_expiries() {
    let config = Config::default();
    let urgency_of = |job: &Job| {
        urgency(
            &JobView {
                generation: Some(job.generation),
                created: t0(),
                spec: &job.spec,
                status: job.status.as_ref(),
            },
            &config,
        )
    };
    // Never looked at: now.
    let mut job = Job::new(spec(&["a"]));
    assert_eq!(urgency_of(&job), DateTime::<Utc>::MIN_UTC);
    // In progress: its deadline (600 s default + 1 s allowance, from creation).
    job.step(&[], t0() + Duration::seconds(1));
    assert_eq!(urgency_of(&job), t0() + Duration::seconds(601));
    // A spec the controller has not decided on (a cancel request): now again.
    job.spec.cancel = true;
    job.generation = 2;
    assert_eq!(urgency_of(&job), DateTime::<Utc>::MIN_UTC);
    // Finished without a TTL: only when something changes.
    job.step(
        &[task("a", TaskState::InProgress, None)],
        t0() + Duration::seconds(2),
    );
    assert_eq!(job.state(), Some(JobStatus::Canceled));
    assert_eq!(urgency_of(&job), DateTime::<Utc>::MAX_UTC);
    // Finished with a TTL: its expiry, counted from finishedAt.
    job.spec.ttl_seconds_after_finished = Some(30);
    assert_eq!(urgency_of(&job), t0() + Duration::seconds(32));
    // A TTL past the end of time never expires.
    job.status.as_mut().unwrap().finished_at = Some(DateTime::<Utc>::MAX_UTC);
    assert_eq!(urgency_of(&job), DateTime::<Utc>::MAX_UTC);
}
