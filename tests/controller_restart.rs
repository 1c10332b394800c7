//! Controllers that die, restart and compete for the lease. These tests start and kill their own
//! controller processes, so they take turns (one lock) instead of sharing one controller.

mod support;

use std::time::Duration;

use cost_analysis_operator::resources::{CostAnalysisJob, JobStatus};
use kube::Api;
use support::{
    Cluster, Operator, cluster, create, eventually, job_yaml, lease_holder, report, wait_for_leader,
};
use tokio::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::const_new(());
const WAIT: Duration = Duration::from_secs(40);

async fn state(api: &Api<CostAnalysisJob>, name: &str) -> Option<JobStatus> {
    api.get(name).await.ok()?.status?.status
}

async fn wait_state(api: &Api<CostAnalysisJob>, name: &str, want: JobStatus) {
    eventually(WAIT, &format!("{name} {}", want.as_str()), || async {
        (state(api, name).await? == want).then_some(())
    })
    .await;
}

fn task_exists(c: &Cluster, ns: &str, name: &str) -> bool {
    c.kubectl(&["get", "cajt", name, "-n", ns]).status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_mid_job_is_replaced_and_finishes_correctly() {
    let _turn = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("restart");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(c.client().await, &ns);

    let mut first = Operator::start(c, "restart-a", &[]);
    wait_for_leader(c, "restart-a", Duration::from_secs(60));
    create(c, &ns, &job_yaml("job-r1", &["a", "b"], ""));
    create(c, &ns, &job_yaml("job-r2", &["a"], "  timeoutSeconds: 6\n"));
    eventually(WAIT, "tasks created", || async {
        (task_exists(c, &ns, "job-r1.b") && task_exists(c, &ns, "job-r2.a")).then_some(())
    })
    .await;
    report(c, &ns, "job-r1.a", "SUCCESS");
    eventually(WAIT, "job-r1 remained 1", || async {
        (jobs.get("job-r1").await.ok()?.status?.remained_tasks == 1).then_some(())
    })
    .await;

    first.kill();
    // While no controller runs: the last task finishes, and job-r2's deadline passes.
    report(c, &ns, "job-r1.b", "SUCCESS");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(state(&jobs, "job-r1").await, Some(JobStatus::InProgress));
    assert_eq!(state(&jobs, "job-r2").await, Some(JobStatus::InProgress));

    let mut second = Operator::start(c, "restart-b", &[]);
    wait_for_leader(c, "restart-b", Duration::from_secs(60));
    wait_state(&jobs, "job-r1", JobStatus::Success).await;
    wait_state(&jobs, "job-r2", JobStatus::Timeout).await;
    let r1 = jobs.get("job-r1").await.expect("job-r1");
    assert_eq!(r1.status.map(|s| s.remained_tasks), Some(0));
    second.terminate();
    // A graceful stop hands the lease back at once.
    eventually(
        Duration::from_secs(10),
        "the lease to be released",
        || async { (lease_holder(c).as_deref() != Some("restart-b")).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_replicas_exactly_one_acts_and_the_other_takes_over() {
    let _turn = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("leader");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(c.client().await, &ns);

    let mut x = Operator::start(c, "replica-x", &[]);
    let mut y = Operator::start(c, "replica-y", &[]);
    let holder = eventually(Duration::from_secs(60), "a leader", || async {
        lease_holder(c).filter(|h| h == "replica-x" || h == "replica-y")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaders: Vec<bool> = [&x, &y]
        .iter()
        .map(|op| {
            op.metrics()
                .lines()
                .any(|l| l == "cost_analysis_operator_leader 1")
        })
        .collect();
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "leader gauges: {leaders:?}"
    );

    create(c, &ns, &job_yaml("job-l1", &[], ""));
    wait_state(&jobs, "job-l1", JobStatus::Success).await;

    // Under heavy load the lease can change hands on its own (a replica that misses its renewal
    // exits, as it must, and its Deployment would start it again): kill whoever holds it now,
    // and restart the standby first if it is the one that already gave up.
    let holder = lease_holder(c).unwrap_or(holder);
    let (leader, standby) = if holder == "replica-x" {
        (&mut x, &mut y)
    } else {
        (&mut y, &mut x)
    };
    if standby.child.try_wait().ok().flatten().is_some() {
        let identity = standby.identity.clone();
        *standby = Operator::start(c, &identity, &[]);
    }
    // The standby made no write while it waited.
    for counter in [
        "cost_analysis_operator_status_writes_total",
        "cost_analysis_operator_task_creates_total",
        "cost_analysis_operator_reconciles_total",
    ] {
        assert_eq!(metric(standby, counter), 0, "the standby wrote: {counter}");
    }
    let killed = std::time::Instant::now();
    leader.kill();
    wait_for_leader(c, &standby.identity, Duration::from_secs(60));
    let took_over = killed.elapsed();
    create(c, &ns, &job_yaml("job-l2", &[], ""));
    wait_state(&jobs, "job-l2", JobStatus::Success).await;
    // Measured, not asserted tightly (shared CI cores): the lease is 3 s in these tests, so
    // the takeover is expected within about 4 s. docs/reliability.md records the figure.
    println!(
        "standby took the lease {took_over:?} after the leader was killed; acted {:?} after",
        killed.elapsed()
    );
    assert!(
        took_over < Duration::from_secs(20),
        "takeover took {took_over:?}"
    );
    x.terminate();
    y.terminate();
}

fn metric(op: &Operator, name: &str) -> u64 {
    op.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn event_count(c: &Cluster, ns: &str) -> usize {
    c.kubectl_ok(&["get", "events", "-n", ns, "-o", "name"])
        .lines()
        .count()
}

/// Issue 10, item 1: tasks that finished before the deadline while no controller ran make their
/// jobs SUCCESS however late the controller comes back (it waits for its task cache instead of
/// deciding from a partial view), and a restart over settled jobs writes nothing and says nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_decides_from_a_full_view_and_leaves_settled_jobs_alone() {
    let _turn = SERIAL.lock().await;
    let c = cluster();
    let ns = c.namespace("fullview");
    let jobs: Api<CostAnalysisJob> = Api::namespaced(c.client().await, &ns);
    const N: usize = 30;

    let mut first = Operator::start(c, "fullview-a", &[]);
    wait_for_leader(c, "fullview-a", Duration::from_secs(60));
    let mut yaml = String::new();
    for i in 0..N {
        yaml += "---\n";
        yaml += &job_yaml(
            &format!("late-{i}"),
            &["a", "b", "c"],
            "  timeoutSeconds: 25\n",
        );
        yaml += "\n---\n";
        yaml += &job_yaml(&format!("done-{i}"), &["a"], "");
        yaml += "\n";
    }
    create(c, &ns, &yaml);
    eventually(WAIT, "every task created", || async {
        let out = c.kubectl(&["get", "cajt", "-n", &ns, "-o", "name"]);
        (String::from_utf8_lossy(&out.stdout).lines().count() == 4 * N).then_some(())
    })
    .await;
    // The done-* jobs settle while the first controller runs.
    for i in 0..N {
        report(c, &ns, &format!("done-{i}.a"), "SUCCESS");
    }
    for i in 0..N {
        wait_state(&jobs, &format!("done-{i}"), JobStatus::Success).await;
    }
    first.kill();
    // While no controller runs, every task of the late-* jobs finishes before their deadline,
    // and the deadline passes.
    for i in 0..N {
        for t in ["a", "b", "c"] {
            report(c, &ns, &format!("late-{i}.{t}"), "SUCCESS");
        }
    }
    eventually(Duration::from_secs(60), "the deadline to pass", || async {
        let j = jobs.get("late-0").await.ok()?;
        let created = j.metadata.creation_timestamp?.0.as_second();
        (chrono::Utc::now().timestamp() > created + 27).then_some(())
    })
    .await;
    let events_before = event_count(c, &ns);
    let versions = |names: Vec<String>| {
        let jobs = jobs.clone();
        async move {
            let mut out = Vec::new();
            for n in names {
                let rv = jobs.get(&n).await.unwrap().metadata.resource_version;
                out.push((n, rv));
            }
            out
        }
    };
    let done: Vec<String> = (0..N).map(|i| format!("done-{i}")).collect();
    let all: Vec<String> = (0..N)
        .map(|i| format!("late-{i}"))
        .chain(done.clone())
        .collect();
    let settled_before = versions(done.clone()).await;

    let second = Operator::start(c, "fullview-b", &[]);
    wait_for_leader(c, "fullview-b", Duration::from_secs(60));
    for i in 0..N {
        wait_state(&jobs, &format!("late-{i}"), JobStatus::Success).await;
        let s = jobs
            .get(&format!("late-{i}"))
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!((s.remained_tasks, s.total_tasks), (0, 3), "late-{i}");
    }
    // Let the second controller look at everything, then see what it wrote: the settled jobs'
    // resourceVersions have not moved (the controller watches every namespace, so its metrics
    // also count other tests' jobs).
    eventually(WAIT, "every job reconciled", || async {
        (metric(&second, "cost_analysis_operator_reconciles_total") >= 2 * N as u64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        versions(done.clone()).await,
        settled_before,
        "settled jobs were rewritten"
    );
    for i in 0..N {
        let s = jobs
            .get(&format!("done-{i}"))
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!((s.status, s.remained_tasks), (Some(JobStatus::Success), 0));
    }
    // N Succeeded events for the late jobs, nothing for the settled ones (no TasksCreated).
    eventually(WAIT, "the transition events", || async {
        (event_count(c, &ns) >= events_before + N).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(event_count(c, &ns), events_before + N);

    // A third controller over only settled jobs: no write, no event.
    let mut second = second;
    second.kill();
    let all_before = versions(all.clone()).await;
    let third = Operator::start(c, "fullview-c", &[]);
    wait_for_leader(c, "fullview-c", Duration::from_secs(60));
    eventually(WAIT, "every job reconciled again", || async {
        (metric(&third, "cost_analysis_operator_reconciles_total") >= 2 * N as u64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        versions(all).await,
        all_before,
        "a restart over settled jobs wrote"
    );
    let tasks = c.kubectl_ok(&["get", "cajt", "-n", &ns, "-o", "name"]);
    assert_eq!(tasks.lines().count(), 4 * N);
    assert_eq!(event_count(c, &ns), events_before + N);
}
