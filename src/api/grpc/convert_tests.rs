#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use crate::api::grpc::wire::Proto;
use prost::Message;

#[test]
fn requests_become_message_to_dict_json() {
    let r = job_pb::JobQuery {
        query: Some(query_pb::Query {
            filter: vec![query_pb::Filter {
                key_alias: Some(query_pb::filter::KeyAlias::K("status".into())),
                value_alias: Some(query_pb::filter::ValueAlias::V(to_value(json!([
                    "SUCCESS"
                ])))),
                operator_alias: Some(query_pb::filter::OperatorAlias::O("in".into())),
            }],
            page: Some(query_pb::Page { start: 0, limit: 2 }),
            sort: Some(query_pb::Sort::default()),
            ..Default::default()
        }),
        status: job_pb::job_query::Status::Failure as i32,
        ..Default::default()
    };
    assert_eq!(
        request(&r, Some("d-1")),
        json!({"query": {"filter": [{"k": "status", "v": ["SUCCESS"], "o": "in"}],
                         "sort": {}, "page": {"limit": 2}},
               "status": "FAILURE", "domain_id": "d-1"})
    );
    let r = job_pb::JobRequest {
        job_id: "job-1".into(),
        domain_id: "d-body".into(),
    };
    assert_eq!(
        request(&r, Some("d-meta")),
        json!({"job_id": "job-1", "domain_id": "d-body"})
    );
    assert_eq!(number(3.0), json!(3));
    assert_eq!(number(2.5), json!(2.5));
}

#[test]
fn answers_become_messages() {
    let info = job_info(
        json!({"job_id": "job-1", "status": "CANCELED", "total_tasks": 3,
                               "domain_id": "d"}),
    )
    .unwrap();
    assert_eq!(info.status, job_pb::job_info::Status::Canceled as i32);
    assert_eq!(info.total_tasks, 3);
    let jobs = jobs_info(br#"{"results":[{"job_id":"a"}],"total_count":7}"#).unwrap();
    assert_eq!(jobs.total_count, 7);
    assert_eq!(jobs.results.len(), 1);
    let s = to_struct(
        json!({"results": [{"n": 1.0, "k": null}]})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_eq!(from_struct(&s), json!({"results": [{"n": 1, "k": null}]}));
}

/// The JobsInfo built from the engine's fields equals the one the JSON text converts to, for
/// every projection (full, minimal, only) and for values at the edges (no times, counts
/// beyond int32, error fields, the latest date chrono has).
#[test]
fn a_list_built_from_fields_equals_the_json_route() {
    use spaceone_query::calls::{self, Encoded};
    use spaceone_query::{Index, Job, JobStatus, Limits, Scope};
    let mut index = Index::new();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    for (i, status) in JobStatus::ALL.into_iter().enumerate() {
        index.upsert(Job {
            namespace: "ns".into(),
            job_id: format!("job-{i}"),
            status,
            error_code: (i % 2 == 0).then(|| "ERROR_JOB_TASK".into()),
            error_message: (i % 2 == 0).then(|| "One or more job tasks have failed.".into()),
            total_tasks: [0, 3, i64::MAX, -5, 1 << 40][i % 5],
            remained_tasks: [0, 1, i64::MIN, 2, 0][i % 5],
            data_source_id: format!("ds-{i}"),
            domain_id: "d".into(),
            options: serde_json::Map::new(),
            created_at: Some(at("2024-01-02T03:04:05.678Z")),
            updated_at: (i % 2 == 1).then(|| at("2024-01-02T03:04:06Z")),
            finished_at: (i == 3).then_some(chrono::DateTime::<chrono::Utc>::MAX_UTC),
            last_changed_at: None,
        });
    }
    let queries = [
        json!({}),
        json!({"minimal": true}),
        json!({"only": ["job_id", "created_at", "total_tasks"]}),
        json!({"only": ["error_code"]}),
        json!({"page": {"start": 2, "limit": 2}, "sort": [{"key": "job_id", "desc": true}]}),
        json!({"filter": [{"k": "status", "v": "nothing", "o": "eq"}]}),
    ];
    let (scope, limits, now) = (Scope::all(), Limits::default(), chrono::Utc::now());
    for query in queries {
        let request = json!({"domain_id": "d", "query": query});
        let text = calls::list_as::<Encoded>(&index, &scope, &request, now, &limits).unwrap();
        let proto = calls::list_as::<Proto>(&index, &scope, &request, now, &limits).unwrap();
        let former = jobs_info(&text.0).unwrap();
        assert_eq!(proto.0, former.encode_to_vec(), "{query}: the same bytes");
        assert_eq!(job_pb::JobsInfo::decode(&proto.0[..]).unwrap(), former);
    }
    // A get's JobInfo (full and projected) and a cancel's (a plain Job): the same bytes as the
    // JSON answer's message.
    for (i, job) in JobStatus::ALL.into_iter().enumerate() {
        let id = format!("job-{i}");
        for only in [
            json!(null),
            json!(["status", "finished_at"]),
            json!(["job_id"]),
        ] {
            let request = json!({"domain_id": "d", "job_id": id, "only": only});
            let json = calls::get(&index, &scope, &request).unwrap();
            let proto = calls::get_as::<Proto, _>(&index, &scope, &request).unwrap();
            assert_eq!(
                proto.0,
                job_info(json).unwrap().encode_to_vec(),
                "{id} {only}"
            );
        }
        let plain = Job {
            namespace: "ns".into(),
            job_id: id.clone(),
            status: job,
            error_code: None,
            error_message: Some("a \"quoted\" message".into()),
            total_tasks: -3,
            remained_tasks: 0,
            data_source_id: "ds".into(),
            domain_id: "d".into(),
            options: serde_json::Map::new(),
            created_at: Some(at("2024-01-02T03:04:05.678Z")),
            updated_at: None,
            finished_at: Some(at("2024-01-02T03:04:06Z")),
            last_changed_at: None,
        };
        let proto = calls::info_as::<Proto, _>(&plain).unwrap();
        let former = job_info(calls::job_info(&plain)).unwrap();
        assert_eq!(proto.0, former.encode_to_vec(), "{id}");
    }
}
