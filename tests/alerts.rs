//! The alert rules of the chart (charts/cost-analysis-operator/files/alerts.yaml) with the real
//! promtool, built from its Go module by hack/observability-bin.sh (cached): the file passes
//! `promtool check rules`, and every alert's unit test in tests/fixtures/alerts_test.yaml passes
//! (each fires when it should and stays silent when it should not). Every alert has a runbook
//! section in docs/observability.md.

#![allow(clippy::expect_used)]

mod support;

use std::process::Command;
use support::root;

fn promtool(args: &[&str]) -> String {
    let out = Command::new(support::observability_tool("promtool"))
        .args(args)
        .current_dir(root().join("tests/fixtures"))
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

const RULES: &str = "../../charts/cost-analysis-operator/files/alerts.yaml";

#[test]
fn the_alert_rules_are_valid_and_every_alert_is_unit_tested() {
    let checked = promtool(&["check", "rules", RULES]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures").join(RULES)).unwrap(),
    )
    .unwrap();
    let tests = std::fs::read_to_string(root().join("tests/fixtures/alerts_test.yaml")).unwrap();
    let runbooks = std::fs::read_to_string(root().join("docs/observability.md")).unwrap();
    let alerts: Vec<&str> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for alert in alerts {
        // Tested both ways: at least one eval where it fires and one where it stays silent.
        let evals = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            evals >= 2,
            "{alert} needs a firing and a silent case ({evals})"
        );
        assert!(
            runbooks.contains(&format!("### {alert}\n")),
            "{alert} has no runbook section in docs/observability.md"
        );
    }
}
