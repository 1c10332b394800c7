//! How the operator's watches retry. kube's default backoff grows to 30 s, so after an outage of
//! a few seconds a watch could stay blind for half a minute more while the API server was back;
//! this one is capped at 1 s (0.5 to 1 s with jitter), which costs a down API server one cheap
//! request per watch and second. After an outage a watch starts over from a list (see [`watch`]),
//! which a restarted API server answers from etcd before its watch cache is ready.

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
///
/// After the API server was unreachable (see [`server_was_away`]) the watch starts over from a
/// list of the most recent state instead of resuming from its resourceVersion: a restarted API
/// server answers a resumed watch of a custom resource with "410 Gone" only after holding it for
/// 3 to 4 s, while a quorum list is answered from etcd as soon as it serves requests, before its
/// own watch cache is ready (docs/reliability.md, "Catching up after an API-server restart").
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
    let after_outage = watcher::Config {
        list_semantic: watcher::ListSemantic::MostRecent,
        ..config.clone()
    };
    let mut events = watcher::watcher(api.clone(), config).boxed();
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
            Some(Err(e)) => {
                if server_was_away(e) {
                    events = watcher::watcher(api.clone(), after_outage.clone()).boxed();
                }
                pause = backoff.next().map(|d| Box::pin(tokio::time::sleep(d)));
            }
            Some(Ok(watcher::Event::Init)) | None => {}
            Some(Ok(_)) => backoff.reset(),
        }
        Poll::Ready(item)
    })
}

/// Whether a watch error says the API server could not be reached or was not serving yet (a
/// connection refused or reset, a 503 while it starts): it may have restarted, and its watch
/// cache with it. A 429 is not one: a restarted server sends it while its watch cache fills,
/// after the list that follows an outage has already succeeded.
pub fn server_was_away(e: &watcher::Error) -> bool {
    use kube::Error as E;
    let client = match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(_) | watcher::Error::NoResourceVersion => return false,
    };
    match client {
        E::Api(status) => status.code == 503,
        E::HyperError(_) | E::Service(_) => true,
        _ => false,
    }
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

    fn status(code: u16) -> Box<kube::core::Status> {
        Box::new(kube::core::Status {
            code,
            ..Default::default()
        })
    }

    #[test]
    fn only_an_unreachable_or_starting_server_restarts_the_watch_from_a_list() {
        let refused = || kube::Error::Service("client error (Connect)".into());
        assert!(server_was_away(
            &watcher::Error::WatchStartFailed(refused())
        ));
        assert!(server_was_away(&watcher::Error::InitialListFailed(
            refused()
        )));
        assert!(server_was_away(&watcher::Error::WatchFailed(refused())));
        assert!(server_was_away(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(503))
        )));
        // Its watch cache filling: the list that follows an outage has been answered already.
        assert!(!server_was_away(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(429))
        )));
        assert!(!server_was_away(&watcher::Error::InitialListFailed(
            kube::Error::Api(status(403))
        )));
        // kube's watcher lists again after a 410 by itself.
        assert!(!server_was_away(&watcher::Error::WatchError(status(410))));
        assert!(!server_was_away(&watcher::Error::NoResourceVersion));
    }
}
