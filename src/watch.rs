//! How the operator's watches retry. kube's default backoff grows to 30 s, so after an outage of
//! a few seconds a watch could stay blind for half a minute more while the API server was back;
//! this one is capped at 1 s (0.5 to 1 s with jitter), so that a watch is back within about a
//! second of the API server (at 2 s the catalog caught up 5-6 s after it, a retry and a re-list
//! later); a down API server gets one cheap request per watch and second.

use std::time::Duration;

use kube::runtime::utils::Backoff;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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
