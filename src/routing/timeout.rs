//! Timeout layer: bounds one attempt; an elapsed deadline becomes `ProviderError::Timeout`.

use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::providers::ProviderError;

/// Fails an attempt that takes longer than `timeout`. Dropping the inner future cancels the
/// vendor request.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

/// Builds [`Timeout`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, timeout: self.timeout }
    }
}

// === impl Timeout ===

impl<S, R> Service<R> for Timeout<S>
where
    S: Service<R, Error = ProviderError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = ProviderError;
    type Future = BoxFuture<'static, Result<S::Response, ProviderError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let timeout = self.timeout;
        let fut = self.inner.call(req);
        Box::pin(async move {
            tokio::time::timeout(timeout, fut).await.map_err(|_| ProviderError::Timeout(timeout))?
        })
    }
}
