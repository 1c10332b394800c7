//! An API-server outage (issue 10, items 2 and 3): kube-apiserver is stopped for 15 s and started
//! again with the same arguments. Afterwards the controller and the API shim see everything that
//! changed at once, without a restart of their own; during the outage the shim says it is not
//! ready instead of serving a stale index as if nothing happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::arithmetic_side_effects
)]

mod support;

use std::time::{Duration, Instant};

use cost_analysis_operator::resources::{CostAnalysisJob, JobState};
use kube::Api;
use support::{Operator, cluster, create, eventually, job_yaml, wait_for_leader};

#[tokio::test(flavor = "multi_thread")]
async fn after_an_api_server_restart_every_change_is_seen_at_once() {
    let c = cluster();
    let ns = c.namespace("outage");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(c.client().await, &ns);
    let op = Operator::start_command(
        c,
        "run",
        "outage",
        &[
            "--api-addr",
            &format!("127.0.0.1:{}", support::free_port()),
            "--index-grace",
            "5",
        ],
    );
    wait_for_leader(c, "outage", Duration::from_secs(60));
    let health = op.metrics_addr.clone();
    let ready = || support::http_get(&health, "/readyz").contains("200 OK");
    eventually(Duration::from_secs(60), "the shim ready", || async {
        ready().then_some(())
    })
    .await;

    let mut yaml = String::new();
    for i in 0..10 {
        yaml += &format!("---\n{}\n", job_yaml(&format!("running-{i}"), &["a"], ""));
    }
    create(c, &ns, &yaml);
    for i in 0..10 {
        eventually(Duration::from_secs(30), "running jobs", || async {
            (jobs
                .get(&format!("running-{i}"))
                .await
                .ok()?
                .status?
                .status?
                == JobState::InProgress)
                .then_some(())
        })
        .await;
    }

    // The outage: the shim turns unready once its watch has been failing for --index-grace.
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = health.clone();
    let watcher = std::thread::spawn(move || {
        let mut unready_seen = false;
        while rx.try_recv().is_err() {
            if !support::http_get(&probe, "/readyz").contains("200 OK") {
                unready_seen = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        unready_seen
    });
    c.restart_apiserver(Duration::from_secs(15));
    tx.send(()).unwrap();
    let unready_seen = watcher.join().unwrap();
    assert!(unready_seen, "/readyz said ready through a 15 s outage");

    // Right after it: 30 new jobs and 10 cancel requests, within a second.
    let started = Instant::now();
    let mut yaml = String::new();
    for i in 0..30 {
        yaml += &format!("---\n{}\n", job_yaml(&format!("new-{i}"), &[], ""));
    }
    create(c, &ns, &yaml);
    for i in 0..10 {
        c.kubectl_ok(&[
            "patch",
            "caj",
            &format!("running-{i}"),
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"cancel":true}}"#,
        ]);
    }
    // Seconds, not minutes (and not "after the next resync", which is 5 minutes away).
    let settle = Duration::from_secs(30);
    for i in 0..30 {
        eventually(settle, &format!("new-{i} SUCCESS"), || async {
            (jobs.get(&format!("new-{i}")).await.ok()?.status?.status? == JobState::Success)
                .then_some(())
        })
        .await;
    }
    for i in 0..10 {
        eventually(settle, &format!("running-{i} CANCELED"), || async {
            (jobs
                .get(&format!("running-{i}"))
                .await
                .ok()?
                .status?
                .status?
                == JobState::Canceled)
                .then_some(())
        })
        .await;
    }
    println!(
        "every change handled {:?} after the API server returned",
        started.elapsed()
    );
    eventually(settle, "the shim ready again", || async {
        ready().then_some(())
    })
    .await;
    let restarts = op
        .metrics()
        .lines()
        .filter(|l| l.starts_with("cost_analysis_operator_watch_restarts_total{"))
        .count();
    assert!(restarts > 0, "no watch restart was counted");
}
