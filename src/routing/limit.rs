//! Concurrency limit layer: at most N calls in flight at one provider; the wait for a slot
//! happens inside the call future, so the timeout layer around it bounds the wait too.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

use crate::providers::ProviderError;

/// Holds a semaphore permit for the whole inner call.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

/// Builds [`ConcurrencyLimit`]; services built from one layer share its permits.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    pub fn new(max_in_flight: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_in_flight.max(1))) }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit { inner, permits: self.permits.clone() }
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
        Box::pin(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| ProviderError::Unavailable("concurrency limiter closed".into()))?;
            inner.oneshot(req).await
        })
    }
}
