//! Where queries run: a bounded set of blocking threads, never the async workers. Health checks,
//! lease renewal and the watch keep their threads however heavy the queries are; a request that
//! finds every slot taken waits a little and is then turned away as overload.

use std::sync::Arc;
use std::time::Duration;

use spaceone_query::{Cancel, Limits};
use tokio::sync::Semaphore;

/// Why a query did not run to an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolError {
    /// Every slot stayed taken for the whole queue wait.
    Busy,
    /// The evaluation panicked; the panic was contained to this request.
    Panicked,
}

#[derive(Clone, Debug)]
pub struct PoolLimits {
    /// Queries evaluated at once.
    pub max_concurrent: usize,
    /// How long a request waits for a slot before it is answered as overload.
    pub queue_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_concurrent: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            queue_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct QueryPool {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    panics: prometheus_client::metrics::counter::Counter,
    rejected: prometheus_client::metrics::counter::Counter,
}

impl QueryPool {
    pub fn new(limits: &PoolLimits, metrics: &crate::metrics::Metrics) -> Self {
        QueryPool {
            slots: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            queue_timeout: limits.queue_timeout,
            panics: metrics.request_panics.clone(),
            rejected: metrics.api_overloaded.clone(),
        }
    }

    /// Runs `f` on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        let Some(slot) = slot else {
            self.rejected.inc();
            return Err(PoolError::Busy);
        };
        let answer = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            f()
        })
        .await;
        answer.map_err(|e| {
            if e.is_panic() {
                self.panics.inc();
                tracing::error!("a query panicked; answered as an internal error");
            }
            PoolError::Panicked
        })
    }
}

/// A request's own copy of `limits` with a fresh cancel token, and the guard that fires it.
/// Keep the guard in the request's future: when the request ends or its future is dropped
/// unfinished (the request timeout, a client gone), a query still running on the pool stops at
/// its next check and gives its slot back, instead of holding it for up to its own time limit.
pub fn cancellable(limits: &Limits) -> (Arc<Limits>, CancelOnDrop) {
    let cancel = Cancel::new();
    let limits = Limits {
        cancel: Some(cancel.clone()),
        ..limits.clone()
    };
    (Arc::new(limits), CancelOnDrop(cancel))
}

/// Cancels its token when dropped.
pub struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, wait_ms: u64) -> (QueryPool, crate::metrics::Metrics) {
        let metrics = crate::metrics::Metrics::default();
        let limits = PoolLimits {
            max_concurrent: n,
            queue_timeout: Duration::from_millis(wait_ms),
        };
        (QueryPool::new(&limits, &metrics), metrics)
    }

    #[tokio::test]
    async fn a_panicking_query_is_contained_and_counted() {
        let (pool, metrics) = pool(1, 100);
        let r: Result<(), _> = pool.run(|| panic!("boom")).await;
        assert_eq!(r, Err(PoolError::Panicked));
        assert_eq!(metrics.request_panics.get(), 1);
        // The slot came back: the pool still answers.
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_full_pool_turns_requests_away_after_the_queue_wait() {
        let (pool, metrics) = pool(1, 50);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let busy = pool.clone();
        let holder = tokio::spawn(async move {
            busy.run(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().ok();
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        assert_eq!(pool.run(|| ()).await, Err(PoolError::Busy));
        assert_eq!(metrics.api_overloaded.get(), 1);
        release_tx.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), Ok(()));
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }

    /// A request that times out while its query runs frees the slot at once: the query sees its
    /// token cancelled, not its own (here: an hour's) time limit.
    #[tokio::test]
    async fn a_request_dropped_while_its_query_runs_frees_the_slot() {
        let (pool, _) = pool(1, 20_000);
        let slow = Limits {
            max_time: Duration::from_secs(3600),
            ..Limits::default()
        };
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let request = {
            let pool = pool.clone();
            async move {
                let (limits, _stop) = cancellable(&slow);
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    let cancel = limits.cancel.clone().unwrap();
                    let since = std::time::Instant::now();
                    while !cancel.is_cancelled() && since.elapsed() < Duration::from_secs(30) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    done_tx.send(cancel.is_cancelled()).unwrap();
                })
                .await
            }
        };
        let timed_out =
            tokio::spawn(
                async move { tokio::time::timeout(Duration::from_millis(100), request).await },
            );
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        assert!(timed_out.await.unwrap().is_err(), "the request timed out");
        let cancelled =
            tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(20)))
                .await
                .unwrap();
        assert_eq!(cancelled, Ok(true), "the query saw its request end");
        assert_eq!(pool.run(|| 1).await, Ok(1), "and its slot is free");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_async_thread_stays_free_while_queries_run() {
        let (pool, _) = pool(2, 1000);
        let slow = pool.clone();
        let heavy = tokio::spawn(async move {
            slow.run(|| std::thread::sleep(Duration::from_millis(300)))
                .await
        });
        // On a single async thread this only completes if the heavy query is elsewhere.
        let ticks = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            true
        };
        let done_first = tokio::select! {
            t = ticks => t,
            _ = tokio::time::sleep(Duration::from_millis(250)) => false,
        };
        assert!(done_first);
        assert_eq!(heavy.await.unwrap(), Ok(()));
    }
}
