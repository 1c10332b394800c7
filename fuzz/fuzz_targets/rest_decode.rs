//! Decoding of everything a client sends the shim before the query engine sees it: the JSON body,
//! the grpc-gateway query string, the path-addressed request, and the aggregated API's list
//! options (of `jobs` and `jobtasks`) and label selectors. Never a panic; decoded requests then go through the engine.
#![no_main]

use cost_analysis_operator::api::{aggregated, body, label_selector};
use cost_analysis_operator::resources::{CostAnalysisJob, CostAnalysisJobTask};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    match selector % 5 {
        0 => {
            let _ = body::parse_body(rest);
        }
        1 => {
            let _ = body::query_params(&text);
        }
        2 => {
            let (id, query) = text.split_once('?').unwrap_or((&text, ""));
            let (query, body) = query.split_once('\n').unwrap_or((query, ""));
            let body = body::parse_body(body.as_bytes()).unwrap_or_default();
            let Ok(query) = body::query_params(query) else { return };
            if let Ok(request) = body::path_request_of("job_id", id.to_string(), query, body) {
                assert_eq!(request["job_id"], serde_json::Value::String(id.to_string()));
            }
        }
        3 => {
            let _ = aggregated::list_options::<CostAnalysisJob>(Some(&text));
            let _ = aggregated::list_options::<CostAnalysisJobTask>(Some(&text));
        }
        _ => {
            let _ = label_selector::Selector::parse(&text);
        }
    }
});
