//! The offline command's loading and answers, the index's bookkeeping, and the error type's
//! transport mapping.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use spaceone_query::offline::{Verb, load_jobs, run};
use spaceone_query::{Error, GrpcCode, Index, Job, JobStatus, Limits, Scope, calls};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 6, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn job(ns: &str, id: &str, domain: &str) -> Job {
    Job {
        namespace: ns.into(),
        job_id: id.into(),
        status: JobStatus::InProgress,
        error_code: None,
        error_message: None,
        total_tasks: 3,
        remained_tasks: 3,
        data_source_id: "ds-1".into(),
        domain_id: domain.into(),
        options: serde_json::Map::new(),
        created_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single(),
        updated_at: None,
        finished_at: None,
        last_changed_at: None,
    }
}

#[test]
fn jobinfo_array_round_trips_through_job_info() {
    let jobs = load_jobs(include_str!("fixtures/jobs.json")).unwrap_or_default();
    assert_eq!(jobs.len(), 7);
    let text = include_str!("fixtures/jobs.json");
    let raw: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
    for (job, raw) in jobs.iter().zip(&raw) {
        let info = calls::job_info(job);
        for key in [
            "job_id",
            "status",
            "data_source_id",
            "domain_id",
            "created_at",
        ] {
            assert_eq!(info[key], raw[key], "{key} of {}", job.job_id);
        }
        // proto3 JSON leaves zeros out.
        if raw["total_tasks"] == json!(0) {
            assert!(info.get("total_tasks").is_none());
        }
        // The seed's JobInfo has no options.
        assert!(info.get("options").is_none());
    }
}

#[test]
fn bad_job_files_are_plain_messages() {
    for (text, want) in [
        ("not json", "not valid JSON"),
        ("{\"kind\": \"Pod\"}", "expected a JSON array"),
        ("[{\"status\": \"SUCCESS\"}]", "no job_id"),
        (
            "[{\"job_id\": \"j\", \"status\": \"DONE\"}]",
            "unknown status",
        ),
        (
            "[{\"job_id\": \"j\", \"created_at\": \"yesterday\"}]",
            "invalid time",
        ),
    ] {
        let err = load_jobs(text).err().unwrap_or_default();
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn run_prints_the_answer_or_the_error_with_its_exit_status() {
    let jobs = load_jobs(include_str!("fixtures/jobs.json")).unwrap_or_default();
    let (out, code) = run(
        Verb::List,
        jobs.clone(),
        &json!({"domain_id": "domain-1", "query": {"page": {"limit": 1}}}),
        now(),
        &Limits::default(),
    );
    assert_eq!(code, 0);
    let body: Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(body["results"][0]["job_id"], "job-fff666");
    assert_eq!(body["total_count"], 6);

    // Lists always carry `results` and `total_count` (spec, Corrections): count_only and no match.
    for (query, want) in [
        (
            json!({"count_only": true}),
            json!({"results": [], "total_count": 6}),
        ),
        (
            json!({"filter": [{"k": "job_id", "v": "nope", "o": "eq"}]}),
            json!({"results": [], "total_count": 0}),
        ),
    ] {
        let (out, code) = run(
            Verb::List,
            jobs.clone(),
            &json!({"domain_id": "domain-1", "query": query}),
            now(),
            &Limits::default(),
        );
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_str::<Value>(&out).ok(),
            Some(want),
            "{out}"
        );
    }

    let (out, code) = run(
        Verb::Get,
        jobs.clone(),
        &json!({"domain_id": "domain-1", "job_id": "nope"}),
        now(),
        &Limits::default(),
    );
    assert_eq!(code, 1);
    let body: Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(
        body,
        json!({"error": {"code": "ERROR_NOT_FOUND",
            "message": "Value not found. (('job_id', 'domain_id') = ('nope', 'domain-1'))"}})
    );

    let (out, code) = run(
        Verb::Stat,
        jobs,
        &json!({"domain_id": "domain-1", "query": {"distinct": "status"}}),
        now(),
        &Limits::default(),
    );
    assert_eq!(code, 0);
    let body: Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!(
        body,
        json!({"results": ["CANCELED", "FAILURE", "IN_PROGRESS", "SUCCESS"]})
    );
}

#[test]
fn index_is_keyed_by_namespace_and_job_id() {
    let mut index = Index::new();
    assert!(index.is_empty());
    index.upsert(job("a", "job-1", "d1"));
    index.upsert(job("b", "job-1", "d2"));
    assert_eq!(index.len(), 2);
    let mut changed = job("a", "job-1", "d1");
    changed.status = JobStatus::Canceled;
    index.upsert(changed.clone());
    assert_eq!(index.len(), 2);
    assert_eq!(index.get("a", "job-1"), Some(changed));
    assert_eq!(
        index.get("b", "job-1").map(|j| j.domain_id),
        Some("d2".into())
    );
    assert!(index.remove("a", "job-1"));
    assert!(!index.remove("a", "job-1"));
    assert_eq!(index.get("a", "job-1"), None);
    assert_eq!(index.len(), 1);
    // A freed slot is reused and the answers stay right.
    index.upsert(job("c", "job-2", "d1"));
    assert_eq!(index.len(), 2);
    let body = calls::list(
        &index,
        &Scope::all(),
        &json!({"domain_id": "d1", "query": {}}),
        now(),
        &Limits::default(),
    )
    .unwrap_or_default();
    assert_eq!(body["total_count"], 1);
    assert_eq!(body["results"][0]["job_id"], "job-2");
    assert!(index.approx_heap_bytes() > 0);
}

#[test]
fn namespace_scope_separates_equal_job_ids() {
    let mut index = Index::new();
    index.upsert(job("a", "job-1", "d1"));
    let mut other = job("b", "job-1", "d1");
    other.status = JobStatus::Success;
    index.upsert(other);
    let scope = Scope {
        namespace: Some("b".into()),
        domains: None,
    };
    let got = calls::get(
        &index,
        &scope,
        &json!({"domain_id": "d1", "job_id": "job-1"}),
    )
    .unwrap_or_default();
    assert_eq!(got["status"], "SUCCESS");
    let stat = calls::stat(
        &index,
        &scope,
        &json!({"domain_id": "d1", "query": {"aggregate": [{"count": {"name": "n"}}]}}),
        now(),
        &Limits::default(),
    )
    .unwrap_or_default();
    assert_eq!(stat, json!({"results": [{"n": 1.0}]}));
}

#[test]
fn errors_carry_grpc_and_http_status() {
    let e: Error = calls::get(&Index::new(), &Scope::all(), &json!({"domain_id": "d"}))
        .err()
        .unwrap_or_else(|| Error::unknown("none"));
    assert_eq!(e.code, "ERROR_REQUIRED_PARAMETER");
    assert_eq!(e.grpc, GrpcCode::InvalidArgument);
    assert_eq!(e.grpc.as_str(), "INVALID_ARGUMENT");
    assert_eq!(e.grpc.http_status(), 400);
    assert_eq!(
        e.to_string(),
        "ERROR_REQUIRED_PARAMETER: Required parameter. (key = job_id)"
    );
    assert_eq!(GrpcCode::Internal.http_status(), 500);
    assert_eq!(GrpcCode::NotFound.http_status(), 404);
    assert_eq!("CANCELED".parse::<JobStatus>(), Ok(JobStatus::Canceled));
    assert!("SCOPE_NONE".parse::<JobStatus>().is_err());
}

#[test]
fn a_parsed_query_is_reusable_and_yields_keys_in_order() {
    let mut index = Index::new();
    for job in load_jobs(include_str!("fixtures/jobs.json")).unwrap_or_default() {
        index.upsert(job);
    }
    let q = calls::parse_query(
        &json!({"filter": [{"k": "domain_id", "v": "domain-1", "o": "eq"}],
                "keyword": "aaa fff", "page": {"limit": 1}}),
        now(),
        &Limits::default(),
    );
    let Ok(q) = q else {
        panic!("parse failed: {q:?}")
    };
    assert!(!q.minimal() && !q.count_only());
    let (keys, total) = index.query(&q, &Scope::all(), &Limits::default()).unwrap();
    assert_eq!(total, 2);
    assert_eq!(keys, vec![(String::new(), "job-fff666".to_string())]);
    // The same parsed query over a changed index.
    assert!(index.remove("", "job-fff666"));
    let (keys, total) = index.query(&q, &Scope::all(), &Limits::default()).unwrap();
    assert_eq!((keys[0].1.as_str(), total), ("job-aaa111", 1));
    // Parse errors are SpaceONE errors.
    let err = calls::parse_query(
        &json!({"filter": [{"k": "status", "v": "x", "o": "in"}]}),
        now(),
        &Limits::default(),
    )
    .err()
    .map(|e| e.code);
    assert_eq!(err, Some("ERROR_OPERATOR_LIST_VALUE_TYPE"));
}
