//! SpaceONE's JobTask service on gRPC (issue 19) against the real control plane: its get, list
//! and stat answers equal REST's for the same requests (answers and errors, on the plaintext port
//! and on the HTTPS port by content type), tonic's own refusals get SpaceONE's shape on JobTask
//! paths too, the calls are counted under REST's method labels, and spacectl (both lines of
//! hack/spacectl.sh) lists, gets and stats the tasks of a job.

#![allow(clippy::unwrap_used, clippy::panic)]

mod support;

#[path = "support/grpc.rs"]
mod grpc_support;

use cost_analysis_operator::api::grpc::{TASK_SERVICE, pb};
use grpc_support::{
    Spacectl, WAIT, message_to_dict, normalize, over_tls, parse_dict, plaintext, rest, shim,
    with_token, without_defaults,
};
use pb::job::job_task_client::JobTaskClient;
use prost::Message;
use serde_json::{Value, json};
use support::{cluster, eventually};
use tonic::transport::Channel;

struct World {
    ns: String,
    /// `get` on domain 1.
    reader: String,
    /// `get` on domains 1 and 2.
    both: String,
}

fn d(w: &World, n: u8) -> String {
    format!("{}-d{n}", w.ns)
}

/// A namespace with the jobs of tests/support/shim.rs `world` (job-a1 with the task `t` and
/// job-a2 without tasks in domain 1; job-b1, here with the task `t`, in domain 2) and readers;
/// returns once the controller's task objects are in the shim's task catalog.
async fn world(prefix: &str) -> World {
    let c = cluster();
    shim();
    let ns = c.namespace(prefix);
    let (d1, d2) = (format!("{ns}-d1"), format!("{ns}-d2"));
    let yaml = support::shim::job("job-a1", &d1, &["t"])
        + &support::shim::job("job-a2", &d1, &[])
        + &support::shim::job("job-b1", &d2, &["t"]);
    let out = c.apply_yaml(&ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = World {
        reader: c.domain_account(&ns, "reader", &[&d1], "get"),
        both: c.domain_account(&ns, "both", &[&d1, &d2], "get"),
        ns,
    };
    let client = JobTaskClient::new(plaintext().await);
    for (domain, task) in [(d1, "job-a1.t"), (d2, "job-b1.t")] {
        let token = w.both.clone();
        eventually(WAIT, "the task in the catalog", || {
            let (mut client, token, domain) = (client.clone(), token.clone(), domain.clone());
            async move {
                let r = client
                    .list(with_token(
                        pb::job::JobTaskQuery {
                            domain_id: domain,
                            ..Default::default()
                        },
                        Some(&token),
                    ))
                    .await
                    .ok()?;
                let ids: Vec<_> = r.get_ref().results.iter().map(|t| &t.job_task_id).collect();
                (ids == [task]).then_some(())
            }
        })
        .await;
    }
    w
}

/// The gRPC status code SpaceONE's table gives a REST status.
fn grpc_code(status: u16) -> tonic::Code {
    match status {
        400 | 413 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 => tonic::Code::AlreadyExists,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

/// One JobTask call over gRPC from the JSON `request` (as `ParseDict` makes the message): the
/// answer as `MessageToDict` prints it, or the status.
async fn grpc_call(
    channel: Channel,
    verb: &str,
    request: &Value,
    token: &str,
) -> Result<Value, tonic::Status> {
    let mut c = JobTaskClient::new(channel);
    let input = match verb {
        "get" => "GetJobTaskRequest",
        "list" => "JobTaskQuery",
        _ => "JobTaskStatQuery",
    };
    let bytes = parse_dict(&format!("spaceone.api.cost_analysis.v1.{input}"), request)
        .unwrap_or_else(|| panic!("{request} is no {input}"));
    let token = Some(token);
    match verb {
        "get" => c
            .get(with_token(
                pb::job::GetJobTaskRequest::decode(&bytes[..]).unwrap(),
                token,
            ))
            .await
            .map(|r| {
                let b = r.into_inner().encode_to_vec();
                message_to_dict("spaceone.api.cost_analysis.v1.JobTaskInfo", &b)
            }),
        "list" => c
            .list(with_token(
                pb::job::JobTaskQuery::decode(&bytes[..]).unwrap(),
                token,
            ))
            .await
            .map(|r| {
                let b = r.into_inner().encode_to_vec();
                message_to_dict("spaceone.api.cost_analysis.v1.JobTasksInfo", &b)
            }),
        _ => c
            .stat(with_token(
                pb::job::JobTaskStatQuery::decode(&bytes[..]).unwrap(),
                token,
            ))
            .await
            .map(|r| {
                let b = r.into_inner().encode_to_vec();
                message_to_dict("google.protobuf.Struct", &b)
            }),
    }
}

/// gRPC JobTask answers equal REST's (`POST /cost-analysis/v1/job-task/{verb}`) for the same
/// requests, answers and errors alike (an unknown task, a missing domain_id, another domain),
/// on both ports; and what they hold is the task the controller made for job-a1.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_jobtask_answers_equal_rest_answers() {
    let w = world("grpc-task").await;
    let (d1, d2) = (d(&w, 1), d(&w, 2));
    let group = json!({"aggregate": [{"group": {
        "keys": [{"key": "status", "name": "status"}, {"key": "job_id", "name": "job"}],
        "fields": [{"name": "n", "operator": "count"}]}}]});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("list", json!({"domain_id": d1}), "all of domain 1"),
        (
            "list",
            json!({"domain_id": d1, "job_id": "job-a1"}),
            "of job-a1",
        ),
        ("list", json!({"domain_id": d1, "job_id": "job-a2"}), "none"),
        (
            "list",
            json!({"domain_id": d1, "status": "PENDING"}),
            "PENDING",
        ),
        (
            "list",
            json!({"domain_id": d1, "status": "CANCELED"}),
            "CANCELED",
        ),
        (
            "list",
            json!({"domain_id": d1, "job_task_id": "job-a1.t"}),
            "by id",
        ),
        (
            "list",
            json!({"domain_id": d1, "query": {"minimal": true}}),
            "minimal",
        ),
        (
            "list",
            json!({"domain_id": d1, "query": {"only": ["job_task_id", "options", "created_at"]}}),
            "only",
        ),
        (
            "list",
            json!({"domain_id": d1, "query": {"keyword": "a1.t"}}),
            "keyword",
        ),
        (
            "list",
            json!({"domain_id": d1, "query": {"filter": [{"k": "status", "v": ["PENDING", "FAILURE"], "o": "in"}],
                   "sort": {"key": "created_at", "desc": true}, "page": {"start": 1, "limit": 1}}}),
            "filter, sort, page",
        ),
        (
            "list",
            json!({"domain_id": d1, "query": {"count_only": true}}),
            "count_only",
        ),
        ("list", json!({"domain_id": d2}), "another domain"),
        ("list", json!({}), "no domain_id"),
        (
            "list",
            json!({"domain_id": d1, "query": {"filter": [{"k": "no_such_field", "v": 1, "o": "eq"}]}}),
            "unknown field",
        ),
        (
            "get",
            json!({"job_task_id": "job-a1.t", "domain_id": d1}),
            "get",
        ),
        (
            "get",
            json!({"job_task_id": "job-a1.t", "domain_id": d1, "only": ["status", "job_id"]}),
            "get only",
        ),
        (
            "get",
            json!({"job_task_id": "no-such-task", "domain_id": d1}),
            "unknown task",
        ),
        (
            "get",
            json!({"job_task_id": "job-a1.t"}),
            "get without domain_id",
        ),
        (
            "get",
            json!({"job_task_id": "job-b1.t", "domain_id": d2}),
            "get in another domain",
        ),
        (
            "get",
            json!({"job_task_id": "job-b1.t", "domain_id": d1}),
            "another domain's task",
        ),
        (
            "stat",
            json!({"domain_id": d1, "query": group}),
            "stat group",
        ),
        (
            "stat",
            json!({"domain_id": d1, "query": {"distinct": "job_id"}}),
            "stat distinct",
        ),
        ("stat", json!({"domain_id": d1}), "stat without query"),
        (
            "stat",
            json!({"domain_id": d2, "query": group}),
            "stat another domain",
        ),
    ];
    let mut failures = Vec::new();
    for channel in [plaintext().await, over_tls().await] {
        for (verb, request, what) in &cases {
            let (status, rest_answer) = rest(
                &format!("/cost-analysis/v1/job-task/{verb}"),
                &w.reader,
                request,
            );
            let grpc = grpc_call(channel.clone(), verb, request, &w.reader).await;
            let same = match (&grpc, status) {
                (Ok(answer), 200) if *verb == "stat" => {
                    normalize(answer) == normalize(&rest_answer)
                }
                (Ok(answer), 200) => {
                    normalize(answer) == normalize(&without_defaults(&rest_answer))
                }
                (Err(e), s) if s != 200 => {
                    let detail = &rest_answer["detail"];
                    // REST's message keeps SpaceONE's leading space; gRPC's details are
                    // "CODE: message" split at the first colon.
                    let want = format!(
                        "{}:{}",
                        detail["code"].as_str().unwrap_or(""),
                        detail["message"].as_str().unwrap_or("")
                    );
                    e.code() == grpc_code(s) && e.message() == want
                }
                _ => false,
            };
            if !same {
                failures.push(format!(
                    "{what}: {request}\n  REST {status} {rest_answer}\n  gRPC {grpc:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // What the answers hold, on gRPC: the controller's task of job-a1, PENDING (JobTaskInfo's
    // own number, 1), its options a Struct, created_at to the millisecond.
    let channel = plaintext().await;
    let request = json!({"domain_id": d1, "job_id": "job-a1"});
    let listed = grpc_call(channel.clone(), "list", &request, &w.reader)
        .await
        .unwrap();
    let info = &listed["results"][0];
    assert_eq!(listed["total_count"], 1, "{listed}");
    assert_eq!(info["job_task_id"], "job-a1.t");
    assert_eq!(info["status"], "PENDING");
    assert_eq!(
        (&info["job_id"], &info["domain_id"]),
        (&json!("job-a1"), &json!(d1))
    );
    assert_eq!(info["options"], json!({}));
    let created = info["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2024-01-01T00:00:00.000Z".len(), "{created}");
    let mut c = JobTaskClient::new(channel.clone());
    let got = c
        .get(with_token(
            pb::job::GetJobTaskRequest {
                job_task_id: "job-a1.t".into(),
                domain_id: d1.clone(),
                only: Vec::new(),
            },
            Some(&w.reader),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.status, pb::job::job_task_info::Status::Pending as i32);
    let errors = [
        (
            json!({"job_task_id": "no-such-task", "domain_id": d1}),
            // SpaceONE's ERROR_NOT_FOUND is an ERROR_INVALID_ARGUMENT (REST 400).
            tonic::Code::InvalidArgument,
            "ERROR_NOT_FOUND: ",
        ),
        (
            json!({"job_task_id": "job-a1.t"}),
            tonic::Code::InvalidArgument,
            "ERROR_REQUIRED_PARAMETER: ",
        ),
        (
            json!({"job_task_id": "job-b1.t", "domain_id": d2}),
            tonic::Code::PermissionDenied,
            "ERROR_PERMISSION_DENIED: ",
        ),
    ];
    for (request, code, prefix) in errors {
        let e = grpc_call(channel.clone(), "get", &request, &w.reader)
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{request}: {e:?}");
        assert!(e.message().starts_with(prefix), "{request}: {e:?}");
    }
    // The same token of both domains sees domain 2's task (the denial above is the reader's).
    let other = grpc_call(
        channel.clone(),
        "get",
        &json!({"job_task_id": "job-b1.t", "domain_id": d2}),
        &w.both,
    )
    .await
    .unwrap();
    assert_eq!(other["job_id"], "job-b1", "{other}");

    // Counted under REST's method labels, protocol grpc.
    let metrics = shim().op.metrics();
    for method in ["jobtask.get", "jobtask.list", "jobtask.stat"] {
        let series = format!("protocol=\"grpc\",method=\"{method}\"");
        assert!(metrics.contains(&series), "no {series} in the metrics");
    }
    assert!(
        metrics.contains("protocol=\"grpc\",method=\"jobtask.get\",code=\"ERROR_NOT_FOUND\""),
        "the unknown task's code is not counted"
    );
}

/// What tonic refuses before a JobTask method runs gets SpaceONE's shape, as for Job: bytes that
/// are no JobTaskQuery, and a method the JobTask service does not have (it has no cancel).
#[tokio::test(flavor = "multi_thread")]
async fn undecodable_jobtask_messages_and_unknown_methods_get_spaceone_errors() {
    let w = world("grpc-task-raw").await;
    for channel in [plaintext().await, over_tls().await] {
        let path = |method: &str| format!("/{TASK_SERVICE}/{method}");
        // Field 1 (query) as a varint: the wrong wire type for a message.
        let e = grpc_support::raw_call_path(channel.clone(), &path("list"), vec![8, 1], &w.reader)
            .await;
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(
            e.message().starts_with("ERROR_INVALID_PARAMETER: "),
            "{e:?}"
        );
        let e =
            grpc_support::raw_call_path(channel.clone(), &path("cancel"), Vec::new(), &w.reader)
                .await;
        assert_eq!(
            (e.code(), e.message()),
            (
                tonic::Code::Unimplemented,
                "ERROR_NOT_IMPLEMENTED: Not implemented."
            ),
            "{e:?}"
        );
    }
}

/// spacectl itself, both lines of hack/spacectl.sh (2.0.10, and 1.8.11 with spaceone-api 1.8.7,
/// which imports job_task_pb2 for the listed JobTask service): `list cost_analysis.JobTask` with
/// `-p job_id=...` shows the job's task, `get` shows it, `stat` counts it; another domain is
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn spacectl_lists_gets_and_stats_job_tasks() {
    let w = world("grpc-task-ctl").await;
    let (d1, d2) = (d(&w, 1), d(&w, 2));
    let (domain, other) = (format!("domain_id={d1}"), format!("domain_id={d2}"));
    for line in ["2", "1"] {
        let ctl = Spacectl::new(line, "task");
        ctl.configure(&w.reader);
        let listed = ctl.ok(&[
            "list",
            "cost_analysis.JobTask",
            "-p",
            &domain,
            "-p",
            "job_id=job-a1",
            "-o",
            "json",
        ]);
        assert!(
            listed.contains("\"job-a1.t\"") && listed.contains("PENDING"),
            "spacectl {line} list: {listed}"
        );
        let table = ctl.ok(&[
            "list",
            "cost_analysis.JobTask",
            "-p",
            &domain,
            "-p",
            "job_id=job-a1",
            "-c",
            "job_task_id,status,job_id",
        ]);
        assert!(
            table.contains("job-a1.t") && table.contains("PENDING"),
            "spacectl {line} table: {table}"
        );
        let none = ctl.ok(&[
            "list",
            "cost_analysis.JobTask",
            "-p",
            &domain,
            "-p",
            "job_id=job-a2",
            "-o",
            "json",
        ]);
        assert!(!none.contains("job-a1.t"), "spacectl {line} job-a2: {none}");
        let got = ctl.ok(&[
            "get",
            "cost_analysis.JobTask",
            "-p",
            "job_task_id=job-a1.t",
            "-p",
            &domain,
            "-o",
            "json",
        ]);
        assert!(
            got.contains("\"job-a1.t\"") && got.contains("\"job_id\": \"job-a1\""),
            "spacectl {line} get: {got}"
        );
        let stat_query = json!({"domain_id": d1, "query": {"aggregate": [
            {"group": {"keys": [{"key": "status", "name": "status"}],
                       "fields": [{"name": "n", "operator": "count"}]}}]}});
        let stat = ctl.ok(&[
            "stat",
            "cost_analysis.JobTask",
            "-j",
            &stat_query.to_string(),
            "-o",
            "json",
        ]);
        assert!(
            stat.contains("PENDING") && stat.contains("\"n\": 1"),
            "spacectl {line} stat: {stat}"
        );
        // Another domain is refused (spacectl prints the error and still exits 0).
        let (_, text) = ctl.run(&["list", "cost_analysis.JobTask", "-p", &other]);
        assert!(
            text.contains("ERROR: Permission denied.") && !text.contains("job-b1.t"),
            "spacectl {line} foreign domain: {text}"
        );
    }
}
