//! gRPC `list` beside REST `list` on the same 100,000 jobs, in process: each side's whole adapter
//! path around the same engine call, from the request bytes a client sends to the answer bytes
//! the server writes.
//! - REST: the JSON body parsed (as `body::parse_body` does), `list_as::<Encoded>`, the JSON
//!   text is the answer.
//! - gRPC: the protobuf JobQuery decoded (prost), turned into the same JSON request
//!   (`grpc::convert::request`), `list_as::<wire::Proto>`: the JobsInfo bytes written straight
//!   from the engine's fields, as the server answers them.
//! - gRPC via owned messages, the route before (2026-12-05), for the ratio of the change: a
//!   prost `JobsInfo` of owned strings built from the engine's fields, then encoded.
//! - gRPC via JSON, the route before that: `list_as::<Encoded>`, that text turned into JobsInfo
//!   (`convert::jobs_info`) and encoded.
//!
//! TLS, HTTP/2 framing and authentication are the same for both (one server, one port) and are
//! left out. Reports medians, p99 and the ratio gRPC / REST, and the answer sizes.
//!   cargo bench --bench grpc_vs_rest          (BENCH_JOBS=100000 by default)

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use cost_analysis_operator::api::grpc::{convert, pb, wire};
use prost::Message;
use serde_json::json;
use spaceone_query::{Index, Job, JobStatus, Limits, Scope, calls as api};

fn jobs(n: usize) -> Index {
    let mut index = Index::new();
    for i in 0..n {
        let status = match i % 10 {
            0 => JobStatus::Failure,
            1 => JobStatus::InProgress,
            2 => JobStatus::Canceled,
            3 => JobStatus::Timeout,
            _ => JobStatus::Success,
        };
        let created = Utc
            .timestamp_opt(1_700_000_000 + (i as i64) * 7, 0)
            .single();
        index.upsert(Job {
            namespace: format!("ns-{}", i % 3),
            job_id: format!("job-{i:012x}"),
            status,
            error_code: (status == JobStatus::Failure).then(|| "ERROR_JOB_TASK".into()),
            error_message: (status == JobStatus::Failure)
                .then(|| "One or more job tasks have failed.".into()),
            total_tasks: (i % 9) as i64,
            remained_tasks: (i % 2) as i64,
            data_source_id: format!("ds-{}", i % 10),
            domain_id: format!("domain-{}", i % 2),
            options: serde_json::Map::new(),
            created_at: created,
            updated_at: created,
            finished_at: (status != JobStatus::InProgress)
                .then_some(created)
                .flatten(),
            last_changed_at: None,
        });
    }
    index
}

/// The route before: a JobsInfo message of owned strings built from the engine's fields.
struct Owned(pb::job::JobsInfo);

impl api::AnswerForm for Owned {
    fn from_serialize(_: &impl serde::Serialize) -> Self {
        Owned(pb::job::JobsInfo::default())
    }

    fn from_jobs(jobs: &api::JobsInfo<'_>) -> Self {
        let time = |ms: Option<i64>| ms.map(api::info_time).unwrap_or_default();
        let count = |n: i64| i32::try_from(n).unwrap_or(i32::MAX);
        let results = jobs
            .infos()
            .map(|f| pb::job::JobInfo {
                job_id: f.job_id.to_owned(),
                status: pb::job::job_info::Status::from_str_name(f.status).map_or(0, |s| s as i32),
                error_code: f.error_code.to_owned(),
                error_message: f.error_message.to_owned(),
                total_tasks: count(f.total_tasks),
                remained_tasks: count(f.remained_tasks),
                data_source_id: f.data_source_id.to_owned(),
                domain_id: f.domain_id.to_owned(),
                created_at: time(f.created_at),
                updated_at: time(f.updated_at),
                finished_at: time(f.finished_at),
                last_changed_at: time(f.last_changed_at),
            })
            .collect();
        Owned(pb::job::JobsInfo {
            results,
            total_count: i32::try_from(jobs.total()).unwrap_or(i32::MAX),
        })
    }
}

fn median_p99(mut s: Vec<Duration>) -> (f64, f64) {
    s.sort();
    let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn main() {
    let n: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let index = jobs(n);
    let scope = Scope {
        namespace: None,
        domains: Some(vec!["domain-0".into()]),
    };
    let limits = Limits::default();
    println!("{n} jobs, {rounds} rounds per case (medians and p99 in microseconds)");
    for limit in [100u32, 1000] {
        // The shim benchmark's list: one data source, newest first, a page.
        let rest_body = json!({"domain_id": "domain-0", "query": {
            "filter": [{"k": "data_source_id", "v": "ds-4", "o": "eq"}],
            "sort": {"key": "created_at", "desc": true}, "page": {"start": 1, "limit": limit}}})
        .to_string()
        .into_bytes();
        let grpc_body = pb::job::JobQuery {
            domain_id: "domain-0".into(),
            query: Some(pb::core::Query {
                filter: vec![pb::core::Filter {
                    key_alias: Some(pb::core::filter::KeyAlias::K("data_source_id".into())),
                    value_alias: Some(pb::core::filter::ValueAlias::V(convert::to_value(json!(
                        "ds-4"
                    )))),
                    operator_alias: Some(pb::core::filter::OperatorAlias::O("eq".into())),
                }],
                sort: Some(pb::core::Sort {
                    key: "created_at".into(),
                    desc: true,
                    ..Default::default()
                }),
                page: Some(pb::core::Page { start: 1, limit }),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let rest = || {
            let request = cost_analysis_operator::api::body::parse_body(&rest_body).unwrap();
            api::list_as::<api::Encoded>(&index, &scope, &request, Utc::now(), &limits)
                .unwrap()
                .0
        };
        let grpc = || {
            let message = pb::job::JobQuery::decode(&grpc_body[..]).unwrap();
            let request = convert::request(&message, None);
            api::list_as::<wire::Proto>(&index, &scope, &request, Utc::now(), &limits)
                .unwrap()
                .0
        };
        let owned = || {
            let message = pb::job::JobQuery::decode(&grpc_body[..]).unwrap();
            let request = convert::request(&message, None);
            api::list_as::<Owned>(&index, &scope, &request, Utc::now(), &limits)
                .unwrap()
                .0
                .encode_to_vec()
        };
        let via_json = || {
            let message = pb::job::JobQuery::decode(&grpc_body[..]).unwrap();
            let request = convert::request(&message, None);
            let text = api::list_as::<api::Encoded>(&index, &scope, &request, Utc::now(), &limits)
                .unwrap()
                .0;
            convert::jobs_info(&text).unwrap().encode_to_vec()
        };
        assert_eq!(grpc(), via_json(), "the gRPC routes answer the same bytes");
        assert_eq!(grpc(), owned(), "the gRPC routes answer the same bytes");
        // Same answer: the gRPC bytes decode to the REST JSON's jobs.
        let (r, g) = (rest(), grpc());
        let jobs = pb::job::JobsInfo::decode(&g[..]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(
            jobs.results.len(),
            json["results"].as_array().unwrap().len()
        );
        assert_eq!(jobs.results[0].job_id, json["results"][0]["job_id"]);
        let (mut rs, mut gs, mut os, mut js) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..rounds + 10 {
            // Interleaved, so every route sees the same machine load.
            let t = Instant::now();
            std::hint::black_box(rest());
            let rd = t.elapsed();
            let t = Instant::now();
            std::hint::black_box(grpc());
            let gd = t.elapsed();
            let t = Instant::now();
            std::hint::black_box(owned());
            let od = t.elapsed();
            let t = Instant::now();
            std::hint::black_box(via_json());
            let jd = t.elapsed();
            if i >= 10 {
                rs.push(rd);
                gs.push(gd);
                os.push(od);
                js.push(jd);
            }
        }
        let ((r50, r99), (g50, g99)) = (median_p99(rs), median_p99(gs));
        let ((o50, o99), (j50, j99)) = (median_p99(os), median_p99(js));
        println!(
            "list, page of {limit}: REST median {r50:.0} p99 {r99:.0} ({} answer bytes); gRPC median {g50:.0} p99 {g99:.0} ({} answer bytes); ratio gRPC/REST median {:.2}, p99 {:.2}",
            r.len(),
            g.len(),
            g50 / r50,
            g99 / r99,
        );
        println!(
            "  before: gRPC via owned messages median {o50:.0} p99 {o99:.0}, ratio {:.2}; gRPC via JSON median {j50:.0} p99 {j99:.0}, ratio {:.2}",
            o50 / r50,
            j50 / r50
        );
    }
}
