//! Decoding of what a gRPC client sends: the protobuf request messages of the Job service
//! (prost), turned into the JSON requests the calls take (`grpc::convert`), then evaluated by the
//! engine over a small index, and the answers encoded back (JobInfo, JobsInfo, Struct). Never a
//! panic; a list's JobsInfo built from the engine's fields (what gRPC answers) equals the one its
//! JSON text converts to.
#![no_main]

use cost_analysis_operator::api::grpc::{convert, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use spaceone_query::{Index, Limits, Scope, calls as api};

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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let (index, scope, limits) = (index(), Scope::all(), Limits::default());
    let now = chrono::Utc::now();
    let domain = (selector & 0x80 != 0).then_some("domain-1");
    match selector % 4 {
        0 => {
            let Ok(m) = pb::job::JobQuery::decode(bytes) else { return };
            let request = convert::job_query(&m, domain);
            if let Ok(text) = api::list_as::<api::Encoded>(&index, &scope, &request, now, &limits) {
                let jobs = convert::jobs_info(&text.0).expect("the engine's JobsInfo converts");
                // What the gRPC list answers, built from the fields: the same message.
                let built = api::list_as::<convert::JobsProto>(&index, &scope, &request, now, &limits)
                    .expect("the same request is answered the same way");
                assert_eq!(built.0, jobs, "{request}");
                let _ = jobs.encode_to_vec();
            }
        }
        1 => {
            let Ok(m) = pb::job::JobStatQuery::decode(bytes) else { return };
            let request = convert::job_stat_query(&m, domain);
            if let Ok(serde_json::Value::Object(answer)) =
                api::stat(&index, &scope, &request, now, &limits)
            {
                let s = convert::to_struct(answer);
                let _ = convert::from_struct(&s);
                let _ = s.encode_to_vec();
            }
        }
        2 => {
            let Ok(m) = pb::job::GetJobRequest::decode(bytes) else { return };
            let request = convert::get_job_request(&m, domain);
            if let Ok(answer) = api::get(&index, &scope, &request) {
                let info = convert::job_info(answer).expect("the engine's JobInfo converts");
                let _ = info.encode_to_vec();
            }
        }
        _ => {
            let Ok(m) = pb::job::JobRequest::decode(bytes) else { return };
            let _ = convert::job_request(&m, domain);
        }
    }
});
