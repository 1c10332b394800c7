//! What the API shim's catalogs hold for BENCH_JOBS jobs with BENCH_TASKS tasks each (issue 19:
//! 100,000 x 10 by default), in process: each object is built as the watch would deliver it
//! (`testing::realistic_job`, with ~1.5 KB of options, and a finished status; its tasks as the
//! controller creates them, with a worker's status), inserted into the catalogs and dropped, so
//! what stays is what the catalogs keep. Prints the resident memory the catalogs added (VmRSS before and after)
//! beside the JSON size of the same objects (what `kubectl get caj,cajt -A -o json` would print
//! without managed fields), and the engine's own estimate of its index.
//!   cargo bench --bench catalog_memory
//!   BENCH_JOBS=20000 BENCH_TASKS=10 cargo bench --bench catalog_memory

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

use chrono::{TimeZone, Utc};
use cost_analysis_operator::api::catalog::{Catalog, TaskCatalog};
use cost_analysis_operator::resources::{
    CostAnalysisJob, CostAnalysisJobStatus, CostAnalysisJobTaskStatus, JobStatus, TaskState,
};
use cost_analysis_operator::testing::{TaskBuilder, realistic_job};
use kube::ResourceExt;

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

fn main() {
    let (n, per) = (env_or("BENCH_JOBS", 100_000), env_or("BENCH_TASKS", 10));
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap();
    let mut jobs: Catalog<CostAnalysisJob> = Catalog::default();
    let mut tasks = TaskCatalog::default();
    let before = vm_rss();
    let (mut job_json, mut task_json) = (0usize, 0usize);
    for i in 0..n {
        let created = t0 + chrono::Duration::seconds(i as i64);
        let job = realistic_job(i)
            .tasks((0..per).map(|t| format!("t{t}")))
            .resource_version((i + 1).to_string())
            .uid(format!("{i:032x}"))
            .status(CostAnalysisJobStatus {
                status: Some(JobStatus::Success),
                total_tasks: i32::try_from(per).unwrap_or(0),
                remained_tasks: 0,
                created_at: Some(created),
                updated_at: Some(created),
                finished_at: Some(created + chrono::Duration::seconds(60)),
                ..CostAnalysisJobStatus::default()
            })
            .build();
        let (name, ns) = (job.name_any(), job.namespace().unwrap_or_default());
        job_json += serde_json::to_vec(&job).unwrap().len();
        jobs.upsert(&job);
        for t in 0..per {
            let task = TaskBuilder::new(&name, &format!("t{t}"))
                .of(&job)
                .namespace(&ns)
                .label("cost-analysis.spaceone.dev/job", &name)
                .created_at(created)
                .status(CostAnalysisJobTaskStatus {
                    status: Some(TaskState::Success),
                    created_count: Some(1_000),
                    started_at: Some(created),
                    finished_at: Some(created + chrono::Duration::seconds(50)),
                    ..CostAnalysisJobTaskStatus::default()
                })
                .build();
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
