//! The offline command's streamed evaluation ([`offline::Streamed`]) answers exactly what a whole
//! index answers: every vector of tests/fixtures/vectors.json, and pages over many jobs that tie
//! on their sort keys, in chunks from one record up.

#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spaceone_query::offline::{Chunked, Streamed, Verb};
use spaceone_query::{Index, Job, Limits, offline};

fn verb(name: &str) -> Verb {
    match name {
        "list" => Verb::List,
        "stat" => Verb::Stat,
        _ => Verb::Get,
    }
}

fn whole(jobs: &[Job], v: Verb, request: &Value, now: DateTime<Utc>) -> (String, i32) {
    let mut index = Index::new();
    for j in jobs {
        index.upsert(j.clone());
    }
    offline::run_over(v, &index, request, now, &Limits::default())
}

fn streamed(
    jobs: &[Job],
    v: Verb,
    request: &Value,
    now: DateTime<Utc>,
    chunk: usize,
) -> Option<(String, i32)> {
    let mut s = Streamed::with_chunk(v, request.clone(), now, &Limits::default(), chunk);
    for j in jobs {
        s.push(j.clone());
    }
    s.finish()
}

#[test]
fn every_vector_is_answered_alike_in_chunks() {
    let jobs = offline::load_jobs(include_str!("fixtures/jobs.json")).unwrap_or_default();
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/vectors.json")).unwrap_or_default();
    assert!(vectors.len() > 100 && jobs.len() == 7);
    let mut compared = 0;
    for vector in vectors.iter().filter(|v| v.get("skip").is_none()) {
        let now: DateTime<Utc> = vector["now"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let v = verb(vector["verb"].as_str().unwrap_or_default());
        let request = &vector["request"];
        let want = whole(&jobs, v, request, now);
        for chunk in [1, 2, 3, 7, 1_000] {
            let got = streamed(&jobs, v, request, now, chunk);
            assert_eq!(
                got.as_ref(),
                Some(&want),
                "vector {} in chunks of {chunk}",
                vector["id"]
            );
        }
        compared += 1;
    }
    assert!(compared > 100);
}

/// 600 jobs in 3 domains, 7 creation times and 4 statuses: long runs of ties for every sort.
fn tied_jobs() -> Vec<Job> {
    let statuses = ["SUCCESS", "FAILURE", "IN_PROGRESS", "CANCELED"];
    let jobs: Vec<Value> = (0..600)
        .map(|i| {
            // Tags missing, null, empty, a scalar or two: what an unwind makes rows of or not.
            let mut options = json!({"n": i % 13});
            match (i / 3) % 5 {
                0 => {}
                1 => options["tags"] = Value::Null,
                2 => options["tags"] = json!([]),
                3 => options["tags"] = json!("solo"),
                _ => options["tags"] = json!([format!("t{}", i % 4), format!("t{}", (i + 1) % 4)]),
            }
            json!({"job_id": format!("job-{:04}", (i * 7919) % 600), "domain_id": format!("d{}", i % 3),
                   "status": statuses[i % 4], "data_source_id": format!("ds-{}", i % 5),
                   "created_at": format!("2024-01-0{}T00:00:00Z", 1 + i % 7),
                   "total_tasks": i % 11, "remained_tasks": i % 3,
                   "options": options})
        })
        .collect();
    offline::jobs_from_info(&Value::Array(jobs)).unwrap_or_default()
}

#[test]
fn pages_over_ties_are_answered_alike_in_chunks() {
    let jobs = tied_jobs();
    let now = Utc::now();
    let sorts = [
        json!(null),
        json!({"key": "created_at", "desc": true}),
        json!({"key": "status"}),
        json!([{"key": "total_tasks", "desc": true}, {"key": "data_source_id"}]),
        json!({"key": "options.n"}),
    ];
    let pages = [
        json!(null),
        json!({"limit": 1}),
        json!({"start": 5, "limit": 10}),
        json!({"start": 190, "limit": 50}),
        json!({"start": 1000, "limit": 3}),
    ];
    for sort in &sorts {
        for page in &pages {
            let mut query = json!({"filter": [{"k": "remained_tasks", "v": 2, "o": "lt"}]});
            if !sort.is_null() {
                query["sort"] = sort.clone();
            }
            if !page.is_null() {
                query["page"] = page.clone();
            }
            let request = json!({"domain_id": "d1", "query": query});
            let want = whole(&jobs, Verb::List, &request, now);
            assert_eq!(want.1, 0, "{request}: {}", want.0);
            for chunk in [1, 4, 33, 4_096] {
                assert_eq!(
                    streamed(&jobs, Verb::List, &request, now, chunk).as_ref(),
                    Some(&want),
                    "{request} in chunks of {chunk}"
                );
            }
        }
    }
    let counted = json!({"domain_id": "d2", "query": {"count_only": true}});
    let want = whole(&jobs, Verb::List, &counted, now);
    assert!(want.0.contains("\"total_count\": 200"), "{}", want.0);
    assert_eq!(streamed(&jobs, Verb::List, &counted, now, 9), Some(want));
}

#[test]
fn stat_and_get_are_answered_alike_in_chunks() {
    let jobs = tied_jobs();
    let now = Utc::now();
    let calls = [
        (
            Verb::Stat,
            json!({"domain_id": "d0", "query": {"aggregate": [
            {"group": {"keys": [{"key": "status", "name": "s"}], "fields": [{"operator": "count", "name": "n"}]}},
            {"sort": {"key": "n", "desc": true}}]}}),
        ),
        (
            Verb::Stat,
            json!({"domain_id": "d0", "query": {"aggregate": [
            {"unwind": {"path": "options.tags"}},
            {"group": {"keys": [{"key": "options.tags", "name": "t"}],
                       "fields": [{"operator": "push", "key": "job_id", "name": "ids"}]}}]}}),
        ),
        (
            Verb::Stat,
            json!({"domain_id": "d1", "query": {"aggregate": [
            {"unwind": {"path": "options.tags"}},
            {"group": {"keys": [{"key": "options.tags", "name": "t"}],
                       "fields": [{"operator": "push", "name": "ids", "fields": [{"key": "job_id", "name": "id"}]},
                                  {"operator": "add_to_set", "key": "status", "name": "s"}]}}]}}),
        ),
        (
            Verb::Stat,
            json!({"domain_id": "d2", "query": {"aggregate": [
            {"unwind": {"path": "options.tags"}}, {"skip": 3},
            {"project": {"fields": [{"key": "job_id", "name": "id"}, {"key": "options.tags", "name": "t"}]}}],
            "page": {"start": 2, "limit": 40}}}),
        ),
        (
            Verb::Stat,
            json!({"domain_id": "d2", "query": {"aggregate": [{"unwind": {"path": "options.nothing"}}]}}),
        ),
        (
            Verb::Stat,
            json!({"domain_id": "d1", "query": {"distinct": "data_source_id",
                                                          "filter": [{"k": "status", "v": "SUCCESS", "o": "eq"}]}}),
        ),
        (Verb::Get, json!({"domain_id": "d0", "job_id": "job-0000"})),
        (Verb::Get, json!({"domain_id": "d2", "job_id": "job-0000"})),
        (
            Verb::Get,
            json!({"domain_id": "d0", "job_id": "job-0000", "only": ["status"]}),
        ),
        (Verb::List, json!({"query": {}})),
        (
            Verb::Stat,
            json!({"domain_id": "d0", "query": {"aggregate": [{"bogus": {}}]}}),
        ),
    ];
    for (v, request) in &calls {
        let want = whole(&jobs, *v, request, now);
        for chunk in [1, 5, 4_096] {
            assert_eq!(
                streamed(&jobs, *v, request, now, chunk).as_ref(),
                Some(&want),
                "{request} in chunks of {chunk}"
            );
        }
    }
}

#[test]
fn a_repeated_id_asks_for_the_whole_index() {
    let mut jobs = tied_jobs();
    jobs.truncate(10);
    let mut again = jobs[3].clone();
    again.status = spaceone_query::JobStatus::Failure;
    jobs.push(again);
    let request = json!({"domain_id": "d0", "query": {}});
    assert_eq!(
        streamed(&jobs, Verb::List, &request, Utc::now(), 4),
        None,
        "a repeated job must not be answered from chunks"
    );
}

fn stat_chunked(
    jobs: &[Job],
    request: &Value,
    now: DateTime<Utc>,
    chunk: usize,
) -> Result<Chunked, String> {
    offline::stat_in_chunks::<Job>(request, now, &Limits::default(), chunk, &mut |sink| {
        for j in jobs {
            sink(j.clone());
        }
        Ok(())
    })
}

#[test]
fn a_leading_group_or_count_is_answered_alike_from_chunks_it_does_not_keep() {
    let jobs = tied_jobs();
    let now = Utc::now();
    let group = |keys: Value, fields: Value| json!({"group": {"keys": keys, "fields": fields}});
    let requests = [
        json!({"domain_id": "d0", "query": {"aggregate": [group(
            json!([{"key": "status", "name": "s"}]), json!([{"operator": "count", "name": "n"}]))]}}),
        json!({"domain_id": "d1", "query": {"filter": [{"k": "total_tasks", "v": 3, "o": "gte"}],
            "keyword": "job-0", "aggregate": [group(
            json!([{"key": "data_source_id", "name": "ds"}, {"key": "options.n", "name": "n"}]),
            json!([{"operator": "sum", "key": "total_tasks", "name": "t"},
                   {"operator": "average", "key": "remained_tasks", "name": "r"},
                   {"operator": "max", "key": "created_at", "name": "last"},
                   {"operator": "min", "key": "job_id", "name": "first"}])),
            {"sort": {"key": "t", "desc": true}}, {"limit": 5}], "page": {"start": 2, "limit": 3}}}),
        json!({"domain_id": "d2", "query": {"aggregate": [group(
            json!([{"key": "options.tags", "name": "tag"}]), json!([{"operator": "count", "name": "n"}])),
            {"count": {"name": "groups"}}]}}),
        json!({"domain_id": "d1", "query": {"filter": [{"k": "status", "v": "SUCCESS", "o": "eq"}],
            "aggregate": [{"count": {"name": "jobs"}}, {"project": {"fields": [{"key": "jobs", "name": "n"}]}}]}}),
        json!({"domain_id": "d1", "query": {"filter": [{"k": "status", "v": "NONE_SUCH", "o": "eq"}],
            "aggregate": [{"count": {"name": "jobs"}}]}}),
        json!({"domain_id": "nobody", "query": {"aggregate": [group(
            json!([{"key": "status", "name": "s"}]), json!([{"operator": "count", "name": "n"}]))]}}),
    ];
    for request in &requests {
        let want = whole(&jobs, Verb::Stat, request, now);
        assert_eq!(want.1, 0, "{request}: {}", want.0);
        for chunk in [1, 7, 4_096] {
            assert_eq!(
                stat_chunked(&jobs, request, now, chunk),
                Ok(Chunked::Answered(want.0.clone(), want.1)),
                "{request} in chunks of {chunk}"
            );
        }
    }
    // Refused before a record is read, as over an index.
    let bad = json!({"domain_id": "d0", "query": {"aggregate": [{"group": {"keys": "status"}}]}});
    let refused = whole(&jobs, Verb::Stat, &bad, now);
    assert_eq!(
        stat_chunked(&[], &bad, now, 3),
        Ok(Chunked::Answered(refused.0, refused.1))
    );
    // Any other pipeline needs its records in natural order: not answered here, nothing read.
    let ordered = json!({"domain_id": "d0", "query": {"aggregate": [group(
        json!([{"key": "status", "name": "s"}]), json!([{"operator": "add_to_set", "key": "job_id", "name": "ids"}]))]}});
    let mut read = false;
    let got = offline::stat_in_chunks::<Job>(&ordered, now, &Limits::default(), 3, &mut |_| {
        read = true;
        Ok(())
    });
    assert_eq!((got, read), (Ok(Chunked::NotChunked), false));
    // A repeated record goes back to a whole index (said apart from a pipeline that is not
    // chunked, so the command skips reading the file as chunks again); the file's error wins.
    let mut twice = jobs[..20].to_vec();
    twice.push(jobs[4].clone());
    assert_eq!(
        stat_chunked(&twice, &requests[0], now, 3),
        Ok(Chunked::Repeated)
    );
    let failed =
        offline::stat_in_chunks::<Job>(&requests[0], now, &Limits::default(), 3, &mut |sink| {
            sink(jobs[0].clone());
            Err("line 1: broken".to_string())
        });
    assert_eq!(failed, Err("line 1: broken".to_string()));
}
