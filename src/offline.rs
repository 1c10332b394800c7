//! The offline `query` command: a SpaceONE Job API request evaluated over a JSON file of jobs,
//! with no cluster. The answer goes to standard output; the exit code says whether it is an error.

use std::io::Write;
use std::process::ExitCode;

use serde::Deserialize;

use crate::cli::{QueryArgs, QueryVerb};
use crate::resources::CostAnalysisJob;

/// `cost-analysis-operator query`: one Job API call over a file of jobs.
pub fn run(args: QueryArgs) -> ExitCode {
    let jobs_text = match std::fs::read_to_string(&args.jobs) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read --jobs {}: {e}", args.jobs.display());
            return ExitCode::from(2);
        }
    };
    let jobs = match load_jobs(&jobs_text) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: --jobs {}: {e}", args.jobs.display());
            return ExitCode::from(2);
        }
    };
    let request_text = if args.request == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("error: cannot read the request from standard input: {e}");
            return ExitCode::from(2);
        }
        s
    } else {
        match std::fs::read_to_string(&args.request) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read --request {}: {e}", args.request);
                return ExitCode::from(2);
            }
        }
    };
    let request: serde_json::Value = if request_text.trim().is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_str(&request_text) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: the request is not valid JSON: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let now = match args
        .now
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        None => chrono::Utc::now(),
        Some(Ok(t)) => t.with_timezone(&chrono::Utc),
        Some(Err(e)) => {
            eprintln!("error: --now is not an RFC 3339 time: {e}");
            return ExitCode::from(2);
        }
    };
    let verb = match args.verb {
        QueryVerb::List => spaceone_query::offline::Verb::List,
        QueryVerb::Stat => spaceone_query::offline::Verb::Stat,
        QueryVerb::Get => spaceone_query::offline::Verb::Get,
    };
    let limits = spaceone_query::Limits::default();
    let (out, code) = spaceone_query::offline::run(verb, jobs, &request, now, &limits);
    // A reader that stops early (`| head`) is not an error of ours; anything else is.
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{out}").and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("error: cannot write the answer: {e}");
            return ExitCode::from(2);
        }
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A JSON array of SpaceONE JobInfo objects, or a Kubernetes `List` of CostAnalysisJob objects
/// (`kubectl get caj -A -o json`), read as the operator reads them from a watch.
pub fn load_jobs(text: &str) -> Result<Vec<spaceone_query::Job>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(items) = value.get("items").and_then(serde_json::Value::as_array) else {
        return spaceone_query::offline::jobs_from_info(&value)
            .map_err(|e| format!("{e}, or a Kubernetes List (with items)"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let object =
                CostAnalysisJob::deserialize(item).map_err(|e| format!("item #{i}: {e}"))?;
            if object.metadata.name.as_deref().is_none_or(str::is_empty) {
                return Err(format!("item #{i} has no metadata.name"));
            }
            Ok(object.spaceone_job())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;
    use spaceone_query::JobStatus;

    #[test]
    fn a_kubernetes_list_is_read_through_the_one_mapping() {
        let jobs = load_jobs(include_str!("../tests/fixtures/caj-list.json")).expect("loads");
        assert_eq!(jobs.len(), 2);
        let a = &jobs[0];
        assert_eq!(
            (a.namespace.as_str(), a.job_id.as_str()),
            ("team-a", "job-aaa111")
        );
        assert_eq!(a.status, JobStatus::Failure);
        assert_eq!(a.error_code.as_deref(), Some("ERROR_JOB_TASK"));
        assert_eq!((a.total_tasks, a.remained_tasks), (2, 1));
        assert_eq!(
            (a.domain_id.as_str(), a.data_source_id.as_str()),
            ("domain-1", "ds-1")
        );
        assert_eq!(a.options.get("sync_mode"), Some(&json!("MANUAL")));
        // status.createdAt wins over metadata.creationTimestamp.
        assert_eq!(
            spaceone_query::calls::job_info(a)["created_at"],
            json!("2024-01-01T00:00:01.250Z")
        );
        assert_eq!(
            spaceone_query::calls::job_info(a)["last_changed_at"],
            json!("2023-12-31T00:00:00.000Z")
        );
        // No status yet: IN_PROGRESS, created at the object's creation, the counters from the spec.
        let b = &jobs[1];
        assert_eq!(b.status, JobStatus::InProgress);
        assert_eq!((b.total_tasks, b.remained_tasks), (1, 1));
        assert_eq!(
            spaceone_query::calls::job_info(b)["created_at"],
            json!("2024-01-02T00:00:00.000Z")
        );
        assert_eq!(b.finished_at, None);
    }

    #[test]
    fn broken_lists_are_refused_clearly() {
        for (text, want) in [
            (
                "{\"items\": [{\"metadata\": {}, \"spec\": {\"domainId\": \"d\", \"dataSourceId\": \"s\"}}]}",
                "no metadata.name",
            ),
            (
                "{\"items\": [{\"metadata\": {\"name\": \"j\"}, \"spec\": 1}]}",
                "item #0",
            ),
            ("{\"items\": 1}", "expected a JSON array of jobs"),
            ("3", "or a Kubernetes List"),
        ] {
            let err = load_jobs(text).err().unwrap_or_default();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
