//! What the API shim's catalogs hold for BENCH_JOBS jobs with BENCH_TASKS tasks each (issue 19:
//! 100,000 x 10 by default), in process: each object is built as the watch would deliver it
//! (a job with ~1.5 KB of realistic options and a finished status; its tasks as the controller
//! creates them, with a worker's status), inserted into the catalogs and dropped, so what stays is
//! what the catalogs keep. Prints the resident memory the catalogs added (VmRSS before and after)
//! beside the JSON size of the same objects (what `kubectl get caj,cajt -A -o json` would print
//! without managed fields), and the engine's own estimate of its index.
//!   cargo bench --bench catalog_memory
//!   BENCH_JOBS=20000 BENCH_TASKS=10 cargo bench --bench catalog_memory

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

use chrono::{TimeZone, Utc};
use cost_analysis_operator::api::catalog::{Catalog, TaskCatalog};
use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobSpec, CostAnalysisJobStatus, CostAnalysisJobTask,
    CostAnalysisJobTaskSpec, CostAnalysisJobTaskStatus, JobStatus, TaskState, TaskTemplate,
    task_object_name,
};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Realistic SpaceONE job options (as tests/memory.rs makes them), ~1.5 KB of JSON.
fn options(i: usize) -> serde_json::Map<String, serde_json::Value> {
    let accounts: Vec<serde_json::Value> = (0..8)
        .map(|k| {
            json!({"account_id": format!("{:012}", (i * 7919 + k * 104_729) % 1_000_000_000_000),
                   "name": format!("account-{k}"), "tags": {"env": "prod", "team": format!("team-{k}")}})
        })
        .collect();
    let v = json!({
        "sync_mode": "MANUAL", "start": "2024-01", "end": "2024-12",
        "plugin_version": format!("1.2.{}", i % 50), "secret_id": format!("secret-{i:08x}"),
        "provider": "aws", "region_codes": ["us-east-1", "eu-west-1", "ap-northeast-2"],
        "accounts": accounts,
        "filters": {"services": ["AmazonEC2", "AmazonS3", "AWSLambda", "AmazonRDS"],
                    "exclude_zero": true, "currency": "USD"},
        "note": "synchronised by the cost-analysis scheduler for the monthly report ".repeat(3),
    });
    v.as_object().cloned().unwrap_or_default()
}

fn main() {
    let (n, per) = (env_or("BENCH_JOBS", 100_000), env_or("BENCH_TASKS", 10));
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap();
    let mut jobs: Catalog<CostAnalysisJob> = Catalog::default();
    let mut tasks = TaskCatalog::default();
    let before = vm_rss();
    let (mut job_json, mut task_json) = (0usize, 0usize);
    for i in 0..n {
        let name = format!("job-{i:08x}");
        let ns = format!("team-{}", i % 20);
        let created = t0 + chrono::Duration::seconds(i as i64);
        let templates: Vec<TaskTemplate> = (0..per)
            .map(|t| TaskTemplate {
                id: format!("t{t}"),
                options: None,
                template: None,
                backoff_limit: None,
            })
            .collect();
        let mut job = CostAnalysisJob::new(
            &name,
            CostAnalysisJobSpec {
                domain_id: format!("domain-{}", i % 50),
                data_source_id: format!("ds-{}", i % 10),
                options: Some(options(i)),
                tasks: templates,
                timeout_seconds: Some(3600),
                cancel: false,
                ttl_seconds_after_finished: None,
                last_changed_at: None,
            },
        );
        job.metadata.namespace = Some(ns.clone());
        job.metadata.resource_version = Some(format!("{}", i + 1));
        job.metadata.uid = Some(format!("{i:032x}"));
        job.status = Some(CostAnalysisJobStatus {
            status: Some(JobStatus::Success),
            total_tasks: i32::try_from(per).unwrap_or(0),
            remained_tasks: 0,
            created_at: Some(created),
            updated_at: Some(created),
            finished_at: Some(created + chrono::Duration::seconds(60)),
            ..CostAnalysisJobStatus::default()
        });
        job_json += serde_json::to_vec(&job).unwrap().len();
        jobs.upsert(&job);
        for t in 0..per {
            let mut task = CostAnalysisJobTask::new(
                &task_object_name(&name, &format!("t{t}")),
                CostAnalysisJobTaskSpec {
                    job_name: name.clone(),
                    task_id: format!("t{t}"),
                    domain_id: job.spec.domain_id.clone(),
                    data_source_id: job.spec.data_source_id.clone(),
                    options: None,
                    created_at: Some(created),
                },
            );
            task.metadata.namespace = Some(ns.clone());
            task.metadata.labels =
                Some([("cost-analysis.spaceone.dev/job".to_string(), name.clone())].into());
            task.status = Some(CostAnalysisJobTaskStatus {
                status: Some(TaskState::Success),
                created_count: Some(1_000),
                started_at: Some(created),
                finished_at: Some(created + chrono::Duration::seconds(50)),
                ..CostAnalysisJobTaskStatus::default()
            });
            task_json += serde_json::to_vec(&task).unwrap().len();
            tasks.upsert(&task);
        }
    }
    let after = vm_rss();
    let grown = after.saturating_sub(before) as f64;
    let json_total = (job_json + task_json) as f64;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "{n} jobs x {per} tasks: JSON {:.1} MiB (jobs {:.1}, tasks {:.1}); the catalogs added {:.1} MiB of VmRSS, {:.2} x the JSON; per job {:.0} B, per task {:.0} B of JSON",
        mib(json_total),
        mib(job_json as f64),
        mib(task_json as f64),
        mib(grown),
        grown / json_total,
        job_json as f64 / n as f64,
        task_json as f64 / (n * per).max(1) as f64,
    );
    println!(
        "engine's estimate of its indexes: jobs {:.1} MiB ({:.0} B per job), tasks {:.1} MiB ({:.0} B per task)",
        mib(jobs.index.approx_heap_bytes() as f64),
        jobs.index.approx_heap_bytes() as f64 / n as f64,
        mib(tasks.index.approx_heap_bytes() as f64),
        tasks.index.approx_heap_bytes() as f64 / (n * per).max(1) as f64,
    );
    std::hint::black_box((&jobs, &tasks));
}
