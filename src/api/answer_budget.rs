//! Bytes of answers in flight. An answer is built on the query pool, so at most
//! `--max-concurrent-queries` are being built at once; once built it waits to be sent, and a slow
//! or many readers of large answers (a `distinct` of every job's options is tens of MB) would hold
//! them all in memory at once. Each answer reserves its encoded size here before it leaves the
//! pool and gives it back when its response body has been sent or dropped. An answer that finds
//! the budget taken waits up to the queue timeout, then is answered `ERROR_UNAVAILAVBLE`; one
//! larger than the whole budget is refused `ERROR_DB_QUERY`, as MongoDB refuses a result over its
//! document limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ServiceError;

/// Budget units are KiB, so that a semaphore's `u32` permits cover up to 4 TiB.
const UNIT: usize = 1024;

#[derive(Clone, Debug)]
pub struct AnswerBudget {
    permits: Arc<Semaphore>,
    max_bytes: usize,
    wait: Duration,
}

/// An answer's share of the budget, held until its body is gone.
#[derive(Debug)]
pub struct AnswerPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl AnswerBudget {
    pub fn new(max_bytes: usize, wait: Duration) -> Self {
        let units = max_bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        AnswerBudget {
            permits: Arc::new(Semaphore::new(units)),
            max_bytes: units.saturating_mul(UNIT),
            wait,
        }
    }

    /// Reserves `bytes` of the budget, waiting for other answers to be sent if need be.
    pub async fn reserve(&self, bytes: usize) -> Result<AnswerPermit, ServiceError> {
        if bytes > self.max_bytes {
            return Err(ServiceError::SpaceOne(spaceone_query::Error::db_query(
                format_args!(
                    "the answer of {bytes} bytes exceeds max_answer_bytes = {}",
                    self.max_bytes
                ),
            )));
        }
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        let permit =
            tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(units))
                .await
                .ok()
                .and_then(Result::ok);
        permit.map(AnswerPermit).ok_or_else(|| {
            ServiceError::Unavailable(format!(
                "answers of more than {} bytes are being sent; retry later",
                self.max_bytes
            ))
        })
    }

    /// Bytes not reserved now.
    pub fn available(&self) -> usize {
        self.permits.available_permits().saturating_mul(UNIT)
    }
}

/// Where a handler leaves its answer's permit for [`hold_until_sent`] to attach to the body.
#[derive(Clone, Default, Debug)]
pub struct PermitSlot(Arc<Mutex<Option<AnswerPermit>>>);

impl PermitSlot {
    pub fn put(&self, permit: AnswerPermit) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(permit);
        }
    }

    fn take(&self) -> Option<AnswerPermit> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Middleware: gives each request a [`PermitSlot`] and keeps whatever permit its handler left
/// there alive until the response body has been sent (or the connection dropped it).
pub async fn hold_until_sent(mut request: Request, next: Next) -> Response {
    let slot = PermitSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    match slot.take() {
        None => response,
        Some(permit) => response.map(|body| {
            axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                let _ = &permit;
                frame
            }))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_wait_for_the_budget_and_the_oversized_are_refused() {
        let budget = AnswerBudget::new(10 * UNIT, Duration::from_millis(50));
        let big = budget.reserve(8 * UNIT).await.unwrap();
        assert_eq!(budget.available(), 2 * UNIT);
        let busy = budget.reserve(4 * UNIT).await.unwrap_err();
        assert_eq!(busy.spaceone().code, "ERROR_UNAVAILAVBLE");
        drop(big);
        assert!(budget.reserve(4 * UNIT).await.is_ok());
        let too_big = budget.reserve(11 * UNIT).await.unwrap_err().spaceone();
        assert_eq!(too_big.code, "ERROR_DB_QUERY");
        assert!(
            too_big.message.contains("max_answer_bytes"),
            "{}",
            too_big.message
        );
    }

    #[tokio::test]
    async fn the_permit_lives_until_the_body_is_consumed() {
        use axum::routing::get;
        use tower::ServiceExt;
        let budget = AnswerBudget::new(4 * UNIT, Duration::from_millis(50));
        let b = budget.clone();
        let app = axum::Router::new()
            .route(
                "/",
                get(
                    move |axum::Extension(slot): axum::Extension<PermitSlot>| async move {
                        slot.put(b.reserve(3 * UNIT).await.unwrap());
                        "answer"
                    },
                ),
            )
            .layer(axum::middleware::from_fn(hold_until_sent));
        let response = app
            .oneshot(
                Request::builder()
                    .uri("/")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(budget.available(), UNIT, "held while the body is unsent");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        assert_eq!(&body.to_bytes()[..], b"answer");
        assert_eq!(budget.available(), 4 * UNIT, "given back once sent");
    }
}
