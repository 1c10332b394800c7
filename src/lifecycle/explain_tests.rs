#![allow(clippy::arithmetic_side_effects)]

use chrono::{TimeZone, Utc};

use super::*;

const HEAD: &str = "ERROR_JOB_TASK: One or more job tasks have failed.";

fn failed(name: &str, at: i64, code: Option<&str>, message: Option<&str>) -> TaskView {
    TaskView {
        task_id: name.rsplit('.').next().unwrap().into(),
        name: name.into(),
        state: TaskState::Failure,
        finished_at: Utc.timestamp_opt(1_700_000_000 + at, 0).single(),
        error_code: code.map(String::from),
        error_message: message.map(String::from),
    }
}

fn explain(tasks: &[TaskView]) -> String {
    let refs: Vec<&TaskView> = tasks.iter().collect();
    task_failure(
        "ERROR_JOB_TASK",
        "One or more job tasks have failed.",
        &refs,
    )
}

#[test]
fn one_failed_task_is_named_with_its_error() {
    let text = explain(&[failed(
        "job-1.t1",
        1,
        Some("ERROR_TOKEN"),
        Some("token expired"),
    )]);
    assert_eq!(
        text,
        format!("{HEAD} Failed task: job-1.t1 (ERROR_TOKEN: token expired)")
    );
}

#[test]
fn several_are_named_earliest_first_and_others_are_left_out() {
    let mut running = failed("job-1.t0", 0, None, None);
    running.state = TaskState::InProgress;
    let text = explain(&[
        failed("job-1.t2", 9, Some("ERROR_B"), None),
        running,
        failed("job-1.t1", 5, None, Some("disk\nfull")),
        failed("job-1.t3", 9, None, None),
    ]);
    assert_eq!(
        text,
        format!(
            "{HEAD} Failed tasks: job-1.t1 (disk full); job-1.t2 (ERROR_B); \
             job-1.t3 (no error given)"
        )
    );
}

#[test]
fn without_failed_tasks_it_is_spaceones_error() {
    assert_eq!(explain(&[]), HEAD);
}

#[test]
fn long_errors_and_many_tasks_stay_within_the_bound() {
    let long = "é".repeat(1000);
    let code = "E".repeat(500);
    let tasks: Vec<TaskView> = (0..50)
        .map(|i| failed(&format!("job-1.t{i:02}"), i, Some(&code), Some(&long)))
        .collect();
    let text = explain(&tasks);
    assert!(text.len() <= MAX_EXPLANATION_BYTES, "{}", text.len());
    assert!(text.starts_with(&format!("{HEAD} Failed tasks: job-1.t00 (")));
    assert!(text.contains("job-1.t01 ("), "{text}");
    assert!(text.ends_with(" more"), "{text}");
    // Named tasks plus the ones counted are all 50.
    let named = text.matches("job-1.t").count();
    let more: usize = text
        .rsplit("; and ")
        .next()
        .and_then(|s| s.strip_suffix(" more"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(named + more, 50);
    // Every part is cut at its own bound, at a character boundary.
    let first = text.split("; ").next().unwrap();
    let message = first.rsplit(": ").next().unwrap().trim_end_matches(')');
    assert!(message.len() <= MAX_MESSAGE_BYTES && message.ends_with('…'));
    assert!(first.contains(&format!("{}…:", "E".repeat(MAX_CODE_BYTES - 3))));
}

#[test]
fn a_huge_name_is_still_bounded() {
    let name = format!("{}.t1", "j".repeat(2000));
    let text = explain(&[failed(&name, 1, Some("E"), Some("m"))]);
    assert!(text.len() <= MAX_EXPLANATION_BYTES);
    assert!(text.starts_with(HEAD));
}

#[test]
fn clip_cuts_at_a_character_boundary() {
    assert_eq!(clip("abc", 3), "abc");
    assert_eq!(clip("abcdef", 5), "ab…");
    assert_eq!(clip("ééé", 5), "é…");
    assert!(clip("abcdef", 2).len() <= 2);
}
