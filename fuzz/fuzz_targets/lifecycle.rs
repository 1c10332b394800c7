//! The job-lifecycle decision over arbitrary specs, stored statuses, task states and times: it
//! never panics, a terminal state never changes, counters stay within their bounds, the requeue
//! is bounded, and deciding again over its own output changes nothing.
#![no_main]

use chrono::{DateTime, Utc};
use cost_analysis_operator::lifecycle::explain::MAX_EXPLANATION_BYTES;
use cost_analysis_operator::lifecycle::{Config, JobView, MAX_REQUEUE, TaskView, cancel, decide};
use cost_analysis_operator::resources::{
    CostAnalysisJobSpec, CostAnalysisJobStatus, JobStatus, TaskState, TaskTemplate,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn time(u: &mut Unstructured<'_>) -> Result<DateTime<Utc>> {
    // Mostly near one another (so deadlines are crossed), sometimes anywhere at all.
    let ms = if u.ratio(1, 8)? {
        u.arbitrary::<i64>()?
    } else {
        1_700_000_000_000_i64.saturating_add(i64::from(u.arbitrary::<i32>()?))
    };
    Ok(DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

fn opt_time(u: &mut Unstructured<'_>) -> Result<Option<DateTime<Utc>>> {
    Ok(if u.arbitrary()? { Some(time(u)?) } else { None })
}

fn job_state(u: &mut Unstructured<'_>) -> Result<JobStatus> {
    Ok(*u.choose(&[
        JobStatus::InProgress,
        JobStatus::Success,
        JobStatus::Failure,
        JobStatus::Timeout,
        JobStatus::Canceled,
    ])?)
}

fn task_state(u: &mut Unstructured<'_>) -> Result<TaskState> {
    Ok(*u.choose(&[
        TaskState::Pending,
        TaskState::InProgress,
        TaskState::Success,
        TaskState::Failure,
        TaskState::Canceled,
    ])?)
}

struct Case {
    spec: CostAnalysisJobSpec,
    status: Option<CostAnalysisJobStatus>,
    tasks: Vec<TaskView>,
    generation: Option<i64>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
}

fn case(u: &mut Unstructured<'_>) -> Result<Case> {
    let ids = ["a", "b", "c", "d", "e", "f"];
    let n = u.int_in_range(0..=ids.len())?;
    let templates: Vec<TaskTemplate> = ids
        .iter()
        .take(n)
        .map(|id| TaskTemplate {
            id: (*id).to_string(),
            options: None,
            template: None,
            backoff_limit: None,
        })
        .collect();
    let spec = CostAnalysisJobSpec {
        domain_id: "d".into(),
        data_source_id: "ds".into(),
        options: None,
        tasks: templates,
        timeout_seconds: u.arbitrary()?,
        cancel: u.arbitrary()?,
        ttl_seconds_after_finished: u.arbitrary()?,
        last_changed_at: opt_time(u)?,
    };
    let mut tasks = Vec::new();
    for id in ids {
        if u.arbitrary()? {
            tasks.push(TaskView {
                task_id: id.to_string(),
                name: format!("job.{id}"),
                state: task_state(u)?,
                finished_at: opt_time(u)?,
                error_code: if u.arbitrary()? { Some(u.arbitrary()?) } else { None },
                error_message: if u.arbitrary()? { Some(u.arbitrary()?) } else { None },
            });
        }
    }
    let status = if u.arbitrary()? {
        Some(CostAnalysisJobStatus {
            status: if u.arbitrary()? { Some(job_state(u)?) } else { None },
            error_code: None,
            error_message: None,
            total_tasks: u.arbitrary()?,
            remained_tasks: u.arbitrary()?,
            progress: None,
            created_at: opt_time(u)?,
            updated_at: opt_time(u)?,
            finished_at: opt_time(u)?,
            observed_generation: u.arbitrary()?,
            conditions: Vec::new(),
        })
    } else {
        None
    };
    Ok(Case {
        spec,
        status,
        tasks,
        generation: u.arbitrary()?,
        created: time(u)?,
        now: time(u)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(c) = case(&mut u) else { return };
    let config = Config::default();
    let view = JobView {
        generation: c.generation,
        created: c.created,
        spec: &c.spec,
        status: c.status.as_ref(),
    };
    let d = decide(&view, &c.tasks, c.now, &config);
    let before = c.status.as_ref().and_then(|s| s.status).unwrap_or(JobStatus::InProgress);
    let after = d.status.status.unwrap_or(JobStatus::InProgress);
    if before.is_terminal() {
        assert_eq!(before, after, "a terminal state changed");
    }
    assert!(d.status.remained_tasks >= 0 && d.status.remained_tasks <= d.status.total_tasks);
    assert!(d.requeue_after.is_none_or(|r| r <= MAX_REQUEUE));
    // What the job says about its failed tasks stays within its bound.
    for note in &d.events {
        assert!(note.note.len() <= MAX_EXPLANATION_BYTES, "{note:?}");
    }
    if after == JobStatus::Failure && !before.is_terminal() {
        for c in &d.status.conditions {
            assert!(c.message.len() <= MAX_EXPLANATION_BYTES, "{c:?}");
        }
    }
    if after == JobStatus::InProgress {
        assert!(d.cancel_tasks.is_empty());
    } else {
        assert!(d.create_tasks.is_empty());
        assert!(d.status.finished_at.is_some() || before.is_terminal());
    }
    // Deciding again over what was just decided (same tasks, same instant) writes nothing.
    let again = JobView {
        status: Some(&d.status),
        ..view
    };
    let d2 = decide(&again, &c.tasks, c.now, &config);
    assert!(!d2.status_changed, "not a fixed point: {:?} then {:?}", d.status, d2.status);
    let _ = cancel(c.status.as_ref(), c.generation, c.created, c.now);
});
