//! Hostile input (issue 9): requests that used to panic, stall or exhaust memory are answered
//! with a SpaceONE error, quickly and within bounded memory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chrono::Utc;
use serde_json::{Value, json};
use spaceone_query::{Error, Index, Limits, Scope, api, offline};

fn fixture() -> Index {
    let mut index = Index::new();
    for job in offline::load_jobs(include_str!("fixtures/jobs.json")).unwrap() {
        index.upsert(job);
    }
    index
}

fn list(index: &Index, query: Value) -> Result<Value, Error> {
    api::list(
        index,
        &Scope::all(),
        &json!({"domain_id": "domain-1", "query": query}),
        Utc::now(),
        &Limits::default(),
    )
}

fn stat(index: &Index, query: Value) -> Result<Value, Error> {
    api::stat(
        index,
        &Scope::all(),
        &json!({"domain_id": "domain-1", "query": query}),
        Utc::now(),
        &Limits::default(),
    )
}

/// Non-ASCII date strings: every operator that parses a date answers as it does for any other
/// unparsable string (plain comparisons: mongoengine's null, so nothing matches; `datetime_*`:
/// ERROR_DB_QUERY), never a panic.
#[test]
fn non_ascii_dates_are_answered_like_other_unparsable_dates() {
    let index = fixture();
    let bad = [
        "abcé",
        "é",
        "2024-01-01T10:00+1é1",
        "2024-01é",
        "202401é1",
        "2024-01-01T10:00:00-0é",
    ];
    for value in bad {
        for op in ["gt", "gte", "lt", "lte", "eq", "not"] {
            let filter = json!({"filter": [{"k": "created_at", "v": value, "o": op}]});
            let reference = json!({"filter": [{"k": "created_at", "v": "yesterday", "o": op}]});
            assert_eq!(
                list(&index, filter.clone()),
                list(&index, reference.clone()),
                "{op} {value}"
            );
            let agg = json!([{"group": {"fields": [{"name": "n", "operator": "count"}]}}]);
            let mut f = filter.clone();
            f["aggregate"] = agg.clone();
            let mut r = reference.clone();
            r["aggregate"] = agg;
            assert_eq!(stat(&index, f), stat(&index, r), "{op} {value}");
        }
        for op in ["datetime_gt", "datetime_gte", "datetime_lt", "datetime_lte"] {
            let q = json!({"filter": [{"k": "created_at", "v": value, "o": op}]});
            let e = list(&index, q.clone()).unwrap_err();
            assert_eq!(e.code, "ERROR_DB_QUERY", "{op} {value}");
            assert_eq!(
                e.message,
                format!(
                    "Database query failed. (reason = The value of {op} operator is required ISO 8601 format.)"
                )
            );
            let mut s = q;
            s["aggregate"] = json!([{"count": {"name": "n"}}]);
            let e = stat(&index, s).unwrap_err();
            assert_eq!(e.code, "ERROR_DB_QUERY", "{op} {value}");
        }
        for op in ["timediff_gt", "timediff_lt"] {
            let q = json!({"filter": [{"k": "created_at", "v": value, "o": op}]});
            let e = list(&index, q).unwrap_err();
            assert_eq!(e.code, "ERROR_DB_QUERY", "{op} {value}");
        }
    }
}
