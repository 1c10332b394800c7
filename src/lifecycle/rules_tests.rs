//! One test (or a few) per rule, on the rule alone; `lifecycle_tests.rs` tests `decide` as a whole.

#![allow(clippy::arithmetic_side_effects)]

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().unwrap()
}

fn at(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

fn declared(ids: &[&str]) -> Vec<TaskTemplate> {
    ids.iter()
        .map(|id| TaskTemplate {
            id: (*id).into(),
            options: None,
            template: None,
            backoff_limit: None,
        })
        .collect()
}

fn task(id: &str, state: TaskState, finished: Option<i64>) -> TaskView {
    TaskView {
        state,
        finished_at: finished.map(at),
        ..TaskView::pending(id, format!("job.{id}"))
    }
}

/// An IN_PROGRESS job at t=10 with a deadline at t=100, one unfinished task, no cancel.
fn facts() -> Facts {
    Facts {
        prior: JobStatus::InProgress,
        tasks: Tally {
            total: 1,
            unfinished: 1,
            first_failure: None,
            last_finish: None,
        },
        cancel: false,
        timeout_at: at(100),
        now: at(10),
    }
}

#[test]
fn tally_counts_declared_tasks_only_and_finished_times() {
    let tasks = [
        task("a", TaskState::Success, Some(5)),
        task("b", TaskState::Failure, Some(7)),
        task("c", TaskState::Failure, Some(3)),
        task("d", TaskState::InProgress, None),
        task("x", TaskState::Failure, Some(1)), // not declared
    ];
    let t = tally(&declared(&["a", "b", "c", "d", "e"]), &tasks, at(50));
    assert_eq!(t.total, 5);
    assert_eq!(t.unfinished, 2, "d is running, e has no object");
    assert_eq!(t.first_failure, Some(at(3)));
    assert_eq!(t.last_finish, Some(at(7)));
}

#[test]
fn tally_takes_now_for_a_finished_task_without_finished_at() {
    let t = tally(
        &declared(&["a"]),
        &[task("a", TaskState::Failure, None)],
        at(42),
    );
    assert_eq!(
        (t.first_failure, t.last_finish),
        (Some(at(42)), Some(at(42)))
    );
}

#[test]
fn the_precedence_is_the_documented_order() {
    let names: Vec<&str> = STATE_RULES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "terminal_stays",
            "task_failed",
            "all_tasks_finished",
            "cancel_requested",
            "deadline_passed"
        ]
    );
}

#[test]
fn terminal_stays_answers_only_for_a_terminal_prior_state() {
    for prior in [
        JobStatus::Success,
        JobStatus::Failure,
        JobStatus::Timeout,
        JobStatus::Canceled,
    ] {
        // Everything else says otherwise: a failed task, a cancel, the deadline long past.
        let f = Facts {
            prior,
            cancel: true,
            now: at(1000),
            tasks: Tally {
                first_failure: Some(at(1)),
                ..facts().tasks
            },
            ..facts()
        };
        assert_eq!(terminal_stays(&f), Some(prior));
        assert_eq!(state(&f), prior);
    }
    assert_eq!(terminal_stays(&facts()), None);
}

#[test]
fn task_failed_before_the_deadline_fails_the_job() {
    let mut f = facts();
    assert_eq!(task_failed(&f), None);
    f.tasks.first_failure = Some(at(100));
    assert_eq!(task_failed(&f), Some(JobStatus::Failure), "at the deadline");
    f.tasks.first_failure = Some(at(101));
    assert_eq!(task_failed(&f), None, "after the deadline");
}

#[test]
fn all_tasks_finished_succeeds_only_without_failure_and_in_time() {
    let mut f = facts();
    assert_eq!(all_tasks_finished(&f), None, "one task unfinished");
    f.tasks.unfinished = 0;
    f.tasks.last_finish = Some(at(100));
    assert_eq!(all_tasks_finished(&f), Some(JobStatus::Success));
    f.tasks.last_finish = Some(at(101));
    assert_eq!(all_tasks_finished(&f), None, "finished late");
    f.tasks.last_finish = Some(at(5));
    f.tasks.first_failure = Some(at(200));
    assert_eq!(all_tasks_finished(&f), None, "a late failure is no success");
    let none = Facts {
        tasks: Tally::default(),
        ..facts()
    };
    assert_eq!(
        all_tasks_finished(&none),
        Some(JobStatus::Success),
        "no tasks"
    );
}

#[test]
fn cancel_requested_cancels() {
    assert_eq!(cancel_requested(&facts()), None);
    let f = Facts {
        cancel: true,
        ..facts()
    };
    assert_eq!(cancel_requested(&f), Some(JobStatus::Canceled));
}

#[test]
fn deadline_passed_times_out_at_the_instant() {
    let mut f = facts();
    assert_eq!(deadline_passed(&f), None);
    f.now = at(100);
    assert_eq!(deadline_passed(&f), Some(JobStatus::Timeout));
}

#[test]
fn earlier_rules_win() {
    // A failure before the deadline, a cancel and a passed deadline at once: the failure.
    let mut f = Facts {
        cancel: true,
        now: at(500),
        ..facts()
    };
    f.tasks.first_failure = Some(at(50));
    assert_eq!(state(&f), JobStatus::Failure);
    // Finished in time, a cancel and a passed deadline: the success.
    f.tasks = Tally {
        total: 1,
        unfinished: 0,
        first_failure: None,
        last_finish: Some(at(50)),
    };
    assert_eq!(state(&f), JobStatus::Success);
    // Unfinished, a cancel and a passed deadline: the cancel.
    f.tasks.unfinished = 1;
    assert_eq!(state(&f), JobStatus::Canceled);
    f.cancel = false;
    assert_eq!(state(&f), JobStatus::Timeout);
    f.now = at(10);
    assert_eq!(state(&f), JobStatus::InProgress, "no rule answers");
}

#[test]
fn remained_tasks_never_move_backwards_for_the_same_total() {
    assert_eq!(remained_tasks(None, 3, 2), 2);
    assert_eq!(remained_tasks(Some((3, 1)), 3, 2), 1, "a task not seen yet");
    assert_eq!(remained_tasks(Some((3, 2)), 3, 0), 0);
    assert_eq!(
        remained_tasks(Some((3, -4)), 3, 2),
        0,
        "a negative stored count"
    );
    assert_eq!(remained_tasks(Some((2, 0)), 3, 2), 2, "another total");
}

#[test]
fn tasks_to_create_are_the_missing_ones_while_in_progress() {
    let d = declared(&["a", "b", "c"]);
    let tasks = [task("b", TaskState::Pending, None)];
    let ids = |v: Vec<TaskTemplate>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(tasks_to_create(JobStatus::InProgress, &d, &tasks)),
        ["a", "c"]
    );
    for s in [JobStatus::Success, JobStatus::Failure, JobStatus::Canceled] {
        assert!(tasks_to_create(s, &d, &tasks).is_empty());
    }
}

#[test]
fn tasks_to_cancel_are_the_unfinished_ones_of_a_job_that_did_not_succeed() {
    let d = declared(&["a", "b", "c", "d"]);
    let tasks = [
        task("a", TaskState::Pending, None),
        task("b", TaskState::InProgress, None),
        task("c", TaskState::Success, Some(1)),
        task("x", TaskState::Pending, None), // not declared
    ];
    for s in [JobStatus::Failure, JobStatus::Timeout, JobStatus::Canceled] {
        assert_eq!(tasks_to_cancel(s, &d, &tasks), ["a", "b"], "{s:?}");
    }
    assert!(tasks_to_cancel(JobStatus::InProgress, &d, &tasks).is_empty());
    assert!(tasks_to_cancel(JobStatus::Success, &d, &tasks).is_empty());
}

#[test]
fn cancel_ignored_once_per_new_spec_of_a_finished_job() {
    assert_eq!(
        cancel_ignored(JobStatus::Success, true, true).as_deref(),
        Some("Only running jobs can be canceled. (job_state = SUCCESS)")
    );
    assert_eq!(cancel_ignored(JobStatus::Success, true, false), None);
    assert_eq!(cancel_ignored(JobStatus::Success, false, true), None);
    assert_eq!(cancel_ignored(JobStatus::InProgress, true, true), None);
}

#[test]
fn ttl_expired_only_for_a_finished_job_at_its_expiry() {
    assert!(!ttl_expired(JobStatus::Success, None, at(10)));
    assert!(!ttl_expired(JobStatus::Success, Some(at(11)), at(10)));
    assert!(ttl_expired(JobStatus::Success, Some(at(10)), at(10)));
    assert!(!ttl_expired(JobStatus::InProgress, Some(at(1)), at(10)));
}

#[test]
fn task_view_of_a_stored_task() {
    let stored: CostAnalysisJobTask = serde_json::from_value(serde_json::json!({
        "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJobTask",
        "metadata": {"name": "job-1.t1", "namespace": "ns"},
        "spec": {"jobName": "job-1", "taskId": "t1", "domainId": "d", "dataSourceId": "ds"},
        "status": {"status": "FAILURE", "errorCode": "ERROR_X", "errorMessage": "boom",
                   "finishedAt": "2024-01-01T00:00:05.000Z"},
    }))
    .unwrap();
    let v = TaskView::of("t1", &stored);
    assert_eq!(v.name, "job-1.t1");
    assert_eq!(v.state, TaskState::Failure);
    assert_eq!(v.finished_at, Some(at(5)));
    assert_eq!(v.error_code.as_deref(), Some("ERROR_X"));
    assert_eq!(v.error_message.as_deref(), Some("boom"));
}
