//! P6: timeouts of jobs in flight, and the same right after a failover (see load.rs).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cost_analysis_operator::resources::{CostAnalysisJob, JobStatus};
use futures::StreamExt;
use kube::{Api, Client};

use super::common::*;
use super::{ALLOWANCE, env, support};

/// Creates `k` probe jobs with deadlines spread at `rate` per second, `lead` seconds ahead;
/// returns each probe's name and deadline.
async fn probes(
    client: &Client,
    ns: &str,
    prefix: &str,
    k: usize,
    rate: usize,
    lead: i64,
    tasks: usize,
) -> Vec<(String, DateTime<Utc>)> {
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..k)
        .map(|i| {
            let jobs = jobs.clone();
            async move {
                let name = format!("{prefix}-{i:05}");
                let timeout = lead + (i / rate.max(1)) as i64;
                let job = create(&jobs, &job_object(&name, tasks, timeout, i)).await;
                let created = job.metadata.creation_timestamp.expect("created").0;
                let created =
                    DateTime::<Utc>::from_timestamp_millis(created.as_millisecond()).expect("t");
                let deadline = created
                    + chrono::Duration::seconds(timeout)
                    + chrono::Duration::from_std(ALLOWANCE).expect("allowance");
                (name, deadline)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// Waits until the controller has given every probe its first status, and says how long before
/// the first deadline that was: a deadline that comes while the controller still works through
/// the probes' creation measures that backlog, not the timeout path (then raise LOAD_P6_LEAD or
/// lower LOAD_P6_TIMEOUTS).
async fn probes_settled(seen: &Mutex<Seen>, probes: &[(String, DateTime<Utc>)]) {
    until(
        "every probe has a status",
        Duration::from_secs(1800),
        || {
            let s = seen.lock().unwrap();
            probes
                .iter()
                .all(|(n, _)| s.jobs.get(n).is_some_and(|o| o.status.is_some()))
        },
    )
    .await;
    let first = probes.iter().map(|(_, d)| *d).min().expect("probes");
    let margin = (first - Utc::now()).as_seconds_f64();
    println!("  every probe had its first status {margin:.1} s before the first deadline");
    if margin < 0.0 {
        println!(
            "  WARNING: the deadlines came during the probes' creation backlog; raise LOAD_P6_LEAD"
        );
    }
}

/// Waits for every probe to be TIMEOUT; prints the delays from deadline to `finishedAt` and to
/// the bench's watch seeing it (seconds).
async fn timeout_delays(seen: &Mutex<Seen>, probes: &[(String, DateTime<Utc>)], what: &str) {
    until("every probe terminal", Duration::from_secs(1800), || {
        let s = seen.lock().unwrap();
        probes
            .iter()
            .all(|(n, _)| s.jobs.get(n).is_some_and(|o| o.terminal.is_some()))
    })
    .await;
    // The status with finishedAt arrives with the terminal state (one write).
    let s = seen.lock().unwrap();
    let (mut by_status, mut by_watch) = (Vec::new(), Vec::new());
    for (n, deadline) in probes {
        let o = &s.jobs[n];
        let (state, at) = o.terminal.expect("terminal");
        assert_eq!(state, JobStatus::Timeout, "{n}");
        let finished = o
            .status
            .as_ref()
            .and_then(|s| s.finished_at)
            .expect("finishedAt");
        by_status.push((finished - *deadline).as_seconds_f64());
        let at: DateTime<Utc> = at.into();
        by_watch.push((at - *deadline).as_seconds_f64());
    }
    let early = by_status.iter().filter(|d| **d < 0.0).count();
    assert_eq!(early, 0, "{what}: a job timed out before its deadline");
    println!(
        "P6 {what}: deadline -> finishedAt (s): {}",
        summary(&mut by_status)
    );
    println!(
        "P6 {what}: deadline -> seen by a watch (s): {}",
        summary(&mut by_watch)
    );
}

/// Returns the namespace, the controller now leading it and how many jobs `bg-*` are in flight.
pub async fn p6(
    c: &'static support::Cluster,
    client: &Client,
    measure: bool,
) -> (String, Proc, usize) {
    let n = env("LOAD_P6_JOBS", 10_000);
    let k = env("LOAD_P6_TIMEOUTS", 1_000).min(n / 2);
    let rate = env("LOAD_P6_RATE", 20);
    let tasks = env("LOAD_P6_TASKS", 1);
    let lead = env("LOAD_P6_LEAD", 60) as i64;
    let failover_lead = env("LOAD_P6_FAILOVER_LEAD", 5) as u64;
    let ns = c.namespace("load-p6");
    let lease = format!("load-p6-{}", std::process::id());
    let mut a = Proc::controller(c, &ns, "p6-a", &lease);
    tokio::task::block_in_place(|| {
        support::wait_for_leader_of(c, &lease, "p6-a", Duration::from_secs(60))
    });
    let b = Proc::controller(c, &ns, "p6-b", &lease);
    let seen = watch_jobs(Api::namespaced(client.clone(), &ns));
    let background = if measure { n - k } else { n };
    println!(
        "== P6: {n} jobs x {tasks} task in flight ({background} with a 1-day timeout), {k} timing out at {rate}/s, then {k} more right after a failover"
    );
    let jobs: Api<CostAnalysisJob> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    futures::stream::iter(0..background)
        .map(|i| {
            let jobs = jobs.clone();
            async move { create(&jobs, &job_object(&format!("bg-{i:06}"), tasks, 86_400, i)).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    until(
        "every background job has a status",
        Duration::from_secs(1800),
        || {
            seen.lock()
                .unwrap()
                .jobs
                .values()
                .filter(|o| o.status.is_some())
                .count()
                >= background
        },
    )
    .await;
    println!(
        "  {background} jobs created and given a status in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if !measure {
        return (ns, b, background);
    }
    settle(&c.dir).await;
    let normal = probes(client, &ns, "tm", k, rate, lead, tasks).await;
    probes_settled(&seen, &normal).await;
    timeout_delays(&seen, &normal, "normal").await;

    // Failover: the leader is killed shortly before the first deadline of a new batch.
    settle(&c.dir).await;
    let batch = probes(client, &ns, "fo", k, rate, lead, tasks).await;
    probes_settled(&seen, &batch).await;
    let first = batch.iter().map(|(_, d)| *d).min().expect("probes");
    let kill_at = first - chrono::Duration::seconds(failover_lead as i64);
    let wait = (kill_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let killed = Instant::now();
    let _ = a.child.kill();
    let _ = a.child.wait();
    tokio::task::block_in_place(|| {
        support::wait_for_leader_of(c, &lease, "p6-b", Duration::from_secs(60))
    });
    println!(
        "  leader SIGKILLed {:.1} s before the first deadline; the standby held the lease {:.1} s later",
        (first - Utc::now()).as_seconds_f64() + killed.elapsed().as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    drop(a);
    timeout_delays(&seen, &batch, "after a failover").await;
    assert_eq!(
        seen.lock().unwrap().flips,
        0,
        "a job was seen in two terminal states"
    );
    (ns, b, background)
}
