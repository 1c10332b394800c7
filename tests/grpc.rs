//! The gRPC Job service against the real control plane: generated-client round trips for every
//! method and error class (on the plaintext port and on the HTTPS port by content type), gRPC
//! answers equal to REST answers over the vectors of docs/spaceone-job-api.md, reflection
//! (v1alpha and v1, listing Job and JobTask) and health, and spacectl itself (PyPI, pinned)
//! listing, getting, stating and canceling jobs. The JobTask service: tests/grpc_jobtask.rs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

mod support;

#[path = "support/grpc.rs"]
mod grpc_support;

use std::process::Command;

use cost_analysis_operator::api::grpc::pb;
use grpc_support::{
    RawCodec, WAIT, message_to_dict, normalize, over_tls, parse_dict, plaintext, rest, shim,
    with_token, without_defaults,
};
use pb::job::job_client::JobClient;
use prost::Message;
use serde_json::{Value, json};
use support::{cluster, eventually};
use tonic::transport::Channel;

struct World {
    ns: String,
    reader: String,
    canceler: String,
    nobody: String,
    both: String,
}

fn job(name: &str, domain: &str, tasks: &[&str]) -> String {
    let items: String = tasks.iter().map(|t| format!("\n  - id: {t}")).collect();
    format!(
        "---\napiVersion: cost-analysis.spaceone.dev/v1\nkind: CostAnalysisJob\nmetadata:\n  name: {name}\nspec:\n  domainId: {domain}\n  dataSourceId: ds-1\n  tasks:{items}\n"
    )
}

/// A namespace with jobs in two domains (names of the vectors' fixture) and ServiceAccounts:
/// reader (get d1), canceler (get + cancel d1), both (get d1 and d2), nobody.
async fn world(prefix: &str) -> World {
    let c = cluster();
    shim();
    let ns = c.namespace(prefix);
    let (d1, d2) = (format!("{ns}-d1"), format!("{ns}-d2"));
    let mut yaml = String::new();
    for (name, domain, tasks) in [
        ("job-aaa111", &d1, &["t1", "t2"][..]),
        ("job-bbb222", &d1, &["t1"][..]),
        ("job-ccc333", &d1, &["t1"][..]),
        ("job-ddd444", &d1, &["t1", "t2", "t3"][..]),
        ("job-eee555", &d1, &["t1"][..]),
        ("job-fff666", &d1, &["t1", "t2"][..]),
        ("job-ggg777", &d2, &["t1"][..]),
    ] {
        yaml += &job(name, domain, tasks);
    }
    let out = c.apply_yaml(&ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = World {
        reader: c.domain_account(&ns, "reader", &[&d1], "get"),
        canceler: c.domain_account(&ns, "canceler", &[&d1], "get, cancel"),
        nobody: c.account(&ns, "nobody"),
        both: c.domain_account(&ns, "both", &[&d1, &d2], "get"),
        ns,
    };
    // The index holds the jobs, and every job has been given its first status by the controller
    // (IN_PROGRESS), once the list says so.
    let client = JobClient::new(plaintext().await);
    let (token, domain) = (w.reader.clone(), d(&w, 1));
    eventually(WAIT, "the index to hold six IN_PROGRESS jobs", || {
        let (mut client, token, domain) = (client.clone(), token.clone(), domain.clone());
        async move {
            let r = client
                .list(with_token(
                    pb::job::JobQuery {
                        domain_id: domain,
                        status: pb::job::job_query::Status::InProgress as i32,
                        ..Default::default()
                    },
                    Some(&token),
                ))
                .await
                .ok()?;
            (r.get_ref().total_count == 6).then_some(())
        }
    })
    .await;
    w
}

fn d(w: &World, n: u8) -> String {
    format!("{}-d{n}", w.ns)
}

fn details(s: &tonic::Status) -> (tonic::Code, String) {
    (s.code(), s.message().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_method_round_trips_and_every_error_class_is_spaceones() {
    let w = world("grpc-rt").await;
    let (d1, d2) = (d(&w, 1), d(&w, 2));
    for channel in [plaintext().await, over_tls().await] {
        let mut c = JobClient::new(channel);

        // list, with a query: filter, sort, page, only.
        let q = pb::core::Query {
            filter: vec![pb::core::Filter {
                key_alias: Some(pb::core::filter::KeyAlias::K("job_id".into())),
                value_alias: Some(pb::core::filter::ValueAlias::V(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("job-".into())),
                })),
                operator_alias: Some(pb::core::filter::OperatorAlias::O("contain".into())),
            }],
            sort: Some(pb::core::Sort {
                key: "job_id".into(),
                ..Default::default()
            }),
            page: Some(pb::core::Page { start: 1, limit: 2 }),
            ..Default::default()
        };
        let r = c
            .list(with_token(
                pb::job::JobQuery {
                    query: Some(q),
                    domain_id: d1.clone(),
                    ..Default::default()
                },
                Some(&w.reader),
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(r.total_count, 6);
        let ids: Vec<_> = r.results.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ids, ["job-aaa111", "job-bbb222"]);
        assert_eq!(r.results[0].domain_id, d1);
        assert_eq!(r.results[0].total_tasks, 2);
        assert_eq!(
            r.results[0].status,
            pb::job::job_info::Status::InProgress as i32
        );
        assert!(!r.results[0].created_at.is_empty());

        // get, with `only`, the domain from x_domain_id metadata.
        let mut req = with_token(
            pb::job::GetJobRequest {
                job_id: "job-ddd444".into(),
                only: vec!["job_id".into(), "total_tasks".into()],
                ..Default::default()
            },
            Some(&w.reader),
        );
        req.metadata_mut()
            .insert("x_domain_id", d1.parse().unwrap());
        let j = c.get(req).await.expect("get").into_inner();
        assert_eq!(j.job_id, "job-ddd444");
        assert_eq!(j.total_tasks, 3);
        assert_eq!(j.domain_id, "", "only job_id and total_tasks");

        // stat: a group with a count, as a Struct.
        let agg = |a| pb::core::StatisticsAggregate {
            aggregate_alias: Some(a),
        };
        use pb::core::statistics_aggregate::AggregateAlias as A;
        let sq = pb::core::StatisticsQuery {
            aggregate: vec![
                agg(A::Group(pb::core::AggregateGroup {
                    keys: vec![pb::core::AggregateGroupKey {
                        key_alias: Some(pb::core::aggregate_group_key::KeyAlias::Key(
                            "status".into(),
                        )),
                        name_alias: Some(pb::core::aggregate_group_key::NameAlias::Name(
                            "status".into(),
                        )),
                        ..Default::default()
                    }],
                    fields: vec![pb::core::AggregateGroupField {
                        name_alias: Some(pb::core::aggregate_group_field::NameAlias::Name(
                            "n".into(),
                        )),
                        operator_alias: Some(
                            pb::core::aggregate_group_field::OperatorAlias::Operator(
                                "count".into(),
                            ),
                        ),
                        ..Default::default()
                    }],
                })),
                agg(A::Limit(5)),
            ],
            ..Default::default()
        };
        let s = c
            .stat(with_token(
                pb::job::JobStatQuery {
                    query: Some(sq),
                    domain_id: d1.clone(),
                },
                Some(&w.reader),
            ))
            .await
            .expect("stat")
            .into_inner();
        let s = cost_analysis_operator::api::grpc::convert::from_struct(&s);
        assert_eq!(
            s,
            json!({"results": [{"status": "IN_PROGRESS", "n": 6}]}),
            "{s}"
        );

        // Error classes. Unauthenticated: no token, a bad token.
        let list_d1 = || pb::job::JobQuery {
            domain_id: d1.clone(),
            ..Default::default()
        };
        for token in [None, Some("not-a-token")] {
            let e = c.list(with_token(list_d1(), token)).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
            assert!(
                e.message().starts_with("ERROR_AUTHENTICATE_FAILURE: "),
                "{e:?}"
            );
        }
        // Permission denied: a foreign domain, or no RBAC at all.
        for (token, domain) in [(&w.reader, &d2), (&w.nobody, &d1)] {
            let e = c
                .list(with_token(
                    pb::job::JobQuery {
                        domain_id: domain.clone(),
                        ..Default::default()
                    },
                    Some(token),
                ))
                .await
                .unwrap_err();
            assert_eq!(
                details(&e),
                (
                    tonic::Code::PermissionDenied,
                    "ERROR_PERMISSION_DENIED: Permission denied.".into()
                )
            );
        }
        // Invalid argument: a required parameter, a bad operator, the seed's NOT_FOUND.
        let e = c
            .list(with_token(pb::job::JobQuery::default(), Some(&w.reader)))
            .await
            .unwrap_err();
        assert_eq!(
            details(&e),
            (
                tonic::Code::InvalidArgument,
                "ERROR_REQUIRED_PARAMETER: Required parameter. (key = domain_id)".into()
            )
        );
        let e = c
            .get(with_token(
                pb::job::GetJobRequest {
                    job_id: "job-zzz".into(),
                    domain_id: d1.clone(),
                    ..Default::default()
                },
                Some(&w.reader),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with("ERROR_NOT_FOUND: "), "{e:?}");
        // Internal: canceling a job that is no longer running (ERROR_JOB_STATE).
        // Permission: a reader may not cancel.
        let e = c
            .cancel(with_token(
                pb::job::JobRequest {
                    job_id: "job-aaa111".into(),
                    domain_id: d1.clone(),
                },
                Some(&w.reader),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        // Too large a message.
        let e = c
            .list(with_token(
                pb::job::JobQuery {
                    domain_id: d1.clone(),
                    job_id: "x".repeat(2 << 20),
                    ..Default::default()
                },
                Some(&w.reader),
            ))
            .await
            .unwrap_err();
        assert_eq!(
            details(&e),
            (
                tonic::Code::InvalidArgument,
                "ERROR_INVALID_PARAMETER: Parameter is invalid. (key = body, reason = larger than 1048576 bytes)".into()
            )
        );
    }

    // cancel (the one write), then ERROR_JOB_STATE on the second one.
    let mut c = JobClient::new(plaintext().await);
    let cancel = || {
        with_token(
            pb::job::JobRequest {
                job_id: "job-bbb222".into(),
                domain_id: d1.clone(),
            },
            Some(&w.canceler),
        )
    };
    let j = c.cancel(cancel()).await.expect("cancel").into_inner();
    assert_eq!(j.status, pb::job::job_info::Status::Canceled as i32);
    assert_eq!(j.job_id, "job-bbb222");
    let e = c.cancel(cancel()).await.unwrap_err();
    assert_eq!(
        details(&e),
        (
            tonic::Code::Internal,
            "ERROR_JOB_STATE: Only running jobs can be canceled. (job_state = CANCELED)".into()
        )
    );
}

/// Sends `bytes` as the message of `method` (tonic's client, a codec that writes the bytes as
/// they are), with the reader's token; the answer's status.
async fn raw_call(channel: Channel, method: &str, bytes: Vec<u8>, token: &str) -> tonic::Status {
    let path = format!("/{}/{method}", cost_analysis_operator::api::grpc::SERVICE);
    grpc_support::raw_call_path(channel, &path, bytes, token).await
}

/// What tonic itself refuses before a Job method runs still gets SpaceONE's shape: bytes that
/// are no protobuf message, a truncated message, a method the service does not have.
#[tokio::test(flavor = "multi_thread")]
async fn undecodable_messages_and_unknown_methods_get_spaceone_errors() {
    let w = world("grpc-raw").await;
    for channel in [plaintext().await, over_tls().await] {
        // An unfinished varint where a field tag belongs; field 1 as length-delimited, claiming
        // 127 bytes where one follows.
        for bytes in [vec![0xff, 0xff, 0xff], vec![0x0a, 0x7f, b'x']] {
            let e = raw_call(channel.clone(), "list", bytes.clone(), &w.reader).await;
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bytes:?}: {e:?}");
            assert!(
                e.message().starts_with(
                    "ERROR_INVALID_PARAMETER: Parameter is invalid. (key = body, reason = not a valid protobuf message: "
                ),
                "{e:?}"
            );
        }
        let e = raw_call(channel.clone(), "delete", Vec::new(), &w.reader).await;
        assert_eq!(
            details(&e),
            (
                tonic::Code::Unimplemented,
                "ERROR_NOT_IMPLEMENTED: Not implemented.".into()
            )
        );
        // A well-formed message through the same path is answered as usual.
        let request = pb::job::JobQuery {
            domain_id: d(&w, 1),
            job_id: "job-none".into(),
            ..Default::default()
        };
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = format!("/{}/list", cost_analysis_operator::api::grpc::SERVICE);
        let answer = grpc
            .unary(
                with_token(request.encode_to_vec(), Some(&w.reader)),
                axum::http::uri::PathAndQuery::try_from(path).unwrap(),
                RawCodec,
            )
            .await
            .expect("a valid message is answered");
        let jobs = pb::job::JobsInfo::decode(&answer.into_inner()[..]).unwrap();
        assert_eq!(jobs.total_count, 0);
    }
}

/// gRPC answers equal REST answers for the same requests: every list, get and stat request of
/// the vectors of docs/spaceone-job-api.md section 5 (crates/spaceone-query/tests/fixtures/
/// vectors.json), over that fixture's job names in two domains of this cluster. Errors compare as (gRPC code of the REST status, code,
/// message).
#[tokio::test(flavor = "multi_thread")]
async fn grpc_answers_equal_rest_answers_over_the_spec_vectors() {
    let w = world("grpc-vec").await;
    let (d1, d2) = (d(&w, 1), d(&w, 2));
    let vectors: Vec<Value> = serde_json::from_str(include_str!(
        "../crates/spaceone-query/tests/fixtures/vectors.json"
    ))
    .unwrap();
    let mut client = JobClient::new(plaintext().await);
    let (mut compared, mut rest_only, mut failures) = (0, 0, Vec::new());
    for v in &vectors {
        let (Some(verb), Some(request)) = (v["verb"].as_str(), v.get("request")) else {
            continue;
        };
        let id = v["id"].as_str().unwrap_or("?");
        let text = request
            .to_string()
            .replace("\"domain-1\"", &format!("\"{d1}\""))
            .replace("\"domain-2\"", &format!("\"{d2}\""));
        let request: Value = serde_json::from_str(&text).unwrap();
        let (input, output) = match verb {
            "list" => ("JobQuery", "spaceone.api.cost_analysis.v1.JobsInfo"),
            "get" => ("GetJobRequest", "spaceone.api.cost_analysis.v1.JobInfo"),
            _ => ("JobStatQuery", "google.protobuf.Struct"),
        };
        let Some(bytes) = parse_dict(&format!("spaceone.api.cost_analysis.v1.{input}"), &request)
        else {
            rest_only += 1;
            continue;
        };
        let (status, rest_answer) =
            rest(&format!("/cost-analysis/v1/job/{verb}"), &w.both, &request);
        let token = Some(w.both.as_str());
        let grpc: Result<Vec<u8>, tonic::Status> = match verb {
            "list" => client
                .list(with_token(
                    pb::job::JobQuery::decode(&bytes[..]).unwrap(),
                    token,
                ))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
            "get" => client
                .get(with_token(
                    pb::job::GetJobRequest::decode(&bytes[..]).unwrap(),
                    token,
                ))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
            _ => client
                .stat(with_token(
                    pb::job::JobStatQuery::decode(&bytes[..]).unwrap(),
                    token,
                ))
                .await
                .map(|r| r.into_inner().encode_to_vec()),
        };
        compared += 1;
        let same = match (&grpc, status) {
            (Ok(bytes), 200) if verb == "stat" => {
                normalize(&message_to_dict(output, bytes)) == normalize(&rest_answer)
            }
            (Ok(bytes), 200) => {
                normalize(&message_to_dict(output, bytes))
                    == normalize(&without_defaults(&rest_answer))
            }
            (Err(e), s) if s != 200 => {
                let code = match s {
                    400 | 413 => tonic::Code::InvalidArgument,
                    401 => tonic::Code::Unauthenticated,
                    403 => tonic::Code::PermissionDenied,
                    404 => tonic::Code::NotFound,
                    409 => tonic::Code::AlreadyExists,
                    503 => tonic::Code::Unavailable,
                    _ => tonic::Code::Internal,
                };
                let detail = &rest_answer["detail"];
                let want = format!(
                    "{}:{}",
                    detail["code"].as_str().unwrap_or(""),
                    detail["message"].as_str().unwrap_or("")
                );
                e.code() == code && e.message() == want
            }
            _ => false,
        };
        if !same {
            failures.push(format!(
                "{id}: REST {status} {rest_answer}\n  gRPC {:?}",
                grpc.as_ref().map(|b| message_to_dict(output, b))
            ));
        }
    }
    eprintln!(
        "{compared} vectors compared over gRPC and REST; {rest_only} only expressible in REST JSON"
    );
    assert!(compared > 100, "too few vectors compared: {compared}");
    assert!(
        failures.is_empty(),
        "{} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_only_resolvable_services_and_health_is_serving() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    for channel in [plaintext().await, over_tls().await] {
        let mut r = ServerReflectionClient::new(channel.clone());
        let ask = |m: MessageRequest| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        };
        let requests = vec![ask(MessageRequest::ListServices(String::new()))];
        let mut answers = r
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect("reflection")
            .into_inner();
        let answer = answers
            .message()
            .await
            .unwrap()
            .expect("a ListServices answer");
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("not a ListServices answer");
        };
        let mut names: Vec<_> = list.service.iter().map(|s| s.name.clone()).collect();
        names.sort();
        // Only the application services are listed (spacectl 1.x imports a stub per listed name;
        // spaceone-api 1.8.7 ships job_pb2 and job_task_pb2).
        assert_eq!(
            names,
            [
                "spaceone.api.cost_analysis.v1.Job",
                "spaceone.api.cost_analysis.v1.JobTask"
            ]
        );
        names.push("grpc.health.v1.Health".into());
        // Every listed name resolves; each service's own file comes first, its imports are
        // served.
        for name in &names {
            let mut answers = r
                .server_reflection_info(tokio_stream::iter(vec![ask(
                    MessageRequest::FileContainingSymbol(name.clone()),
                )]))
                .await
                .expect("reflection")
                .into_inner();
            let answer = answers.message().await.unwrap().unwrap();
            let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response
            else {
                panic!("{name} does not resolve: {answer:?}");
            };
            let first =
                prost_types::FileDescriptorProto::decode(&files.file_descriptor_proto[0][..])
                    .unwrap();
            let file = match name.as_str() {
                "spaceone.api.cost_analysis.v1.Job" => Some("job.proto"),
                "spaceone.api.cost_analysis.v1.JobTask" => Some("job_task.proto"),
                _ => None,
            };
            if let Some(file) = file {
                assert_eq!(
                    first.name(),
                    format!("spaceone/api/cost_analysis/v1/{file}")
                );
                for dep in &first.dependency {
                    let mut answers = r
                        .server_reflection_info(tokio_stream::iter(vec![ask(
                            MessageRequest::FileByFilename(dep.clone()),
                        )]))
                        .await
                        .unwrap()
                        .into_inner();
                    let answer = answers.message().await.unwrap().unwrap();
                    assert!(
                        matches!(
                            answer.message_response,
                            Some(MessageResponse::FileDescriptorResponse(_))
                        ),
                        "{dep} not served"
                    );
                }
            }
        }
        // v1 answers too.
        let mut r1 =
            tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
                channel.clone(),
            );
        let mut answers = r1
            .server_reflection_info(tokio_stream::iter(vec![
                tonic_reflection::pb::v1::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(
                        tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                            String::new(),
                        ),
                    ),
                },
            ]))
            .await
            .expect("reflection v1")
            .into_inner();
        assert!(answers.message().await.unwrap().is_some());

        let h = tonic_health::pb::health_client::HealthClient::new(channel);
        for service in [
            "",
            "spaceone.api.cost_analysis.v1.Job",
            "spaceone.api.cost_analysis.v1.JobTask",
        ] {
            eventually(WAIT, "health SERVING", || {
                let mut h = h.clone();
                async move {
                    let r = h
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: service.into(),
                        })
                        .await
                        .ok()?;
                    (r.get_ref().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                        .then_some(())
                }
            })
            .await;
        }
    }
}

/// spacectl itself, from PyPI, both lines (hack/spacectl.sh: "2" is 2.0.10 with the pins of
/// docs/spaceone-grpc.md, "1" is 1.8.11 with spaceone-core 1.8.11 and spaceone-api 1.8.7,
/// the seed's line; the virtualenvs are cached under target/), with HOME in a temporary folder
/// and the plaintext gRPC port as its endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn spacectl_lists_gets_stats_and_cancels() {
    let w = world("grpc-ctl").await;
    for (line, to_cancel) in [("2", "job-eee555"), ("1", "job-fff666")] {
        spacectl_line(&w, line, to_cancel);
    }
}

fn spacectl_line(w: &World, line: &str, to_cancel: &str) {
    let (d1, d2) = (d(w, 1), d(w, 2));
    let out = Command::new("bash")
        .arg(support::root().join("hack/spacectl.sh"))
        .args(["venv", line])
        .output()
        .expect("hack/spacectl.sh");
    assert!(
        out.status.success(),
        "spacectl virtualenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let home = cluster()
        .dir
        .join(format!("spacectl-home-{}-{line}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let spacectl = |args: &[&str]| {
        let out = Command::new(bin.join("spacectl"))
            .args(args)
            .env("HOME", &home)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .expect("spacectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let ok = |args: &[&str]| {
        let (ok, text) = spacectl(args);
        assert!(ok, "spacectl {line} {args:?}: {text}");
        text
    };
    let endpoint = format!("grpc://127.0.0.1:{}", shim().grpc_port);
    let configure = |token: &str| {
        ok(&["config", "init", "-e", "test"]);
        ok(&["config", "set", "api_key", token]);
        ok(&["config", "endpoint", "add", "cost_analysis", &endpoint]);
    };
    // spacectl sends the token as metadata; the domain goes in the request (-p domain_id=...).
    configure(&w.canceler);
    let listed = ok(&[
        "list",
        "cost_analysis.Job",
        "-p",
        &format!("domain_id={d1}"),
        "-o",
        "json",
    ]);
    let listed: Value = serde_json::from_str(listed.trim()).unwrap_or_else(|_| json!(listed));
    let text = listed.to_string();
    for id in ["job-aaa111", "job-fff666"] {
        assert!(text.contains(id), "list: {text}");
    }
    assert!(!text.contains("job-ggg777"), "list: {text}");
    let table = ok(&[
        "list",
        "cost_analysis.Job",
        "-p",
        &format!("domain_id={d1}"),
        "-c",
        "job_id,status",
    ]);
    assert!(
        table.contains("job-ccc333") && table.contains("IN_PROGRESS"),
        "{table}"
    );

    let got = ok(&[
        "get",
        "cost_analysis.Job",
        "-p",
        "job_id=job-ddd444",
        "-p",
        &format!("domain_id={d1}"),
        "-o",
        "json",
    ]);
    assert!(
        got.contains("\"job-ddd444\"") && got.contains("\"total_tasks\": 3"),
        "get: {got}"
    );

    let stat_query = json!({"domain_id": d1, "query": {"aggregate": [
        {"group": {"keys": [{"key": "status", "name": "status"}],
                   "fields": [{"name": "n", "operator": "count"}]}}]}});
    let stat = ok(&[
        "stat",
        "cost_analysis.Job",
        "-j",
        &stat_query.to_string(),
        "-o",
        "json",
    ]);
    assert!(
        stat.contains("IN_PROGRESS") && stat.contains("\"n\": "),
        "stat: {stat}"
    );

    let canceled = ok(&[
        "exec",
        "cancel",
        "cost_analysis.Job",
        "-p",
        &format!("job_id={to_cancel}"),
        "-p",
        &format!("domain_id={d1}"),
        "-o",
        "json",
    ]);
    assert!(canceled.contains("CANCELED"), "cancel: {canceled}");

    // A foreign domain is refused (spacectl prints the error and still exits 0).
    let (_, text) = spacectl(&[
        "list",
        "cost_analysis.Job",
        "-p",
        &format!("domain_id={d2}"),
    ]);
    assert!(
        text.contains("ERROR: Permission denied.") && !text.contains("job-ggg777"),
        "foreign domain: {text}"
    );
    // A wrong token is refused: UNAUTHENTICATED with an ERROR_ code in the details.
    // A well-formed JWT whose signature is wrong (spacectl 1.x refuses a non-JWT api_key itself).
    let forged = format!("{}AAAA", w.canceler.trim_end_matches(|c| c != '.'));
    ok(&["config", "set", "api_key", &forged]);
    let (_, text) = spacectl(&[
        "list",
        "cost_analysis.Job",
        "-p",
        &format!("domain_id={d1}"),
    ]);
    // What each line prints for the server's ERROR_AUTHENTICATE_FAILURE (UNAUTHENTICATED):
    // 2.x "The api_key is not set or incorrect.", 1.x (execute.py) "The api_key of spaceconfig
    // is not set.".
    assert!(
        (text.contains("The api_key is not set or incorrect.")
            || text.contains("The api_key of spaceconfig is not set."))
            && !text.contains("job-aaa111"),
        "spacectl {line}, wrong token: {text}"
    );
    let _ = std::fs::remove_dir_all(&home);
}
