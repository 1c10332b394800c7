//! Unit tests of the controller's pure helpers.
use super::{ReconcileError, backoff_delay, contain};
use crate::metrics::Metrics;
use std::time::Duration;

#[tokio::test]
async fn a_panicking_reconcile_is_contained_counted_and_retried() {
    let metrics = Metrics::default();
    let r: Result<(), ReconcileError> = contain(async { panic!("boom") }, &metrics).await;
    assert!(matches!(r, Err(ReconcileError::Panicked)));
    assert_eq!(metrics.reconcile_panics.get(), 1);
    assert_eq!(ReconcileError::Panicked.label(), "panic");
    let ok: Result<u8, ReconcileError> = contain(async { Ok(3) }, &metrics).await;
    assert_eq!(ok.ok(), Some(3));
    assert_eq!(metrics.reconcile_panics.get(), 1);
}

#[test]
fn backoff_grows_and_is_capped_with_jitter() {
    assert_eq!(backoff_delay(1, 0.5), Duration::from_millis(500));
    assert_eq!(backoff_delay(2, 0.5), Duration::from_secs(1));
    assert_eq!(backoff_delay(4, 0.5), Duration::from_secs(4));
    assert_eq!(backoff_delay(100, 0.5), Duration::from_secs(300));
    assert_eq!(backoff_delay(1, 0.0), Duration::from_millis(250));
    assert!(backoff_delay(1, 0.999) < Duration::from_millis(750));
}
