//! Passes over every cached job: on taking the lease, after a watch (re)list, and every resync
//! interval as the safety net under the watches.
//!
//! kube-runtime's scheduler runs due requests in the order they came due. Queued all at once,
//! 10,000 jobs put every deadline that fell due meanwhile behind them: deadline-to-TIMEOUT went
//! from 0.1 s to 12 s during a resync, and to 5-12 s in the first seconds after a failover. So a
//! pass sends the jobs most urgent first ([`crate::lifecycle::urgency`]: undecided jobs, then by
//! deadline, then by TTL expiry) and only as fast as the reconciler starts them, keeping at most a
//! couple of batches queued; a resync pass is also spread over half the interval.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::caches::{Hub, Ready};
use crate::lifecycle::{self, JobView};
use crate::resources::CostAnalysisJob;

/// Jobs sent to the scheduler at a time.
pub const BATCH: usize = 32;
/// The longest a pass waits for the reconciler to start the previous batch (a job already queued
/// by another trigger merges with the pass's request, so "started" can lag what was sent).
const STALL: Duration = Duration::from_millis(100);

/// Reconciles started so far: counted by the controller, watched by a pass for its pace.
#[derive(Clone)]
pub struct Started(Arc<watch::Sender<u64>>);

impl Default for Started {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Started {
    pub fn new(count: u64) -> Self {
        Started(Arc::new(watch::Sender::new(count)))
    }

    /// `n` more reconciles started.
    pub fn add(&self, n: u64) {
        self.0.send_modify(|count| *count = count.saturating_add(n));
    }

    pub fn count(&self) -> u64 {
        *self.0.borrow()
    }

    /// Resolves once at least `target` reconciles have started.
    async fn reached(&self, target: u64) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this ends only when the count gets there.
        let _ = rx.wait_for(|count| *count >= target).await;
    }
}

/// The jobs of `jobs` in the order a pass looks at them: the most urgent first.
pub fn order(
    jobs: &[Arc<CostAnalysisJob>],
    config: &lifecycle::Config,
) -> Vec<ObjectRef<CostAnalysisJob>> {
    let mut keyed: Vec<_> = jobs
        .iter()
        .map(|job| {
            // A job without a creation time cannot be decided; the reconcile says so, first.
            let urgency = JobView::of(job).map_or(DateTime::<Utc>::MIN_UTC, |view| {
                lifecycle::urgency(&view, config)
            });
            (urgency, ObjectRef::from_obj(job.as_ref()))
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// The least time between two batches of a pass over `jobs` jobs spread over `spread`.
pub fn batch_gap(jobs: usize, spread: Duration) -> Duration {
    let batches = u32::try_from(jobs.div_ceil(BATCH).max(1)).unwrap_or(u32::MAX);
    spread.checked_div(batches).unwrap_or_default()
}

/// `at + d`; durations here are at most a day, so the sum never overflows in practice.
fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).unwrap_or(at)
}

fn half(d: Duration) -> Duration {
    d.checked_div(2).unwrap_or(d)
}

struct Passes {
    jobs: Store<CostAnalysisJob>,
    ready: Ready,
    hub: Arc<Hub>,
    config: lifecycle::Config,
    started: Started,
    resync: Duration,
    next_resync: Instant,
    queue: std::vec::IntoIter<ObjectRef<CostAnalysisJob>>,
    gap: Duration,
    /// When the last batch went out, and the reconciler's count then.
    last: Option<(Instant, u64)>,
}

impl Passes {
    fn begin(&mut self, spread: Duration) {
        let jobs = self.jobs.state();
        self.gap = batch_gap(jobs.len(), spread);
        self.queue = order(&jobs, &self.config).into_iter();
        self.last = None;
        // The resync counts from the last pass that looked at everything.
        self.next_resync = after(Instant::now(), self.resync);
    }

    async fn next_batch(&mut self) -> Vec<ObjectRef<CostAnalysisJob>> {
        loop {
            // A pass requested while another runs follows it (the request is kept by the
            // `Notify`): restarting instead would let a watch that re-lists more often than a pass
            // takes keep the least urgent jobs, and the resync, from ever coming.
            if self.queue.len() > 0 {
                self.pace().await;
                let batch: Vec<_> = self.queue.by_ref().take(BATCH).collect();
                self.last = Some((Instant::now(), self.started.count()));
                return batch;
            }
            tokio::select! {
                () = self.hub.passes().notified() => self.begin_now().await,
                () = tokio::time::sleep_until(self.next_resync) => self.begin(half(self.resync)),
            }
        }
    }

    /// A requested pass: as fast as the reconciler goes, from the complete cache only (a
    /// standby's may still be listing when it takes the lease).
    async fn begin_now(&mut self) {
        self.ready.wait().await;
        self.begin(Duration::ZERO);
    }

    /// Waits until the reconciler has started as many reconciles as the last batch held (or
    /// [`STALL`] has passed), and at least the pass's gap since the last batch.
    async fn pace(&self) {
        let Some((at, count)) = self.last else {
            return;
        };
        let target = count.saturating_add(BATCH as u64);
        let _ = tokio::time::timeout_at(after(at, STALL), self.started.reached(target)).await;
        tokio::time::sleep_until(after(at, self.gap)).await;
    }
}

/// The jobs every pass asks the controller to look at, as one stream of requests. The first pass
/// starts when [`Hub::lead`] requests it.
pub fn stream(
    jobs: Store<CostAnalysisJob>,
    ready: Ready,
    hub: Arc<Hub>,
    config: lifecycle::Config,
    started: Started,
    resync: Duration,
) -> impl Stream<Item = ObjectRef<CostAnalysisJob>> + Send + 'static {
    let passes = Passes {
        jobs,
        ready,
        hub,
        config,
        started,
        resync,
        next_resync: after(Instant::now(), resync),
        queue: Vec::new().into_iter(),
        gap: Duration::ZERO,
        last: None,
    };
    futures::stream::unfold(passes, |mut p| async move {
        let batch = p.next_batch().await;
        Some((futures::stream::iter(batch), p))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use serde_json::{Value, json};

    fn job(name: &str, timeout: i64, status: Value) -> CostAnalysisJob {
        let mut o = json!({
            "apiVersion": "cost-analysis.spaceone.dev/v1", "kind": "CostAnalysisJob",
            "metadata": {"name": name, "namespace": "ns", "generation": 1,
                         "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"domainId": "d", "dataSourceId": "ds", "timeoutSeconds": timeout,
                     "tasks": [{"id": "t"}]},
        });
        if !status.is_null() {
            o["status"] = status;
        }
        serde_json::from_value(o).unwrap()
    }

    fn running() -> Value {
        json!({"status": "IN_PROGRESS", "observedGeneration": 1, "totalTasks": 1, "remainedTasks": 1})
    }

    fn names(refs: &[ObjectRef<CostAnalysisJob>]) -> Vec<&str> {
        refs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn the_most_urgent_jobs_come_first() {
        let done = json!({"status": "SUCCESS", "observedGeneration": 1, "totalTasks": 1,
                          "remainedTasks": 0, "finishedAt": "2024-01-01T00:00:05Z"});
        let jobs: Vec<Arc<CostAnalysisJob>> = [
            job("done", 60, done),
            job("late", 86_400, running()),
            job("soon", 30, running()),
            job("new", 86_400, Value::Null),
            job("sooner", 10, running()),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let order = order(&jobs, &lifecycle::Config::default());
        assert_eq!(names(&order), ["new", "sooner", "soon", "late", "done"]);
    }

    #[test]
    fn a_spread_pass_divides_its_time_between_batches() {
        assert_eq!(
            batch_gap(0, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            batch_gap(BATCH, Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            batch_gap(BATCH * 100, Duration::from_secs(10)),
            Duration::from_millis(100)
        );
        assert_eq!(batch_gap(BATCH * 100, Duration::ZERO), Duration::ZERO);
    }

    fn store_of(n: usize) -> Store<CostAnalysisJob> {
        let (reader, mut writer) = reflector::store();
        writer.apply_watcher_event(&Event::Init);
        for i in 0..n {
            writer.apply_watcher_event(&Event::InitApply(job(&format!("j{i:05}"), 60, running())));
        }
        writer.apply_watcher_event(&Event::InitDone);
        reader
    }

    /// With the reconciler starting nothing, a pass sends one batch per stall; as the reconciler
    /// starts them, the next batch follows at once.
    #[tokio::test(start_paused = true)]
    async fn a_pass_goes_at_the_reconcilers_pace() {
        let hub = Arc::new(Hub::default());
        let started = Started::default();
        let mut s = Box::pin(stream(
            store_of(BATCH * 3),
            Ready::now(),
            hub.clone(),
            lifecycle::Config::default(),
            started.clone(),
            Duration::from_secs(3600),
        ));
        let _rx = hub.lead();
        let t0 = Instant::now();
        for _ in 0..BATCH {
            s.next().await.unwrap();
        }
        assert_eq!(Instant::now(), t0, "the first batch goes at once");
        s.next().await.unwrap();
        assert!(
            Instant::now() >= t0 + STALL,
            "nothing started: waits out the stall"
        );
        for _ in 1..BATCH {
            s.next().await.unwrap();
        }
        let t1 = Instant::now();
        started.add(BATCH as u64 * 2);
        s.next().await.unwrap();
        assert!(
            Instant::now() < t1 + STALL / 2,
            "the reconciler kept up: no wait"
        );
    }

    /// A pass requested during another (a watch re-listed) runs once that one is done.
    #[tokio::test(start_paused = true)]
    async fn a_pass_requested_during_a_pass_follows_it() {
        let hub = Arc::new(Hub::default());
        let started = Started::new(u64::MAX / 2);
        let mut s = Box::pin(stream(
            store_of(BATCH * 2),
            Ready::now(),
            hub.clone(),
            lifecycle::Config::default(),
            started,
            Duration::from_secs(3600),
        ));
        let _rx = hub.lead();
        let first = s.next().await.unwrap();
        hub.send(crate::caches::Trigger::Pass);
        hub.send(crate::caches::Trigger::Pass);
        let mut sent = vec![first];
        for _ in 1..BATCH * 4 {
            sent.push(s.next().await.unwrap());
        }
        // Two whole passes, in the same order; the two requests made one.
        assert_eq!(sent[..BATCH * 2], sent[BATCH * 2..]);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), s.next())
                .await
                .is_err()
        );
    }

    /// The resync pass comes every interval and is spread over half of it; nothing is sent in
    /// between.
    #[tokio::test(start_paused = true)]
    async fn the_resync_is_spread_over_half_the_interval() {
        let hub = Arc::new(Hub::default());
        let started = Started::new(u64::MAX / 2);
        let resync = Duration::from_secs(100);
        let mut s = Box::pin(stream(
            store_of(BATCH * 4),
            Ready::now(),
            hub,
            lifecycle::Config::default(),
            started,
            resync,
        ));
        let t0 = Instant::now();
        let mut times = Vec::new();
        for _ in 0..BATCH * 4 {
            s.next().await.unwrap();
            times.push(Instant::now() - t0);
        }
        assert_eq!(times[0], resync);
        assert_eq!(times[BATCH], resync + resync / 2 / 4);
        assert_eq!(times[BATCH * 3], resync + resync / 2 * 3 / 4);
        // The next pass: an interval after the last one began.
        s.next().await.unwrap();
        assert_eq!(Instant::now() - t0, resync * 2);
    }
}
