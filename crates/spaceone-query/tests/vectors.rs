//! The test vectors of docs/spaceone-job-api.md section 5 (adapted to the seed's version where
//! that page's first section says so; section 5.4 explains the files) and this crate's own cases,
//! from tests/fixtures/vectors.json over the fixture tests/fixtures/jobs.json.

use chrono::{DateTime, Utc};
use serde_json::Value;
use spaceone_query::{Index, Limits, Scope, calls, offline};

fn fixture() -> Index {
    let text = include_str!("fixtures/jobs.json");
    let mut index = Index::new();
    for job in offline::load_jobs(text).unwrap_or_default() {
        index.upsert(job);
    }
    index
}

/// Numbers compared by value: the Struct answer holds doubles, the vectors write integers.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().map(|f| (f * 1e9).round() / 1e9)),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

fn short(id: &str) -> String {
    id.trim_start_matches("job-").chars().take(3).collect()
}

#[test]
fn every_vector_holds() {
    let index = fixture();
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/vectors.json")).unwrap_or_default();
    assert!(vectors.len() > 100, "vectors file did not load");
    let mut failures = Vec::new();
    let mut skipped = 0;
    for v in &vectors {
        let id = v["id"].as_str().unwrap_or("?");
        // Vectors that cannot apply to the seed's Job say why in the fixture.
        if v.get("skip").is_some() {
            skipped += 1;
            continue;
        }
        let now: DateTime<Utc> = v["now"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let request = &v["request"];
        let scope = Scope::all();
        let got = match v["verb"].as_str() {
            Some("list") => calls::list(&index, &scope, request, now, &Limits::default()),
            Some("stat") => calls::stat(&index, &scope, request, now, &Limits::default()),
            Some("get") => calls::get(&index, &scope, request),
            other => panic!("{id}: unknown verb {other:?}"),
        };
        let problem = match (&got, v.get("error")) {
            (Err(e), Some(want)) => {
                let mut p = None;
                if want["code"] != e.code {
                    p = Some(format!("code {} != {}", e.code, want["code"]));
                } else if want["grpc"] != e.grpc.as_str() {
                    p = Some(format!("grpc {} != {}", e.grpc.as_str(), want["grpc"]));
                } else if let Some(m) = want["message"].as_str().filter(|m| *m != e.message) {
                    p = Some(format!("message\n   got: {}\n  want: {m}", e.message));
                }
                p
            }
            (Err(e), None) => Some(format!("unexpected error {e}")),
            (Ok(body), Some(want)) => Some(format!("expected error {want}, got {body}")),
            (Ok(body), None) => {
                if let Some(want) = v.get("body") {
                    (normalize(body) != normalize(want))
                        .then(|| format!("body\n   got: {body}\n  want: {want}"))
                } else {
                    let ids: Vec<String> = body["results"]
                        .as_array()
                        .map(|r| {
                            r.iter()
                                .map(|j| short(j["job_id"].as_str().unwrap_or("")))
                                .collect()
                        })
                        .unwrap_or_default();
                    let want_ids: Vec<String> = v["ids"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let total = body["total_count"].as_u64().unwrap_or(0);
                    (ids != want_ids || Some(total) != v["total"].as_u64()).then(|| {
                        format!(
                            "got {ids:?} total {total}, want {want_ids:?} total {}",
                            v["total"]
                        )
                    })
                }
            }
        };
        if let Some(p) = problem {
            failures.push(format!("{id}: {p}"));
        }
    }
    assert!(skipped < 10, "too many vectors skipped: {skipped}");
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len() - skipped,
        failures.join("\n")
    );
}

/// The REST surface encodes lists straight from the records ([`calls::Encoded`]): every list vector
/// gives the same answer that way, `results` and `total_count` included when empty or zero.
#[test]
fn encoded_lists_equal_the_value_answers() {
    let index = fixture();
    let vectors: Vec<Value> =
        serde_json::from_str(include_str!("fixtures/vectors.json")).unwrap_or_default();
    let mut checked = 0;
    for v in vectors.iter().filter(|v| v["verb"] == "list") {
        let now = Utc::now();
        let request = &v["request"];
        let value = calls::list(&index, &Scope::all(), request, now, &Limits::default());
        let encoded = calls::list_as::<calls::Encoded>(
            &index,
            &Scope::all(),
            request,
            now,
            &Limits::default(),
        );
        match (value, encoded) {
            (Ok(value), Ok(encoded)) => {
                let decoded: Value = serde_json::from_slice(&encoded.0).unwrap();
                assert_eq!(decoded, value, "{}", v["id"]);
                assert!(decoded["results"].is_array(), "{}: {decoded}", v["id"]);
                assert!(decoded["total_count"].is_u64(), "{}: {decoded}", v["id"]);
                checked += 1;
            }
            (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{}", v["id"]),
            (a, b) => panic!("{}: {a:?} vs {:?}", v["id"], b.map(|e| e.0.len())),
        }
    }
    assert!(checked > 40, "{checked}");
}

#[test]
fn raw_documents_render_top_level_datetimes_as_isoformat() {
    // S22 under the seed: no group stage, the raw document's datetimes become isoformat()+"Z".
    let index = fixture();
    let req = serde_json::json!({"domain_id": "domain-1", "query": {"aggregate": [
        {"sort": [{"key": "created_at", "desc": true}]}, {"limit": 1}]}});
    let body = calls::stat(&index, &Scope::all(), &req, Utc::now(), &Limits::default())
        .map_err(|e| e.to_string());
    let row = body
        .as_ref()
        .map(|b| b["results"][0].clone())
        .unwrap_or_default();
    assert_eq!(row["job_id"], "job-fff666", "{body:?}");
    assert_eq!(row["created_at"], "2024-01-06T00:00:00Z");
    assert_eq!(row["finished_at"], "2024-01-06T01:00:00Z");
    assert_eq!(row["error_code"], Value::Null);
}

#[test]
fn scope_hides_other_domains_and_namespaces_everywhere() {
    let index = fixture();
    let scope = Scope {
        namespace: None,
        domains: Some(vec!["domain-2".into()]),
    };
    // The request asks for domain-1, the caller may only see domain-2: nothing leaks.
    let list = calls::list(
        &index,
        &scope,
        &serde_json::json!({"domain_id": "domain-1", "query": {"keyword": "aaa"}}),
        Utc::now(),
        &Limits::default(),
    );
    assert_eq!(
        list.ok(),
        Some(serde_json::json!({"results": [], "total_count": 0}))
    );
    let stat = calls::stat(
        &index,
        &scope,
        &serde_json::json!({"domain_id": "domain-1", "query": {"distinct": "job_id"}}),
        Utc::now(),
        &Limits::default(),
    );
    assert_eq!(stat.ok(), Some(serde_json::json!({"results": []})));
    let get = calls::get(
        &index,
        &scope,
        &serde_json::json!({"domain_id": "domain-1", "job_id": "job-aaa111"}),
    );
    assert_eq!(get.err().map(|e| e.code), Some("ERROR_NOT_FOUND"));
    let ns = Scope {
        namespace: Some("other".into()),
        domains: None,
    };
    let (jobs, total) = calls::select(
        &index,
        &ns,
        &serde_json::json!({}),
        Utc::now(),
        &Limits::default(),
    )
    .unwrap_or_default();
    assert_eq!((jobs.len(), total), (0, 0));
}
