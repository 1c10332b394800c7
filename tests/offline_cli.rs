//! The offline `query` command as a shell user runs it: piped into a reader that stops early, fed
//! hostile requests. It exits with its documented statuses and never panics.

#![allow(clippy::unwrap_used)]

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

/// Issue 22, item 2: the command's memory stays within a few times its input. It read the whole
/// file, parsed it into one JSON tree and built every job before the index (24 times a file of
/// tiny jobs, 7.3 times one of realistic jobs); it now reads one job at a time straight into the
/// index, which keeps options as text. Peak resident memory is read from /proc while the command,
/// its index built, waits for the request on standard input.
#[test]
fn memory_stays_within_a_few_times_the_input() {
    use std::io::Write;
    let n = 10_000;
    let jobs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let accounts: Vec<serde_json::Value> = (0..8)
                .map(|k| serde_json::json!({"account_id": format!("{:012}", i * 8 + k),
                    "name": format!("account-{k}"), "tags": {"env": "prod", "team": format!("t{k}")}}))
                .collect();
            serde_json::json!({"job_id": format!("job-{i:06}"), "status": "SUCCESS",
                "data_source_id": "ds-1", "domain_id": format!("d{}", i % 20),
                "total_tasks": 1, "remained_tasks": 0, "created_at": "2024-01-01T00:00:00.000Z",
                "options": {"sync_mode": "MANUAL", "start": "2024-01", "secret_id": format!("s-{i:08x}"),
                    "region_codes": ["us-east-1", "eu-west-1"], "accounts": accounts,
                    "filters": {"services": ["AmazonEC2", "AmazonS3"], "currency": "USD"},
                    "note": "x".repeat(200)}})
        })
        .collect();
    let path = std::env::temp_dir().join(format!("cao-offline-mem-{}.json", std::process::id()));
    let text = serde_json::to_vec(&jobs).unwrap();
    drop(jobs);
    std::fs::write(&path, &text).unwrap();
    let input = text.len() as u64;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cost-analysis-operator"))
        .args(["query", "list", "--jobs"])
        .arg(&path)
        .args(["--request", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let hwm = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // Steady for a second: the index is built and the command waits for the request.
    let (mut peak, mut steady) = (0, std::time::Instant::now());
    while steady.elapsed() < std::time::Duration::from_secs(1) {
        let now = hwm();
        if now > peak {
            (peak, steady) = (now, std::time::Instant::now());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(br#"{"domain_id": "d1", "query": {"page": {"limit": 1}}}"#)
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"total_count\": 500"));
    let ratio = peak as f64 / input as f64;
    println!("{n} jobs, {input} B of JSON: peak resident {peak} B, {ratio:.2} x the input");
    assert!(ratio < 4.0, "peak memory {ratio:.2} x the input");
}
