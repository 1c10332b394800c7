//! The review's hostile stat requests (issue 22), measured side by side in one run:
//! - **hash flood**: `distinct options.s` over 20,000 jobs whose values are built only of nested
//!   empty arrays (each unique; before the canonical hash they all collided), beside the same
//!   count of ordinary string values; the ratio crafted / ordinary is the figure;
//! - **slot release**: how long a cancelled request's query takes to stop, for the heaviest shapes
//!   (a 100,000-segment key path projected over 20,000 jobs; a 400,000-row unwind and sort):
//!   printed as the worst of several cancels, in milliseconds.
//!
//!   cargo bench -p spaceone-query --bench hostile

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use spaceone_query::{Cancel, Index, Limits, Scope, calls, offline};

const JOBS: usize = 20_000;

/// A value built only of empty arrays, different for every `i`: its bits, each an empty array or
/// an array holding one, behind a marker.
fn crafted(i: usize) -> Value {
    let mut bits = vec![json!([[[]]])];
    let mut n = i;
    loop {
        bits.push(if n % 2 == 1 { json!([[]]) } else { json!([]) });
        n /= 2;
        if n == 0 {
            break;
        }
    }
    Value::Array(bits)
}

fn index_of(options: impl Fn(usize) -> Value) -> Index {
    let jobs: Vec<Value> = (0..JOBS)
        .map(|i| {
            json!({"job_id": format!("job-{i}"), "status": "SUCCESS", "domain_id": "domain-1",
                   "data_source_id": "ds-0", "options": options(i),
                   "created_at": "2026-01-01T00:00:00Z"})
        })
        .collect();
    let mut index = Index::new();
    for job in offline::load_jobs(&serde_json::to_string(&jobs).unwrap()).unwrap() {
        index.upsert(job);
    }
    index
}

fn stat(index: &Index, query: &Value, limits: &Limits) -> Result<Value, spaceone_query::Error> {
    calls::stat(
        index,
        &Scope::all(),
        &json!({"domain_id": "domain-1", "query": query}),
        Utc::now(),
        limits,
    )
}

/// The worst time from `cancel()` to the query's return, over `rounds` cancels at staggered
/// moments into the query.
fn release_ms(index: &Index, query: &Value, rounds: u32) -> String {
    let (mut worst, mut caught) = (0f64, 0);
    for r in 0..rounds {
        let cancel = Cancel::new();
        let limits = Limits {
            max_time: Duration::from_secs(3600),
            max_stage_rows: 10_000_000,
            max_stage_bytes: 1 << 34,
            cancel: Some(cancel.clone()),
            ..Limits::default()
        };
        let stopped = std::thread::scope(|s| {
            let running = s.spawn(|| stat(index, query, &limits));
            std::thread::sleep(Duration::from_millis(20 + 15 * u64::from(r)));
            let t = Instant::now();
            cancel.cancel();
            let answer = running.join().unwrap();
            (t.elapsed(), answer)
        });
        if let (elapsed, Err(e)) = stopped {
            assert!(e.message.contains("interrupted"), "{}", e.message);
            worst = worst.max(elapsed.as_secs_f64() * 1e3);
            caught += 1;
        }
    }
    format!("{worst:.1} ms ({caught} of {rounds} cancels came while it ran)")
}

fn bench(c: &mut Criterion) {
    // distinct unwinds one level of arrays, as MongoDB does: each value is wrapped once.
    let crafted_index = index_of(|i| json!({"s": [crafted(i)]}));
    let plain_index = index_of(|i| json!({"s": format!("value-{i:08}")}));
    let distinct = json!({"distinct": "options.s"});
    let limits = Limits::default();
    for index in [&crafted_index, &plain_index] {
        let answer = stat(index, &distinct, &limits).unwrap();
        assert_eq!(answer["results"].as_array().map(Vec::len), Some(JOBS));
    }
    let mut group = c.benchmark_group("hostile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    group.bench_function("distinct/crafted-empty-arrays", |b| {
        b.iter(|| black_box(stat(&crafted_index, &distinct, &limits)))
    });
    group.bench_function("distinct/ordinary-strings", |b| {
        b.iter(|| black_box(stat(&plain_index, &distinct, &limits)))
    });
    group.finish();

    let long_key: String = std::iter::repeat_n("a", 100_000)
        .collect::<Vec<_>>()
        .join(".");
    let deep = json!({"aggregate": [{"project": {"fields": [
        {"key": format!("options.{long_key}"), "name": "x"}]}}]});
    let items = index_of(|i| json!({"items": (0..20).map(|k| i * 20 + k).collect::<Vec<_>>()}));
    let rows = json!({"aggregate": [
        {"group": {"keys": [{"key": "job_id", "name": "id"}],
                   "fields": [{"name": "all", "operator": "push",
                               "fields": [{"key": "options.items", "name": "o"}]}]}},
        {"unwind": {"path": "all"}},
        {"unwind": {"path": "all.o"}},
        {"sort": {"key": "all.o", "desc": true}},
        {"count": {"name": "n"}}]});
    eprintln!(
        "slot release after cancel, worst: 100,000-segment projection over {JOBS} jobs {}; 400,000-row unwind+sort {}",
        release_ms(&plain_index, &deep, 8),
        release_ms(&items, &rows, 8)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
