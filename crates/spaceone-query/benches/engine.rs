//! The engine beside hand-written loops over the same records (spaceone_query::baseline), in one
//! run: `list` (filter + default created_at order + page of 100) and `stat` (group by status,
//! count), at 10k, 100k and 1M jobs, and the same at 1M job tasks (100,000 jobs of 10 tasks),
//! with the tasks of one job newest first. Also prints the index's heap bytes per job and per task.
//!   cargo bench -p spaceone-query --bench engine

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use chrono::{TimeZone, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use spaceone_query::{
    Index, Job, JobStatus, JobTask, JobTaskStatus, Limits, Scope, TaskIndex, baseline, calls,
};
use std::hint::black_box;
use std::time::Duration;

fn jobs(n: usize) -> Index {
    let mut index = Index::new();
    for i in 0..n {
        let status = match i % 10 {
            0 => JobStatus::Failure,
            1 => JobStatus::InProgress,
            2 => JobStatus::Canceled,
            3 => JobStatus::Timeout,
            _ => JobStatus::Success,
        };
        let mut options = serde_json::Map::new();
        options.insert(
            "sync_mode".into(),
            json!(if i % 4 == 0 { "MANUAL" } else { "SCHEDULED" }),
        );
        let created = Utc
            .timestamp_opt(1_700_000_000 + (i as i64) * 7, 0)
            .single();
        index.upsert(Job {
            namespace: format!("ns-{}", i % 3),
            job_id: format!("job-{i:012x}"),
            status,
            error_code: (status == JobStatus::Failure).then(|| "ERROR_JOB_TASK".into()),
            error_message: (status == JobStatus::Failure)
                .then(|| "One or more job tasks have failed.".into()),
            total_tasks: (i % 9) as i64,
            remained_tasks: (i % 2) as i64,
            data_source_id: format!("ds-{}", i % 10),
            domain_id: format!("domain-{}", i % 2),
            options,
            created_at: created,
            updated_at: created,
            finished_at: (status != JobStatus::InProgress)
                .then_some(created)
                .flatten(),
            last_changed_at: None,
        });
    }
    index
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let now = Utc::now();
    let list_req = json!({"domain_id": "domain-0", "query": {
        "filter": [{"k": "status", "v": "FAILURE", "o": "eq"}], "page": {"start": 1, "limit": 100}}});
    // The shim benchmark's list: one data source of the caller's domain, newest first, a page of
    // 100; answered from the data source's posting list.
    let by_source_req = json!({"domain_id": "domain-0", "query": {
        "filter": [{"k": "data_source_id", "v": "ds-4", "o": "eq"}],
        "sort": [{"key": "created_at", "desc": true}], "page": {"start": 1, "limit": 100}}});
    let domain_scope = Scope {
        namespace: None,
        domains: Some(vec!["domain-0".into()]),
    };
    let stat_req = json!({"domain_id": "domain-0", "query": {"aggregate": [
        {"group": {"keys": [{"key": "status", "name": "status"}], "fields": [{"name": "count", "operator": "count"}]}},
        {"sort": [{"key": "status"}]}]}});
    for n in [10_000usize, 100_000, 1_000_000] {
        let index = jobs(n);
        if n == 1_000_000 {
            eprintln!(
                "index heap bytes per job at {n} jobs: {}",
                index.approx_heap_bytes() / n
            );
        }
        // The two sides must agree before they are timed.
        let engine = calls::list(&index, &Scope::all(), &list_req, now, &Limits::default())
            .unwrap_or_default();
        let tight = baseline::list_status_newest(&index, "domain-0", JobStatus::Failure, 100);
        assert_eq!(engine, tight, "list answers differ");
        let engine = calls::stat(&index, &Scope::all(), &stat_req, now, &Limits::default())
            .unwrap_or_default();
        assert_eq!(
            engine,
            baseline::count_by_status(&index, "domain-0"),
            "stat answers differ"
        );

        group.bench_with_input(BenchmarkId::new("list/engine", n), &n, |b, _| {
            b.iter(|| {
                black_box(calls::list(
                    &index,
                    &Scope::all(),
                    &list_req,
                    now,
                    &Limits::default(),
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("list/tight-loop", n), &n, |b, _| {
            b.iter(|| {
                black_box(baseline::list_status_newest(
                    &index,
                    "domain-0",
                    JobStatus::Failure,
                    100,
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("list-by-source/engine", n), &n, |b, _| {
            b.iter(|| {
                black_box(calls::list(
                    &index,
                    &domain_scope,
                    &by_source_req,
                    now,
                    &Limits::default(),
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("stat/engine", n), &n, |b, _| {
            b.iter(|| {
                black_box(calls::stat(
                    &index,
                    &Scope::all(),
                    &stat_req,
                    now,
                    &Limits::default(),
                ))
            })
        });
        group.bench_with_input(BenchmarkId::new("stat/tight-loop", n), &n, |b, _| {
            b.iter(|| black_box(baseline::count_by_status(&index, "domain-0")))
        });
    }
    group.finish();
}

/// 100,000 jobs of 10 tasks each: one in ten FAILURE, in two domains and ten data sources, with
/// millisecond creation times.
fn tasks(n: usize) -> TaskIndex {
    let mut index = TaskIndex::empty();
    for i in 0..n {
        let job = i / 10;
        let status = match i % 10 {
            0 => JobTaskStatus::Failure,
            1 => JobTaskStatus::InProgress,
            2 => JobTaskStatus::Pending,
            3 => JobTaskStatus::Canceled,
            _ => JobTaskStatus::Success,
        };
        let mut options = serde_json::Map::new();
        options.insert("month".into(), json!(format!("2024-{:02}", i % 12 + 1)));
        let created = Utc
            .timestamp_millis_opt(1_700_000_000_000 + (i as i64) * 7_001)
            .single();
        let failed = status == JobTaskStatus::Failure;
        index.upsert(JobTask {
            namespace: format!("ns-{}", job % 3),
            job_task_id: format!("job-{job:012x}.task-{}", i % 10),
            status,
            options,
            created_count: (i % 100) as i64,
            error_code: failed.then(|| "ERROR_UNKNOWN".into()),
            error_message: failed.then(|| "connection reset by peer".into()),
            job_id: format!("job-{job:012x}"),
            data_source_id: format!("ds-{}", job % 10),
            domain_id: format!("domain-{}", job % 2),
            created_at: created,
            started_at: (status != JobTaskStatus::Pending)
                .then_some(created)
                .flatten(),
            finished_at: matches!(status, JobTaskStatus::Success | JobTaskStatus::Failure)
                .then_some(created)
                .flatten(),
        });
    }
    index
}

fn bench_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("tasks");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let now = Utc::now();
    let n = 1_000_000usize;
    let index = tasks(n);
    eprintln!(
        "index heap bytes per task at {n} tasks: {}",
        index.approx_heap_bytes() / n
    );
    let list_req = json!({"domain_id": "domain-0", "query": {
        "filter": [{"k": "status", "v": "FAILURE", "o": "eq"}], "page": {"start": 1, "limit": 100}}});
    let stat_req = json!({"domain_id": "domain-0", "query": {"aggregate": [
        {"group": {"keys": [{"key": "status", "name": "status"}], "fields": [{"name": "count", "operator": "count"}]}},
        {"sort": [{"key": "status"}]}]}});
    // spacectl list cost_analysis.JobTask -p job_id=...: one job's tasks, newest first.
    let by_job_req = json!({"domain_id": "domain-0", "job_id": "job-000000000064", "query": {}});
    let failure = JobTaskStatus::Failure as u8;
    let (scope, limits) = (Scope::all(), Limits::default());
    let engine = calls::list(&index, &scope, &list_req, now, &limits).unwrap_or_default();
    let tight = baseline::list_status_newest_of(&index, "domain-0", failure, 100);
    assert_eq!(engine, tight, "task list answers differ");
    let engine = calls::stat(&index, &scope, &stat_req, now, &limits).unwrap_or_default();
    assert_eq!(
        engine,
        baseline::count_by_status_of(&index, "domain-0"),
        "task stat answers differ"
    );
    let by_job = calls::list(&index, &scope, &by_job_req, now, &limits).unwrap();
    assert_eq!(by_job["total_count"], 10, "{by_job}");
    group.bench_function(BenchmarkId::new("list/engine", n), |b| {
        b.iter(|| black_box(calls::list(&index, &scope, &list_req, now, &limits)))
    });
    group.bench_function(BenchmarkId::new("list/tight-loop", n), |b| {
        b.iter(|| {
            black_box(baseline::list_status_newest_of(
                &index, "domain-0", failure, 100,
            ))
        })
    });
    group.bench_function(BenchmarkId::new("list-by-job/engine", n), |b| {
        b.iter(|| black_box(calls::list(&index, &scope, &by_job_req, now, &limits)))
    });
    group.bench_function(BenchmarkId::new("stat/engine", n), |b| {
        b.iter(|| black_box(calls::stat(&index, &scope, &stat_req, now, &limits)))
    });
    group.bench_function(BenchmarkId::new("stat/tight-loop", n), |b| {
        b.iter(|| black_box(baseline::count_by_status_of(&index, "domain-0")))
    });
    group.finish();
}

criterion_group!(benches, bench, bench_tasks);
criterion_main!(benches);
