//! The offline `query` command as a shell user runs it: piped into a reader that stops early, fed
//! hostile requests. It exits with its documented statuses and never panics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

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

/// Issue 9, item 2 through the command: a date with a multi-byte character is an answer.
#[test]
fn a_non_ascii_date_is_answered_with_an_error_code() {
    let jobs = jobs_file(3);
    let request = r#"{"domain_id": "d1", "query": {"filter": [{"k": "created_at", "v": "abcé", "o": "datetime_gt"}]}}"#;
    let out = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .args(["query", "list", "--jobs"])
        .arg(&jobs)
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
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(101), "{stdout}");
    assert!(stdout.contains("ERROR_DB_QUERY"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let _ = std::fs::remove_file(jobs);
}
