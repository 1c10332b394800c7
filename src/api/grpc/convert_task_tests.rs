#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;
use crate::api::grpc::convert::{request, to_value};
use crate::api::grpc::pb::core as query_pb;
use crate::api::grpc::wire::Proto;
use prost::Message;
use serde_json::json;

#[test]
fn task_requests_become_message_to_dict_json() {
    let r = job_pb::JobTaskQuery {
        query: Some(query_pb::Query {
            filter: vec![query_pb::Filter {
                key_alias: Some(query_pb::filter::KeyAlias::K("status".into())),
                value_alias: Some(query_pb::filter::ValueAlias::V(to_value(json!("FAILURE")))),
                operator_alias: Some(query_pb::filter::OperatorAlias::O("eq".into())),
            }],
            ..Default::default()
        }),
        job_id: "job-1".into(),
        // JobTaskQuery's own numbers: PENDING is 1 (Job's enum has no PENDING).
        status: job_pb::job_task_query::Status::Pending as i32,
        ..Default::default()
    };
    assert_eq!(
        request(&r, Some("d-1")),
        json!({"query": {"filter": [{"k": "status", "v": "FAILURE", "o": "eq"}]},
               "status": "PENDING", "job_id": "job-1", "domain_id": "d-1"})
    );
    let canceled = job_pb::JobTaskQuery {
        status: 6,
        ..Default::default()
    };
    assert_eq!(request(&canceled, None), json!({"status": "CANCELED"}));
    // An enum number the message does not have stays a number, as MessageToDict gives it.
    let unknown = job_pb::JobTaskQuery {
        status: 42,
        domain_id: "d".into(),
        ..Default::default()
    };
    assert_eq!(
        request(&unknown, Some("meta")),
        json!({"status": 42, "domain_id": "d"})
    );
    let get = job_pb::GetJobTaskRequest {
        job_task_id: "job-1.t".into(),
        domain_id: String::new(),
        only: vec!["status".into()],
    };
    assert_eq!(
        request(&get, Some("d-meta")),
        json!({"job_task_id": "job-1.t", "only": ["status"], "domain_id": "d-meta"})
    );
    assert_eq!(
        request(&job_pb::JobTaskStatQuery::default(), None),
        json!({})
    );
    let stat = job_pb::JobTaskStatQuery {
        query: Some(query_pb::StatisticsQuery::default()),
        domain_id: "d".into(),
    };
    assert_eq!(request(&stat, None), json!({"query": {}, "domain_id": "d"}));
}

#[test]
fn task_answers_become_messages_with_their_own_enum_numbers() {
    let info = job_task_info(json!({"job_task_id": "j.t", "status": "PENDING",
                                    "options": {"n": 1}, "job_id": "j",
                                    "created_at": "2024-01-02T03:04:05.678Z"}))
    .unwrap();
    assert_eq!(info.status, 1);
    assert_eq!(info.job_id, "j");
    assert_eq!(
        info.options.unwrap().fields["n"],
        to_value(json!(1.0)),
        "options is a Struct"
    );
    for (name, number) in [
        ("IN_PROGRESS", 2),
        ("SUCCESS", 3),
        ("FAILURE", 4),
        ("TIMEOUT", 5),
        ("CANCELED", 6),
    ] {
        let info = job_task_info(json!({"status": name})).unwrap();
        assert_eq!(info.status, number, "{name}");
        assert!(info.options.is_none(), "a minimal Info has no options");
    }
    assert!(job_task_info(json!("not an object")).is_none());
    let tasks = job_tasks_info(br#"{"results":[{"job_task_id":"a"}],"total_count":3}"#).unwrap();
    assert_eq!((tasks.results.len(), tasks.total_count), (1, 3));
}

/// The JobTasksInfo built from the engine's rows equals the one the JSON text converts to, for
/// every projection (full, minimal, only), every task status, options or none, errors and
/// times or none.
#[test]
fn a_task_list_built_from_rows_equals_the_json_route() {
    use spaceone_query::calls::{self, Encoded};
    use spaceone_query::{JobTask, JobTaskStatus, Limits, Scope, TaskIndex};
    let mut index = TaskIndex::empty();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    for (i, status) in JobTaskStatus::ALL.into_iter().enumerate() {
        let mut options = serde_json::Map::new();
        if i % 2 == 0 {
            options.insert("retries".into(), json!(i));
            options.insert(
                "nested".into(),
                json!({"ratio": 0.25, "list": [1, "x", null]}),
            );
        }
        index.upsert(JobTask {
            namespace: "ns".into(),
            job_task_id: format!("job-{i}.t"),
            status,
            options,
            created_count: i64::try_from(i).unwrap(),
            error_code: (status == JobTaskStatus::Failure).then(|| "ERROR_X".into()),
            error_message: (status == JobTaskStatus::Failure).then(|| "it broke".into()),
            job_id: format!("job-{i}"),
            data_source_id: "ds-1".into(),
            domain_id: "d".into(),
            created_at: Some(at("2024-01-02T03:04:05.678Z")),
            started_at: (i > 0).then(|| at("2024-01-02T03:04:06Z")),
            finished_at: (i == 4).then_some(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        });
    }
    let queries = [
        json!({}),
        json!({"minimal": true}),
        json!({"only": ["job_task_id", "options", "started_at"]}),
        json!({"only": ["error_code"]}),
        json!({"page": {"start": 1, "limit": 2}, "sort": [{"key": "job_task_id", "desc": true}]}),
        json!({"filter": [{"k": "status", "v": "nothing", "o": "eq"}]}),
    ];
    let mut seen = std::collections::BTreeSet::new();
    let (scope, limits, now) = (Scope::all(), Limits::default(), chrono::Utc::now());
    for query in queries {
        let request = json!({"domain_id": "d", "query": query});
        let text = calls::list_as::<Encoded>(&index, &scope, &request, now, &limits).unwrap();
        let proto = calls::list_as::<Proto>(&index, &scope, &request, now, &limits).unwrap();
        let former = job_tasks_info(&text.0).unwrap();
        assert_eq!(proto.0, former.encode_to_vec(), "{query}: the same bytes");
        let decoded = job_pb::JobTasksInfo::decode(&proto.0[..]).unwrap();
        assert_eq!(decoded, former, "{query}");
        seen.extend(decoded.results.iter().map(|r| r.status));
    }
    // Every task status came out under JobTaskInfo's own number (not Job's).
    assert_eq!(seen, [1, 2, 3, 4, 6].into_iter().collect());
    // A get's JobTaskInfo, full and projected: the same bytes as the JSON answer's message.
    for i in 0..JobTaskStatus::ALL.len() {
        let id = format!("job-{i}.t");
        for only in [json!(null), json!(["options", "status"]), json!(["job_id"])] {
            let request = json!({"domain_id": "d", "job_task_id": id, "only": only});
            let json = calls::get(&index, &scope, &request).unwrap();
            let proto = calls::get_as::<Proto, _>(&index, &scope, &request).unwrap();
            let former = job_task_info(json).unwrap().encode_to_vec();
            assert_eq!(proto.0, former, "{id} {only}");
        }
    }
}
