//! The offline `query` command: a SpaceONE Job API request evaluated over a JSON file of jobs,
//! with no cluster. The answer goes to standard output; the exit code says whether it is an error.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{QueryArgs, QueryVerb};

/// `cost-analysis-operator query`: one Job API call over a file of jobs.
pub fn run(args: QueryArgs) -> ExitCode {
    let jobs_text = match std::fs::read_to_string(&args.jobs) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read --jobs {}: {e}", args.jobs.display());
            return ExitCode::from(2);
        }
    };
    let jobs = match spaceone_query::offline::load_jobs(&jobs_text) {
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
