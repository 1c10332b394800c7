//! SpaceONE REST against the real control plane, through the API shim: real ServiceAccount
//! tokens and RBAC (credentials, domain isolation), clear refusals of bad input, and hostile
//! requests answered with SpaceONE errors while the process lives on.

#![allow(clippy::string_slice)]

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::cluster;
use support::shim::{Reply, d, job, rest, shim, wait_listed, world};

#[tokio::test(flavor = "multi_thread")]
async fn rest_requires_credentials_and_isolates_domains() {
    let w = world("authz").await;
    let (d1, d2) = (d(&w, 1), d(&w, 2));
    wait_listed(&w, &d1, 2).await;

    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/jobs?domain_id={d1}"),
        None,
        None,
        &[],
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["detail"]["code"], "ERROR_AUTHENTICATE_FAILURE");
    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/jobs?domain_id={d1}"),
        Some("not-a-token"),
        None,
        &[],
    );
    assert_eq!(r.status, 401);

    // A forged front-proxy identity on a direct connection is ignored.
    let forged = [
        "X-Remote-User: system:admin",
        "X-Remote-Group: system:masters",
    ];
    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/jobs?domain_id={d1}"),
        None,
        None,
        &forged,
    );
    assert_eq!(r.status, 401);
    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/jobs?domain_id={d1}"),
        Some(&w.nobody),
        None,
        &forged,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body["detail"],
        json!({"code": "ERROR_PERMISSION_DENIED", "message": " Permission denied."})
    );

    // Allowed: the reader's own domain, through every read path.
    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/jobs?domain_id={d1}&query.page.limit=1"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(
        (r.status, r.body["total_count"].as_u64()),
        (200, Some(2)),
        "{}",
        r.body
    );
    assert_eq!(r.body["results"].as_array().map(Vec::len), Some(1));
    let r = rest(
        "POST",
        "/cost-analysis/v1/job/list",
        Some(&w.reader),
        Some(&json!({"domain_id": d1, "query": {"keyword": "a1"}})),
        &[],
    );
    assert_eq!(r.body["results"][0]["job_id"], "job-a1", "{}", r.body);
    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/job/job-a2?domain_id={d1}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(
        (r.status, r.body["job_id"].as_str()),
        (200, Some("job-a2")),
        "{}",
        r.body
    );
    let stat = json!({"domain_id": d1, "query": {"aggregate": [{"count": {"name": "n"}}]}});
    let r = rest(
        "POST",
        "/cost-analysis/v1/jobs/stat",
        Some(&w.reader),
        Some(&stat),
        &[],
    );
    assert_eq!(r.body["results"][0]["n"].as_f64(), Some(2.0), "{}", r.body);

    // Another domain: refused, and nothing leaks through list, stat, keyword, distinct or get.
    for (method, path, body) in [
        (
            "GET",
            format!("/cost-analysis/v1/jobs?domain_id={d2}"),
            None,
        ),
        (
            "POST",
            "/cost-analysis/v1/job/list".to_string(),
            Some(json!({"domain_id": d2, "query": {"keyword": "b1"}})),
        ),
        (
            "POST",
            "/cost-analysis/v1/jobs/stat".to_string(),
            Some(json!({"domain_id": d2, "query": {"distinct": "job_id"}})),
        ),
        (
            "GET",
            format!("/cost-analysis/v1/job/job-b1?domain_id={d2}"),
            None,
        ),
    ] {
        let r = rest(method, &path, Some(&w.reader), body.as_ref(), &[]);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(
            !r.body.to_string().contains("job-b1"),
            "{path} leaked: {}",
            r.body
        );
    }
    // Naming the allowed domain does not reach another domain's job either.
    let r = rest(
        "GET",
        &format!("/cost-analysis/v1/job/job-b1?domain_id={d1}"),
        Some(&w.reader),
        None,
        &[],
    );
    assert_eq!(
        (r.status, r.body["detail"]["code"].as_str()),
        (400, Some("ERROR_NOT_FOUND")),
        "{}",
        r.body
    );
    let r = rest(
        "POST",
        "/cost-analysis/v1/jobs/search",
        Some(&w.reader),
        Some(
            &json!({"domain_id": d1, "query": {"filter": [{"k": "domain_id", "v": d2, "o": "eq"}]}}),
        ),
        &[],
    );
    assert_eq!(r.body, json!({"results": [], "total_count": 0}));

    // Every answer is timed by route template and status.
    let metrics = shim().op.metrics();
    for series in [
        r#"cost_analysis_operator_api_request_duration_seconds_count{route="/cost-analysis/v1/jobs/search",code="200"}"#,
        r#"cost_analysis_operator_api_request_duration_seconds_count{route="/cost-analysis/v1/jobs",code="401"}"#,
        r#"cost_analysis_operator_api_request_duration_seconds_count{route="/cost-analysis/v1/job/{job_id}",code="403"}"#,
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(series)),
            "{series} missing from:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_refuses_bad_input_clearly() {
    let w = world("input").await;
    let d1 = d(&w, 1);
    let call = |body: &str| {
        let s = shim();
        let file = cluster().dir.join(format!("body-{}.json", w.ns));
        std::fs::write(&file, body).expect("body file");
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&s.tls.cert)
            .args([
                "-H",
                &format!("Authorization: Bearer {}", w.reader),
                "-H",
                "Content-Type: application/json",
            ])
            .args(["-w", "\n%{http_code}", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(format!(
                "https://127.0.0.1:{}/cost-analysis/v1/job/list",
                s.port
            ))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bad_json = call("{not json");
    assert!(
        bad_json.ends_with("400") && bad_json.contains("ERROR_INVALID_PARAMETER"),
        "{bad_json}"
    );
    let unknown = call(&json!({"domain_id": d1, "bogus": 1}).to_string());
    assert!(
        unknown.contains("key = bogus, reason = unknown field") && unknown.ends_with("400"),
        "{unknown}"
    );
    let big = format!("{{\"domain_id\": \"{}\"}}", "x".repeat(2 << 20));
    let too_large = call(&big);
    assert!(
        too_large.ends_with("413"),
        "{}",
        &too_large[too_large.len().saturating_sub(200)..]
    );
    let r = rest(
        "POST",
        "/cost-analysis/v1/job/list",
        Some(&w.reader),
        Some(
            &json!({"domain_id": d1, "query": {"filter": [{"k": "status", "v": "x", "o": "in"}]}}),
        ),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["detail"]["message"],
        " The value of 'in operator' must be a list type. ({'k': 'status', 'v': 'x', 'o': 'in'})"
    );
    let r = rest(
        "POST",
        "/cost-analysis/v1/job/list",
        Some(&w.reader),
        Some(&json!({})),
        &[],
    );
    assert_eq!(
        r.body["detail"]["code"], "ERROR_REQUIRED_PARAMETER",
        "{}",
        r.body
    );
}

/// Issue 9: requests an attacker with read access to one domain can send. Each is answered with a
/// SpaceONE error (never a reset stream or a dead process), and the process keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_spaceone_errors_and_the_process_lives_on() {
    let w = world("hostile").await;
    let c = cluster();
    let d1 = d(&w, 1);
    // Enough jobs in one domain that five unwinds of five pushed lists would be 40^5 rows.
    let mut yaml = String::new();
    for i in 0..40 {
        yaml += &job(&format!("bomb-{i}"), &d1, &[]);
    }
    let out = c.apply_yaml(&w.ns, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_listed(&w, &d1, 42).await;
    let search = |query: Value| {
        rest(
            "POST",
            "/cost-analysis/v1/jobs/search",
            Some(&w.reader),
            Some(&json!({"domain_id": d1, "query": query})),
            &[],
        )
    };
    let stat = |query: Value| {
        rest(
            "POST",
            "/cost-analysis/v1/jobs/stat",
            Some(&w.reader),
            Some(&json!({"domain_id": d1, "query": query})),
            &[],
        )
    };
    let spaceone_error = |r: &Reply, what: &str| {
        assert!(r.status >= 400, "{what}: {} {}", r.status, r.body);
        let code = r.body["detail"]["code"].as_str().unwrap_or_default();
        assert!(code.starts_with("ERROR_"), "{what}: {}", r.body);
        code.to_string()
    };

    // Item 2: a date that is not one, with a multi-byte character where a slice would fall.
    // A plain comparison of a date with a string matches nothing (as on MongoDB); a datetime
    // operator refuses the value. Either way an answer, never a reset or ERROR_UNKNOWN.
    let answered = |r: &Reply, what: &str| {
        if r.status != 200 {
            let code = spaceone_error(r, what);
            assert_ne!(code, "ERROR_UNKNOWN", "{what}: {}", r.body);
        }
    };
    for v in [
        "abcé",
        "2021-1é",
        "é",
        "2021-01-01T00:00:00+0é:00",
        "2021-01-01é",
    ] {
        for op in ["gt", "lte", "datetime_gt", "datetime_lte"] {
            let r = search(json!({"filter": [{"k": "created_at", "v": v, "o": op}]}));
            answered(&r, op);
            let r = stat(json!({"filter": [{"k": "created_at", "v": v, "o": op}],
                                "aggregate": [{"count": {"name": "n"}}]}));
            answered(&r, op);
        }
        let r = search(json!({"filter": [{"k": "created_at", "v": v, "o": "datetime_gt"}]}));
        assert_eq!(
            spaceone_error(&r, "datetime_gt"),
            "ERROR_DB_QUERY",
            "{v}: {}",
            r.body
        );
    }

    // Item 3: the unwind bomb.
    let push = |name: &str| json!({"name": name, "operator": "push", "fields": [{"key": "job_id", "name": "id"}]});
    let bomb = json!({"aggregate": [
        {"group": {"keys": [{"key": "domain_id", "name": "d"}],
                   "fields": [push("a"), push("b"), push("c"), push("e"), push("f")]}},
        {"unwind": {"path": "a"}}, {"unwind": {"path": "b"}}, {"unwind": {"path": "c"}},
        {"unwind": {"path": "e"}}, {"unwind": {"path": "f"}},
        {"count": {"name": "n"}}]});
    let r = stat(bomb.clone());
    assert_eq!(spaceone_error(&r, "unwind bomb"), "ERROR_DB_QUERY");

    // Item 4: thousands of expensive patterns, and a huge list of values.
    let patterns: Vec<String> = (0..2000).map(|_| r"\w{20}".to_string()).collect();
    let r = search(json!({"filter": [{"k": "job_id", "v": patterns, "o": "regex_in"}]}));
    assert_eq!(spaceone_error(&r, "regex_in"), "ERROR_DB_QUERY");
    let values: Vec<String> = (0..80_000).map(|i| format!("v{i}")).collect();
    let r = search(json!({"filter": [{"k": "job_id", "v": values, "o": "contain_in"}]}));
    assert_eq!(spaceone_error(&r, "contain_in"), "ERROR_DB_QUERY");
    assert!(
        r.body["detail"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_values")),
        "{}",
        r.body
    );

    // Item 8: a keyword of the wrong type is refused by list as it is by stat.
    for keyword in [json!(1), json!(["a"]), json!({"a": 1})] {
        let r = search(json!({"keyword": keyword}));
        assert_eq!(
            spaceone_error(&r, "keyword"),
            "ERROR_INVALID_PARAMETER_TYPE",
            "{}",
            r.body
        );
    }

    // After all of it the process still answers, and nothing panicked.
    let r = search(json!({"filter": [{"k": "job_id", "v": "bomb-1", "o": "eq"}]}));
    assert_eq!(
        (r.status, r.body["total_count"].clone()),
        (200, json!(1)),
        "{}",
        r.body
    );
}
