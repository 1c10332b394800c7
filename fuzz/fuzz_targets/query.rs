//! Arbitrary bytes, taken as a JSON request body, through `list`, `stat` and `get` over a fixed
//! small index (tests/fixtures/jobs.json) with every record in scope: nothing may panic, and every
//! error is a SpaceONE error. The offline command's evaluation in chunks answers what the whole
//! index answers. Default limits, except a short time budget.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spaceone_query::{Index, Limits, Scope, calls, offline};

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index::new();
        let text = include_str!("../../crates/spaceone-query/tests/fixtures/jobs.json");
        for job in offline::load_jobs(text).unwrap_or_default() {
            index.upsert(job);
        }
        index
    })
}

fn jobs() -> &'static [spaceone_query::Job] {
    static JOBS: OnceLock<Vec<spaceone_query::Job>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let text = include_str!("../../crates/spaceone-query/tests/fixtures/jobs.json");
        offline::load_jobs(text).unwrap_or_default()
    })
}

/// The whole index's answer and the chunks' agree (unless one of them ran out of time: each
/// chunk has a budget of its own).
fn agree(whole: &(String, i32), chunked: Option<&(String, i32)>) {
    let Some(chunked) = chunked else { return };
    if whole.0.contains("time limit") || chunked.0.contains("time limit") {
        return;
    }
    assert_eq!(whole, chunked, "chunks disagree with the whole index");
}

fn check<T>(r: Result<T, spaceone_query::Error>) {
    if let Err(e) = r {
        assert!(e.code.starts_with("ERROR_"), "not a SpaceONE code: {e:?}");
        assert!(!e.message.is_empty(), "empty message: {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let limits = Limits {
        max_time: Duration::from_millis(200),
        ..Limits::default()
    };
    let now = DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default();
    let (index, scope) = (index(), Scope::all());
    check(calls::list(index, &scope, &request, now, &limits));
    check(calls::stat(index, &scope, &request, now, &limits));
    check(calls::get(index, &scope, &request));
    // One verb per input (by its length), so the comparison costs one evaluation more, not three.
    let verbs = [offline::Verb::List, offline::Verb::Stat, offline::Verb::Get];
    if let Some(&verb) = verbs.get(data.len() % verbs.len()) {
        let whole = offline::run_over(verb, index, &request, now, &limits);
        if whole.0.contains("time limit") {
            // Each chunk would spend a budget of its own on it.
            return;
        }
        let mut streamed = offline::Streamed::with_chunk(verb, request.clone(), now, &limits, 2);
        for job in jobs() {
            streamed.push(job.clone());
        }
        agree(&whole, streamed.finish().as_ref());
        if verb == offline::Verb::Stat {
            let grouped = offline::stat_in_chunks(&request, now, &limits, 2, &mut |sink| {
                jobs().iter().cloned().for_each(&mut *sink);
                Ok(())
            });
            agree(&whole, grouped.ok().and_then(offline::Chunked::answer).as_ref());
        }
    }
    // The bare query as well (the Kubernetes aggregated API's entry points).
    if let Some(query) = request.get("query") {
        check(calls::select(index, &scope, query, now, &limits));
        check(calls::stat_query(index, &scope, query, now, &limits));
    }
});
