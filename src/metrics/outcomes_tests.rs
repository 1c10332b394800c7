#![allow(clippy::arithmetic_side_effects)]

use super::*;
use chrono::TimeZone;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

#[test]
fn resident_memory_is_read_from_proc_status() {
    assert_eq!(
        vm_rss_bytes("Name:\tx\nVmRSS:\t   2048 kB\nVmSwap: 0 kB\n"),
        Some(2_097_152)
    );
    assert_eq!(vm_rss_bytes("Name: x\n"), None);
}

#[test]
fn capped_labels_keep_the_first_values_and_call_the_rest_other() {
    let c = Capped::new(2);
    assert_eq!(c.value("a"), "a");
    assert_eq!(c.value("b"), "b");
    assert_eq!(c.value("c"), OTHER);
    assert_eq!(c.value("a"), "a");
    assert_eq!(c.value("d"), OTHER);
}

#[test]
fn the_census_counts_every_status_and_finds_the_oldest_running_job() {
    let job = |status, created, deadline| CensusJob {
        status,
        created: at(created),
        deadline: at(deadline),
    };
    let c = census(
        [
            job(JobStatus::InProgress, 10, 100),
            job(JobStatus::InProgress, 50, 60),
            job(JobStatus::Success, 0, 10),
            job(JobStatus::Timeout, 0, 10),
        ],
        at(70),
    );
    assert_eq!(
        c.by_status,
        [
            (JobStatus::InProgress, 2),
            (JobStatus::Success, 1),
            (JobStatus::Failure, 0),
            (JobStatus::Timeout, 1),
            (JobStatus::Canceled, 0),
        ]
    );
    assert_eq!(c.oldest_in_progress_seconds, 60.0);
    assert_eq!(c.past_deadline, 1);
    let empty = census([], at(0));
    assert_eq!(empty.oldest_in_progress_seconds, 0.0);
    assert_eq!(empty.past_deadline, 0);
}

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

#[test]
fn a_finished_job_is_counted_with_its_duration_tasks_and_lateness() {
    let mut registry = Registry::with_prefix("t");
    let o = Outcomes::new(
        LabelOptions {
            domain_label: false,
            max_label_values: 1,
        },
        &mut registry,
    );
    let finished = |status, ds| Finished {
        status,
        data_source_id: ds,
        domain_id: "domain-1",
        created: at(0),
        finished: at(65),
        deadline: at(60),
        task_states: vec!["SUCCESS", "CANCELED"],
    };
    o.finish(&finished(JobStatus::Timeout, "ds-1"));
    o.finish(&finished(JobStatus::Success, "ds-2"));
    let t = text(&registry);
    assert!(
        t.contains(r#"t_jobs_finished_total{status="TIMEOUT",data_source_id="ds-1"} 1"#),
        "{t}"
    );
    assert!(
        t.contains(r#"t_jobs_finished_total{status="SUCCESS",data_source_id="other"} 1"#),
        "{t}"
    );
    assert!(
        t.contains(r#"t_job_duration_seconds_sum{status="TIMEOUT"} 65.0"#),
        "{t}"
    );
    assert!(t.contains("t_job_timeout_lateness_seconds_sum 5.0"), "{t}");
    assert!(t.contains("t_job_timeout_lateness_seconds_count 1"), "{t}");
    assert!(
        t.contains(r#"t_tasks_finished_total{status="CANCELED"} 2"#),
        "{t}"
    );
    assert!(!t.contains("domain_id"), "{t}");
}

#[test]
fn the_domain_label_is_opt_in_and_capped() {
    let mut registry = Registry::with_prefix("t");
    let o = Outcomes::new(
        LabelOptions {
            domain_label: true,
            max_label_values: 1,
        },
        &mut registry,
    );
    for domain in ["d1", "d2"] {
        o.finish(&Finished {
            status: JobStatus::Failure,
            data_source_id: "ds",
            domain_id: domain,
            created: at(0),
            finished: at(1),
            deadline: at(60),
            task_states: vec![],
        });
    }
    let t = text(&registry);
    assert!(
        t.contains(
            r#"t_jobs_finished_total{status="FAILURE",data_source_id="ds",domain_id="d1"} 1"#
        ),
        "{t}"
    );
    assert!(
        t.contains(
            r#"t_jobs_finished_total{status="FAILURE",data_source_id="ds",domain_id="other"} 1"#
        ),
        "{t}"
    );
}

#[test]
fn routes_have_fixed_method_labels_and_http_statuses_spaceone_codes() {
    assert_eq!(
        http_method_label(Some("/cost-analysis/v1/jobs/search"), true),
        ("rest", "list")
    );
    assert_eq!(
        http_method_label(Some("/cost-analysis/v1/job/{job_id}/cancel"), true),
        ("rest", "cancel")
    );
    assert_eq!(
        http_method_label(
            Some("/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{ns}/jobs/{name}"),
            false
        ),
        ("aggregated", "jobs.get")
    );
    assert_eq!(
        http_method_label(
            Some("/apis/query.cost-analysis.spaceone.dev/v1/namespaces/{ns}/jobstats"),
            true
        ),
        ("aggregated", "jobstats.create")
    );
    let agg = |path: &str| format!("/apis/query.cost-analysis.spaceone.dev/v1{path}");
    for (route, post, method) in [
        ("/jobtasks", false, "jobtasks.list"),
        ("/namespaces/{ns}/jobtasks", false, "jobtasks.list"),
        ("/namespaces/{ns}/jobtasks/{name}", false, "jobtasks.get"),
        ("/namespaces/{ns}/jobtaskstats", true, "jobtaskstats.create"),
        ("/jobs", false, "jobs.list"),
    ] {
        assert_eq!(
            http_method_label(Some(&agg(route)), post),
            ("aggregated", method),
            "{route}"
        );
    }
    assert_eq!(
        http_method_label(Some("/apis"), false),
        ("aggregated", "discovery")
    );
    assert_eq!(http_method_label(None, false), ("rest", OTHER));
    assert_eq!(code_of_http_status(200), "OK");
    assert_eq!(code_of_http_status(403), "ERROR_PERMISSION_DENIED");
    assert_eq!(code_of_http_status(503), "ERROR_UNAVAILAVBLE");
}
