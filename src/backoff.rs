//! How the operator's watches retry. kube's default backoff grows to 30 s, so after an outage of
//! a few seconds a watch could stay blind for half a minute more while the API server was back;
//! this one is capped at 1 s (0.5 to 1 s with jitter), which costs a down API server one cheap
//! request per watch and second. What remains after the API server's return is its own: it
//! answers a watch or a list of the custom resources only once their watch cache is ready, about
//! 5 s after it started in the outage test (docs/reliability.md).

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;

const FIRST: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct WatchBackoff {
    attempt: u32,
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = FIRST
            .checked_mul(2u32.saturating_pow(self.attempt.min(8)))
            .unwrap_or(CAP)
            .min(CAP);
        self.attempt = self.attempt.saturating_add(1);
        // 50 % to 100 % of the step, so that many watches do not retry in lockstep.
        Some(base.mul_f64(0.5 + rand::random::<f64>() / 2.0))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A watch of `api` that retries with [`WatchBackoff`], reset by progress only: the `Init` that
/// opens every list attempt is none (with kube's `StreamBackoff` a list failing over and over was
/// retried at the first step, five times a second, for ever).
pub fn watch<K>(
    api: kube::Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    use std::future::Future;
    use std::task::Poll;
    let mut events = watcher::watcher(api, config).boxed();
    let mut backoff = WatchBackoff::default();
    let mut pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    futures::stream::poll_fn(move |cx| {
        if let Some(p) = pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            pause = None;
        }
        let item = match events.poll_next_unpin(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        match &item {
            Some(Err(_)) => pause = backoff.next().map(|d| Box::pin(tokio::time::sleep(d))),
            Some(Ok(watcher::Event::Init)) | None => {}
            Some(Ok(_)) => backoff.reset(),
        }
        Poll::Ready(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_one_second_and_resets() {
        let mut b = WatchBackoff::default();
        let first = b.next().unwrap();
        assert!(first >= Duration::from_millis(100) && first <= FIRST);
        let later: Vec<Duration> = (0..20).filter_map(|_| b.next()).collect();
        assert!(later.iter().all(|d| *d <= CAP));
        assert!(later.last().unwrap() >= &Duration::from_millis(500));
        b.reset();
        assert!(b.next().unwrap() <= FIRST);
    }
}
