//! Concurrency limit layer: at most N calls in flight at one provider. The wait for a slot is
//! bounded by `max_wait`; past it the call ends with `ProviderError::Saturated` without reaching
//! the provider. The layer sits outside the breaker, so a wait (our own congestion) is never
//! counted as the provider failing.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

use crate::providers::ProviderError;

/// Holds a semaphore permit for the whole inner call.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
    limit: usize,
    max_wait: Duration,
}

/// Builds [`ConcurrencyLimit`]; services built from one layer share its permits.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    max_wait: Duration,
}

impl ConcurrencyLimitLayer {
    /// At most `max_in_flight` calls at once; a call waits at most `max_wait` for a slot.
    pub fn new(max_in_flight: usize, max_wait: Duration) -> Self {
        let limit = max_in_flight.max(1);
        Self { permits: Arc::new(Semaphore::new(limit)), limit, max_wait }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit { inner, permits: self.permits.clone(), limit: self.limit, max_wait: self.max_wait }
    }
}

// === impl ConcurrencyLimit ===

impl<S, R> Service<R> for ConcurrencyLimit<S>
where
    S: Service<R, Error = ProviderError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = ProviderError;
    type Future = BoxFuture<'static, Result<S::Response, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        // Readiness is decided per call, after the permit (see `call`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let permits = self.permits.clone();
        let inner = self.inner.clone();
        let (limit, max_wait) = (self.limit, self.max_wait);
        Box::pin(async move {
            let _permit = match tokio::time::timeout(max_wait, permits.acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(ProviderError::Unavailable("concurrency limiter closed".into())),
                Err(_) => return Err(ProviderError::Saturated { waited: max_wait, limit }),
            };
            inner.oneshot(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::service_fn;

    /// A held slot makes the next call wait, then end as `Saturated` (never calling inner).
    #[tokio::test(start_paused = true)]
    async fn a_wait_past_max_wait_is_saturated_without_a_call() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let (release, hold) = tokio::sync::oneshot::channel::<()>();
        let hold = Arc::new(tokio::sync::Mutex::new(Some(hold)));
        let svc = service_fn(move |_: ()| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let hold = hold.clone();
            async move {
                let first = hold.lock().await.take();
                if let Some(rx) = first {
                    let _ = rx.await;
                }
                Ok::<_, ProviderError>(())
            }
        });
        let svc = ConcurrencyLimitLayer::new(1, Duration::from_millis(500)).layer(svc);
        let first = tokio::spawn(svc.clone().oneshot(()));
        tokio::task::yield_now().await;
        let second = svc.clone().oneshot(()).await;
        assert!(matches!(second, Err(ProviderError::Saturated { limit: 1, .. })), "{second:?}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the waiting call never reached the provider");
        release.send(()).expect("first call still waiting");
        first.await.expect("join").expect("first call answers");
        // The slot is free again: the next call goes through.
        svc.oneshot(()).await.expect("free slot");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
