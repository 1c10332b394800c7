//! The offline `query` command as a shell user runs it: piped into a reader that stops early, fed
//! hostile requests. It exits with its documented statuses and never panics.

#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

mod support;

use std::process::Command;

fn jobs_file(n: usize) -> std::path::PathBuf {
    let jobs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"job_id": format!("job-{i:06}"), "status": "SUCCESS",
                "data_source_id": "ds-1", "domain_id": "d1",
                "created_at": "2024-01-01T00:00:00.000Z"})
        })
        .collect();
    let path = std::env::temp_dir().join(format!("cao-offline-{}-{n}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&jobs).unwrap()).unwrap();
    path
}

/// Issue 9, item 8: `... | head -c 10` closed the pipe under a panicking `println!` (exit 101).
#[test]
fn a_reader_that_stops_early_is_not_a_crash() {
    let jobs = jobs_file(20_000);
    let script = format!(
        "set -o pipefail; echo '{{\"domain_id\": \"d1\"}}' | {} query list --jobs {} | head -c 10 >/dev/null; echo \"rc=${{PIPESTATUS[1]}}\"",
        env!("CARGO_BIN_EXE_cost-analysis-operator"),
        jobs.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("rc=0"), "{stdout} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_file(jobs);
}

/// `query VERB --jobs JOBS --request -` with `request` on standard input.
fn query(verb: &str, jobs: &std::path::Path, request: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .args(["query", verb, "--jobs"])
        .arg(jobs)
        .args(["--request", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(request.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap()
}

/// Issue 9, item 2 through the command: a date with a multi-byte character is an answer.
#[test]
fn a_non_ascii_date_is_answered_with_an_error_code() {
    let jobs = jobs_file(3);
    let request = r#"{"domain_id": "d1", "query": {"filter": [{"k": "created_at", "v": "abcé", "o": "datetime_gt"}]}}"#;
    let out = query("list", &jobs, request);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(101), "{stdout}");
    assert!(stdout.contains("ERROR_DB_QUERY"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let _ = std::fs::remove_file(jobs);
}

/// How much the command's peak resident memory (VmHWM) grows once it has its request: read
/// while it waits for the request on standard input (it reads the request before the file),
/// then every 2 ms until it exits; and its output.
fn growth_of(verb: &str, jobs: &std::path::Path, request: &str) -> (u64, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .args(["query", verb, "--jobs"])
        .arg(jobs)
        .args(["--request", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut base, mut steady) = (0, std::time::Instant::now());
    while base == 0 || steady.elapsed() < std::time::Duration::from_millis(300) {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "{verb} {request}: the command exited ({exited:?}) before reading its request"
        );
        let now = support::proc_memory(child.id(), "VmHWM");
        if now > base {
            (base, steady) = (now, std::time::Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, request.as_bytes()).unwrap();
    drop(stdin);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let mut peak = base;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(support::proc_memory(child.id(), "VmHWM"));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    (peak - base, reader.join().unwrap())
}

/// Issue 22, item 7: the command's memory follows its answer, not its file. It once parsed the
/// whole file into one JSON tree (24 times a file of tiny jobs), then built an index of every job
/// (about 470 bytes per job: 12 times a 42-byte job); it now reads the request first, then the
/// file one job at a time through small chunks, keeping only what the answer can depend on (a
/// list's first rows, a get's id, a leading group's or count's groups). What the command grows by
/// once it has its request must stay within 3 x the input, for tiny and for realistic jobs.
#[test]
fn memory_follows_the_answer_not_the_file() {
    let dir = std::env::temp_dir();
    let tiny = dir.join(format!("cao-offline-tiny-{}.json", std::process::id()));
    let tiny_jobs: Vec<serde_json::Value> = (0..200_000)
        .map(|i| serde_json::json!({"job_id": format!("job-{i:06}"), "domain_id": format!("d{}", i % 3)}))
        .collect();
    std::fs::write(&tiny, serde_json::to_vec(&tiny_jobs).unwrap()).unwrap();
    drop(tiny_jobs);
    let realistic = dir.join(format!("cao-offline-real-{}.json", std::process::id()));
    let jobs: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            let accounts: Vec<serde_json::Value> = (0..8)
                .map(|k| serde_json::json!({"account_id": format!("{:012}", i * 8 + k),
                    "name": format!("account-{k}"), "tags": {"env": "prod", "team": format!("t{k}")}}))
                .collect();
            serde_json::json!({"job_id": format!("job-{i:06}"), "status": "SUCCESS",
                "data_source_id": "ds-1", "domain_id": format!("d{}", i % 3),
                "total_tasks": 1, "remained_tasks": 0, "created_at": "2024-01-01T00:00:00.000Z",
                "options": {"sync_mode": "MANUAL", "start": "2024-01", "secret_id": format!("s-{i:08x}"),
                    "region_codes": ["us-east-1", "eu-west-1"], "accounts": accounts,
                    "filters": {"services": ["AmazonEC2", "AmazonS3"], "currency": "USD"},
                    "note": "x".repeat(200)}})
        })
        .collect();
    std::fs::write(&realistic, serde_json::to_vec(&jobs).unwrap()).unwrap();
    drop(jobs);
    let calls = [
        (
            "list",
            r#"{"domain_id": "d1", "query": {"sort": {"key": "job_id", "desc": true}, "page": {"start": 50, "limit": 5}}}"#,
            "\"total_count\": ",
        ),
        (
            "stat",
            r#"{"domain_id": "d1", "query": {"aggregate": [{"group": {"keys": [{"key": "status", "name": "s"}], "fields": [{"operator": "count", "name": "n"}]}}]}}"#,
            "\"n\": ",
        ),
        (
            "stat",
            r#"{"domain_id": "d2", "query": {"aggregate": [{"count": {"name": "n"}}]}}"#,
            "\"n\": ",
        ),
        (
            "get",
            r#"{"domain_id": "d1", "job_id": "job-000004"}"#,
            "\"job_id\": ",
        ),
    ];
    for (verb, request, answered) in calls {
        for file in [&tiny, &realistic] {
            let input = std::fs::metadata(file).unwrap().len();
            let (grown, out) = growth_of(verb, file, request);
            assert!(out.contains(answered), "{verb} {request}: {out}");
            let ratio = grown as f64 / input as f64;
            println!("{verb} {request} over {input} B: grew {grown} B, {ratio:.2} x the input");
            assert!(ratio < 3.0, "{verb} {request}: grew {ratio:.2} x the input");
        }
    }
    for f in [tiny, realistic] {
        let _ = std::fs::remove_file(f);
    }
}

/// A job that appears twice in the file is read as the operator's index reads a watch: the later
/// record replaces the earlier, for a grouped stat (which goes straight to a whole index), an
/// ordered stat, a list and a get alike.
#[test]
fn a_repeated_job_is_its_later_record_on_every_verb() {
    let jobs = serde_json::json!([
        {"job_id": "job-a", "status": "IN_PROGRESS", "data_source_id": "ds-1", "domain_id": "d1",
         "created_at": "2024-01-01T00:00:00.000Z"},
        {"job_id": "job-b", "status": "SUCCESS", "data_source_id": "ds-1", "domain_id": "d1",
         "created_at": "2024-01-01T00:00:01.000Z"},
        {"job_id": "job-a", "status": "FAILURE", "data_source_id": "ds-1", "domain_id": "d1",
         "created_at": "2024-01-01T00:00:00.000Z"},
    ]);
    let path = std::env::temp_dir().join(format!("cao-offline-twice-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let run = |verb: &str, request: serde_json::Value| -> serde_json::Value {
        let out = query(verb, &path, &request.to_string());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{verb} {request}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let grouped = run(
        "stat",
        serde_json::json!({"domain_id": "d1", "query": {"aggregate": [
            {"group": {"keys": [{"key": "status", "name": "s"}],
                       "fields": [{"operator": "count", "name": "n"}]}},
            {"sort": {"key": "s"}}]}}),
    );
    assert_eq!(
        grouped["results"],
        serde_json::json!([{"s": "FAILURE", "n": 1.0}, {"s": "SUCCESS", "n": 1.0}])
    );
    let ordered = run(
        "stat",
        serde_json::json!({"domain_id": "d1", "query": {"aggregate": [
            {"group": {"keys": [{"key": "data_source_id", "name": "ds"}],
                       "fields": [{"operator": "add_to_set", "key": "status", "name": "all"}]}}]}}),
    );
    assert_eq!(
        ordered["results"],
        serde_json::json!([{"ds": "ds-1", "all": ["FAILURE", "SUCCESS"]}])
    );
    let listed = run("list", serde_json::json!({"domain_id": "d1"}));
    assert_eq!(listed["total_count"], 2, "{listed}");
    let got = run(
        "get",
        serde_json::json!({"domain_id": "d1", "job_id": "job-a"}),
    );
    assert_eq!(got["status"], "FAILURE", "{got}");
    let _ = std::fs::remove_file(path);
}
