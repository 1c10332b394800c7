//! The worst requests the default [`Limits`] allow (and the attacks they refuse), each timed over
//! a large index, with the process's peak resident memory. Run one case per process so the peak
//! is that case's:
//!
//! ```text
//! cargo run --release -p spaceone-query --example worst_query -- <case> [jobs]
//! cargo run --release -p spaceone-query --example worst_query -- list     # the case names
//! ```

#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::time::Instant;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use spaceone_query::{Index, Job, JobStatus, Limits, Scope, calls};

fn index(n: usize) -> Index {
    let mut index = Index::new();
    for i in 0..n {
        let mut options = serde_json::Map::new();
        options.insert(
            "mode".into(),
            json!(if i % 3 == 0 { "MANUAL" } else { "SCHEDULED" }),
        );
        index.upsert(Job {
            namespace: "ns".into(),
            job_id: format!("job-{i:08x}-{:08x}", i.wrapping_mul(2_654_435_761)),
            status: JobStatus::ALL[i % 5],
            error_code: None,
            error_message: None,
            total_tasks: (i % 7) as i64,
            remained_tasks: 0,
            data_source_id: format!("ds-{}", i % 10),
            domain_id: "domain-1".into(),
            options,
            created_at: Utc.timestamp_opt(1_704_067_200 + i as i64, 0).single(),
            updated_at: None,
            finished_at: None,
            last_changed_at: None,
        });
    }
    index
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cases() -> Vec<(&'static str, &'static str, Value)> {
    let words: Vec<String> = (0..10_000).map(|i| format!("{i:06x}")).collect();
    let push: Vec<Value> = (0..5)
        .map(|i| json!({"name": format!("p{i}"), "operator": "push", "fields": [{"key": "job_id", "name": "id"}]}))
        .collect();
    let mut bomb = vec![json!({"group": {"fields": push}})];
    bomb.extend((0..5).map(|i| json!({"unwind": {"path": format!("p{i}")}})));
    bomb.push(json!({"count": {"name": "n"}}));
    vec![
        (
            "in-10000",
            "list",
            json!({"filter": [{"k": "job_id", "v": words, "o": "in"}]}),
        ),
        (
            "not-in-10000",
            "list",
            json!({"filter": [{"k": "job_id", "v": words, "o": "not_in"}]}),
        ),
        (
            "contain-in-10000",
            "list",
            json!({"filter": [{"k": "job_id", "v": words, "o": "contain_in"}]}),
        ),
        (
            "not-contain-in-10000",
            "list",
            json!({"filter": [{"k": "job_id", "v": words, "o": "not_contain_in"}]}),
        ),
        (
            "regex-in-2000",
            "list",
            json!({"filter": [{"k": "job_id", "v": vec!["\\w{20}"; 2000], "o": "regex_in"}]}),
        ),
        (
            "regex-in-25",
            "list",
            json!({"filter": [{"k": "job_id", "v": vec!["\\w{20}"; 25], "o": "regex_in"}]}),
        ),
        (
            "sort-all",
            "list",
            json!({"sort": [{"key": "options.mode"}, {"key": "job_id", "desc": true}]}),
        ),
        ("unwind-bomb", "stat", json!({"aggregate": bomb})),
        (
            "group-by-id-push",
            "stat",
            json!({"aggregate": [
            {"group": {"keys": [{"key": "job_id", "name": "id"}],
                       "fields": [{"name": "all", "operator": "push", "fields": [{"key": "options", "name": "o"}]}]}},
            {"unwind": {"path": "all"}},
            {"sort": {"key": "id", "desc": true}}]}),
        ),
        ("distinct-job-id", "stat", json!({"distinct": "job_id"})),
        (
            "add-to-set",
            "stat",
            json!({"aggregate": [
            {"group": {"fields": [{"name": "ids", "operator": "add_to_set", "key": "job_id"}]}}]}),
        ),
    ]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "list".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let all = cases();
    let Some((name, verb, query)) = all.into_iter().find(|(c, _, _)| *c == case) else {
        for (c, _, _) in cases() {
            println!("{c}");
        }
        return;
    };
    let index = index(n);
    let before = peak_rss_kb();
    let request = json!({"domain_id": "domain-1", "query": query});
    let limits = Limits::default();
    let started = Instant::now();
    let answer = match verb {
        "list" => calls::list(&index, &Scope::all(), &request, Utc::now(), &limits),
        _ => calls::stat(&index, &Scope::all(), &request, Utc::now(), &limits),
    };
    let took = started.elapsed();
    let outcome = match &answer {
        Ok(v) => format!(
            "ok ({} results)",
            v["results"].as_array().map_or(0, Vec::len)
        ),
        Err(e) => format!("{}: {}", e.code, e.message),
    };
    println!(
        "{name}: jobs={n} time={took:?} peak_rss={} MiB (index built: {} MiB) -> {outcome}",
        peak_rss_kb() / 1024,
        before / 1024
    );
}
