//! Decoding of what a gRPC client sends: the protobuf request messages of the Job and JobTask
//! services (prost), turned into the JSON requests the calls take (`grpc::convert`,
//! `grpc::convert_task`), then evaluated by the engine over a small index, and the answers encoded
//! back (JobInfo, JobsInfo, JobTaskInfo, JobTasksInfo, Struct). Never a panic; every answer's
//! bytes written from the engine's fields (`grpc::wire`, what gRPC answers) equal those of the
//! message its JSON form converts to (the former route). The first byte selects: bit 0x80 a domain in the metadata, bit 0x40 the JobTask
//! service, the rest modulo 4 the method.
#![no_main]

use cost_analysis_operator::api::grpc::{convert, convert_task, pb, wire::Proto};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use spaceone_query::{Index, JobTask, JobTaskStatus, Limits, Scope, TaskIndex, calls as api};

fn index() -> Index {
    let mut index = Index::new();
    let text = r#"[{"job_id": "job-aaa111", "status": "SUCCESS", "total_tasks": 2, "remained_tasks": 0,
        "data_source_id": "ds-1", "domain_id": "domain-1", "created_at": "2024-01-01T00:00:00.000Z"},
       {"job_id": "job-bbb222", "status": "IN_PROGRESS", "total_tasks": 3, "remained_tasks": 1,
        "data_source_id": "ds-2", "domain_id": "domain-1", "created_at": "2024-01-02T00:00:00.000Z"}]"#;
    for job in spaceone_query::offline::load_jobs(text).unwrap_or_default() {
        index.upsert(job);
    }
    index
}

fn task_index() -> TaskIndex {
    let mut index = TaskIndex::empty();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc());
    for (i, status) in JobTaskStatus::ALL.into_iter().enumerate() {
        let mut options = serde_json::Map::new();
        options.insert("retries".into(), serde_json::json!(i));
        index.upsert(JobTask {
            namespace: "ns".into(),
            job_task_id: format!("job-aaa111.t{i}"),
            status,
            options,
            created_count: 3,
            error_code: (status == JobTaskStatus::Failure).then(|| "ERROR_X".into()),
            error_message: (status == JobTaskStatus::Failure).then(|| "it broke".into()),
            job_id: "job-aaa111".into(),
            data_source_id: "ds-1".into(),
            domain_id: "domain-1".into(),
            created_at: at("2024-01-01T00:00:00.123Z"),
            started_at: at("2024-01-01T00:01:00Z"),
            finished_at: None,
        });
    }
    index
}

/// The JobTask service's requests (selector bit 0x40).
fn job_task(selector: u8, bytes: &[u8], domain: Option<&str>) {
    let (index, scope, limits) = (task_index(), Scope::all(), Limits::default());
    let now = chrono::Utc::now();
    match selector % 4 {
        0 | 3 => {
            let Ok(m) = pb::job::JobTaskQuery::decode(bytes) else { return };
            let request = convert::request(&m, domain);
            if let Ok(text) = api::list_as::<api::Encoded>(&index, &scope, &request, now, &limits) {
                let tasks = convert_task::job_tasks_info(&text.0)
                    .expect("the engine's JobTasksInfo converts");
                let built = api::list_as::<Proto>(&index, &scope, &request, now, &limits)
                    .expect("the same request is answered the same way");
                assert_eq!(built.0, tasks.encode_to_vec(), "{request}");
            }
        }
        1 => {
            let Ok(m) = pb::job::JobTaskStatQuery::decode(bytes) else { return };
            let request = convert::request(&m, domain);
            if let Ok(serde_json::Value::Object(answer)) =
                api::stat(&index, &scope, &request, now, &limits)
            {
                let built = Proto::of_struct(&answer);
                assert_eq!(built.0, convert::to_struct(answer).encode_to_vec());
            }
        }
        _ => {
            let Ok(m) = pb::job::GetJobTaskRequest::decode(bytes) else { return };
            let request = convert::request(&m, domain);
            if let Ok(answer) = api::get(&index, &scope, &request) {
                let info = convert_task::job_task_info(answer)
                    .expect("the engine's JobTaskInfo converts");
                let built = api::get_as::<Proto, _>(&index, &scope, &request)
                    .expect("the same request is answered the same way");
                assert_eq!(built.0, info.encode_to_vec(), "{request}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    if selector & 0x40 != 0 {
        return job_task(selector, bytes, (selector & 0x80 != 0).then_some("domain-1"));
    }
    let (index, scope, limits) = (index(), Scope::all(), Limits::default());
    let now = chrono::Utc::now();
    let domain = (selector & 0x80 != 0).then_some("domain-1");
    match selector % 4 {
        0 => {
            let Ok(m) = pb::job::JobQuery::decode(bytes) else { return };
            let request = convert::request(&m, domain);
            if let Ok(text) = api::list_as::<api::Encoded>(&index, &scope, &request, now, &limits) {
                let jobs = convert::jobs_info(&text.0).expect("the engine's JobsInfo converts");
                // What the gRPC list answers, built from the fields: the same message.
                let built = api::list_as::<Proto>(&index, &scope, &request, now, &limits)
                    .expect("the same request is answered the same way");
                assert_eq!(built.0, jobs.encode_to_vec(), "{request}");
            }
        }
        1 => {
            let Ok(m) = pb::job::JobStatQuery::decode(bytes) else { return };
            let request = convert::request(&m, domain);
            if let Ok(serde_json::Value::Object(answer)) =
                api::stat(&index, &scope, &request, now, &limits)
            {
                let built = Proto::of_struct(&answer);
                let s = convert::to_struct(answer);
                let _ = convert::from_struct(&s);
                assert_eq!(built.0, s.encode_to_vec());
            }
        }
        2 => {
            let Ok(m) = pb::job::GetJobRequest::decode(bytes) else { return };
            let request = convert::request(&m, domain);
            if let Ok(answer) = api::get(&index, &scope, &request) {
                let info = convert::job_info(answer).expect("the engine's JobInfo converts");
                let built = api::get_as::<Proto, _>(&index, &scope, &request)
                    .expect("the same request is answered the same way");
                assert_eq!(built.0, info.encode_to_vec(), "{request}");
            }
        }
        _ => {
            let Ok(m) = pb::job::JobRequest::decode(bytes) else { return };
            let _ = convert::request(&m, domain);
        }
    }
});
