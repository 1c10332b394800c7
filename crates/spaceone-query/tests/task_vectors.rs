//! The JobTask vectors of docs/spaceone-job-api.md section 7.1: tests/fixtures/task_vectors.json
//! over the fixture tests/fixtures/tasks.json (a `kubectl get cajt -A -o json` list, read by the
//! offline loader), answered by the same calls as jobs over an index of tasks.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use serde_json::Value;
use spaceone_query::{Limits, Scope, TaskIndex, calls, offline};

fn fixture() -> TaskIndex {
    let mut index = TaskIndex::empty();
    for task in offline::load_tasks(include_str!("fixtures/tasks.json")).unwrap() {
        index.upsert(task);
    }
    index
}

/// Numbers compared by value: a Struct holds doubles, the vectors write integers.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

fn problem(v: &Value, got: &Result<Value, spaceone_query::Error>) -> Option<String> {
    match (got, v.get("error")) {
        (Err(e), Some(want)) => {
            if want["code"] != e.code {
                Some(format!("code {} != {}", e.code, want["code"]))
            } else if want["grpc"] != e.grpc.as_str() {
                Some(format!("grpc {} != {}", e.grpc.as_str(), want["grpc"]))
            } else {
                want["message"]
                    .as_str()
                    .filter(|m| *m != e.message)
                    .map(|m| format!("message\n   got: {}\n  want: {m}", e.message))
            }
        }
        (Err(e), None) => Some(format!("unexpected error {e}")),
        (Ok(body), Some(want)) => Some(format!("expected error {want}, got {body}")),
        (Ok(body), None) => match v.get("body") {
            Some(want) => (normalize(body) != normalize(want))
                .then(|| format!("body\n   got: {body}\n  want: {want}")),
            None => {
                let ids: Vec<&str> = body["results"]
                    .as_array()
                    .map(|r| r.iter().filter_map(|t| t["job_task_id"].as_str()).collect())
                    .unwrap_or_default();
                let want: Vec<&str> = v["ids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let total = body["total_count"].as_u64();
                (ids != want || total != v["total"].as_u64())
                    .then(|| format!("got {ids:?} total {total:?}, want {want:?} {}", v["total"]))
            }
        },
    }
}

#[test]
fn every_task_vector_holds() {
    let index = fixture();
    assert_eq!(index.len(), 6);
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/task_vectors.json")).unwrap();
    assert!(vectors.len() > 30, "vectors file did not load");
    let (scope, limits, now) = (Scope::all(), Limits::default(), Utc::now());
    let (mut failures, mut skipped) = (Vec::new(), 0);
    for v in &vectors {
        let id = v["id"].as_str().unwrap_or("?");
        // A vector the engine cannot pass yet says why.
        if v.get("skip").is_some() {
            skipped += 1;
            continue;
        }
        let request = &v["request"];
        let got = match v["verb"].as_str() {
            Some("list") => calls::list(&index, &scope, request, now, &limits),
            Some("stat") => calls::stat(&index, &scope, request, now, &limits),
            Some("get") => calls::get(&index, &scope, request),
            other => panic!("{id}: unknown verb {other:?}"),
        };
        if let Some(p) = problem(v, &got) {
            failures.push(format!("{id}: {p}"));
        }
        // The REST encoding of a list, written straight from the records, is the same answer.
        if v["verb"] == "list"
            && let Ok(body) = &got
        {
            let encoded = calls::list_as::<calls::Encoded>(&index, &scope, request, now, &limits)
                .map(|e| serde_json::from_slice::<Value>(&e.0).unwrap())
                .unwrap();
            if &encoded != body {
                failures.push(format!("{id}: encoded {encoded} != {body}"));
            }
        }
    }
    assert!(skipped <= 1, "too many vectors skipped: {skipped}");
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

/// A task's plain record survives the index (get, select) unchanged, and a task query does not
/// run on an index of jobs.
#[test]
fn tasks_round_trip_and_stay_apart_from_jobs() {
    let tasks = offline::load_tasks(include_str!("fixtures/tasks.json")).unwrap();
    let index = fixture();
    for t in &tasks {
        assert_eq!(index.get(&t.namespace, &t.job_task_id).as_ref(), Some(t));
    }
    let (page, total) = calls::select(
        &index,
        &Scope::all(),
        &serde_json::json!({"filter": [{"k": "job_id", "v": "job-aaa111", "o": "eq"}]}),
        Utc::now(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(total, 2);
    assert_eq!(page[0].job_task_id, "job-aaa111.t2");
    let q = calls::parse_query_of::<spaceone_query::JobTask>(
        &serde_json::json!({}),
        Utc::now(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        index
            .query(&q, &Scope::all(), &Limits::default())
            .unwrap()
            .1,
        6
    );
    let jobs = spaceone_query::Index::new();
    assert!(jobs.query(&q, &Scope::all(), &Limits::default()).is_err());
    // A task list with a status the model does not store is refused by the loader.
    let bad = r#"{"items": [{"metadata": {"name": "x.y"}, "status": {"status": "TIMEOUT"}}]}"#;
    assert!(offline::load_tasks(bad).is_err());
}

/// The field-by-field view of a page (what a protobuf encoder reads) says what its JSON says, for
/// jobs ([`calls::InfoFields`]) and tasks ([`calls::InfoRow`]) alike.
#[test]
fn info_rows_agree_with_the_json_answers() {
    struct Rows(Vec<Value>, Value);
    impl calls::AnswerForm for Rows {
        fn from_serialize(_: &impl serde::Serialize) -> Self {
            Rows(Vec::new(), Value::Null)
        }
        fn from_jobs(page: &calls::JobsInfo<'_>) -> Self {
            let rows = page
                .rows()
                .map(|row| {
                    let mut m = serde_json::Map::new();
                    for (f, v) in row.values() {
                        let v = match v {
                            calls::InfoValue::Str("") | calls::InfoValue::Int(0) => continue,
                            calls::InfoValue::Time(None) | calls::InfoValue::Struct(None) => {
                                continue;
                            }
                            calls::InfoValue::Str(s) | calls::InfoValue::Enum(s) => s.into(),
                            calls::InfoValue::Int(n) => n.into(),
                            calls::InfoValue::Time(Some(ms)) => calls::info_time(ms).into(),
                            calls::InfoValue::Struct(Some(t)) => serde_json::from_str(t).unwrap(),
                        };
                        m.insert(f.name().into(), v);
                    }
                    Value::Object(m)
                })
                .collect();
            let jobs: Vec<Value> = page
                .infos()
                .map(|i| serde_json::json!([i.job_id, i.status, i.total_tasks, i.created_at]))
                .collect();
            Rows(rows, Value::Array(jobs))
        }
    }
    let (scope, limits, now) = (Scope::all(), Limits::default(), Utc::now());
    let req = serde_json::json!({"domain_id": "domain-1", "query": {}});
    let tasks = fixture();
    let json = calls::list(&tasks, &scope, &req, now, &limits).unwrap();
    let rows: Rows = calls::list_as(&tasks, &scope, &req, now, &limits).unwrap();
    assert_eq!(
        normalize(&Value::Array(rows.0)),
        normalize(&json["results"])
    );
    let mut jobs = spaceone_query::Index::new();
    for job in offline::load_jobs(include_str!("fixtures/jobs.json")).unwrap() {
        jobs.upsert(job);
    }
    let json = calls::list(&jobs, &scope, &req, now, &limits).unwrap();
    let rows: Rows = calls::list_as(&jobs, &scope, &req, now, &limits).unwrap();
    assert_eq!(Value::Array(rows.0), json["results"]);
    let first = &json["results"][0];
    assert_eq!(rows.1[0][0], first["job_id"]);
    assert_eq!(rows.1[0][1], first["status"]);
    assert_eq!(rows.1[0][2], first["total_tasks"]);
    assert!(rows.1[0][3].is_i64());
}

/// Status `eq`/`in` conditions are tested on the packed per-slot status, and counts by status read
/// it too: both agree with the same conditions evaluated on the records (a `regex_in` on the
/// status, and a group that also reads another field), for every set of names.
#[test]
fn the_packed_status_agrees_with_the_records() {
    let (scope, limits, now) = (Scope::all(), Limits::default(), Utc::now());
    let tasks = fixture();
    let mut jobs = spaceone_query::Index::new();
    for job in offline::load_jobs(include_str!("fixtures/jobs.json")).unwrap() {
        jobs.upsert(job);
    }
    let names = [
        "PENDING",
        "IN_PROGRESS",
        "SUCCESS",
        "FAILURE",
        "TIMEOUT",
        "CANCELED",
        "X",
    ];
    let total = |body: Value| body["total_count"].as_u64().unwrap();
    for bits in 0u32..(1 << names.len()) {
        let set: Vec<&str> = (0..names.len())
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| names[i])
            .collect();
        let patterns: Vec<String> = set.iter().map(|n| format!("^{n}$")).collect();
        for domain in ["domain-1", "domain-2"] {
            let req = |k: &str, v: Value, o: &str| {
                serde_json::json!({"domain_id": domain, "query": {
                    "filter": [{"k": k, "v": v, "o": o}], "count_only": true}})
            };
            let packed = req("status", serde_json::json!(set), "in");
            let records = req("status", serde_json::json!(patterns), "regex_in");
            assert_eq!(
                total(calls::list(&tasks, &scope, &packed, now, &limits).unwrap()),
                total(calls::list(&tasks, &scope, &records, now, &limits).unwrap()),
                "tasks {set:?} {domain}"
            );
            assert_eq!(
                total(calls::list(&jobs, &scope, &packed, now, &limits).unwrap()),
                total(calls::list(&jobs, &scope, &records, now, &limits).unwrap()),
                "jobs {set:?} {domain}"
            );
            if let [one] = set.as_slice() {
                let eq = req("status", serde_json::json!(one), "eq");
                assert_eq!(
                    total(calls::list(&tasks, &scope, &eq, now, &limits).unwrap()),
                    total(calls::list(&tasks, &scope, &records, now, &limits).unwrap()),
                );
            }
        }
    }
    let stat = |fields: Value| {
        serde_json::json!({"domain_id": "domain-1", "query": {"aggregate": [
            {"group": {"keys": [{"key": "status", "name": "s"}], "fields": fields}},
            {"sort": [{"key": "s"}]}]}})
    };
    let counts = stat(serde_json::json!([{"name": "c", "operator": "count"}]));
    let mixed = stat(serde_json::json!([{"name": "c", "operator": "count"},
        {"name": "m", "operator": "max", "key": "created_at"}]));
    for (plain, full) in [
        (
            calls::stat(&tasks, &scope, &counts, now, &limits).unwrap(),
            calls::stat(&tasks, &scope, &mixed, now, &limits).unwrap(),
        ),
        (
            calls::stat(&jobs, &scope, &counts, now, &limits).unwrap(),
            calls::stat(&jobs, &scope, &mixed, now, &limits).unwrap(),
        ),
    ] {
        let rows = |v: &Value| -> Vec<(Value, Value)> {
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| (r["s"].clone(), r["c"].clone()))
                .collect()
        };
        assert!(!rows(&plain).is_empty());
        assert_eq!(rows(&plain), rows(&full));
    }
}
