//! Retry layer: retries `ErrorClass::Retryable` failures at the same provider with exponential
//! backoff and full jitter, honours `Retry-After`, and spends from a retry budget so a failing
//! vendor is not hammered with retries.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng as _;
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Layer, Service, ServiceExt};

use super::config::RetryParams;
use crate::providers::{ErrorClass, ProviderError};

/// Window over which the retry budget counts requests.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Retries one request at the inner service.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    params: RetryParams,
    budget: Arc<TpsBudget>,
}

/// Builds [`Retry`]; services built from one layer share one budget.
#[derive(Clone)]
pub struct RetryLayer {
    params: RetryParams,
    budget: Arc<TpsBudget>,
}

impl RetryLayer {
    pub fn new(params: RetryParams) -> Self {
        let budget = TpsBudget::new(BUDGET_WINDOW, params.min_retries_per_sec, params.budget_ratio);
        Self { params, budget: Arc::new(budget) }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry { inner, params: self.params, budget: self.budget.clone() }
    }
}

/// The delay before retry number `retry` (1-based): the server's `Retry-After` if it gave one,
/// else uniform in `0..=min(max, base * 2^(retry-1))` ("full jitter"). `None`: the server asks
/// for longer than we are willing to wait, so the chain should move on.
pub fn backoff(params: &RetryParams, retry: u32, error: &ProviderError) -> Option<Duration> {
    if let Some(after) = error.retry_after() {
        return (after <= params.max_delay).then_some(after);
    }
    let factor = 2u32.saturating_pow(retry.saturating_sub(1));
    let cap = params.base_delay.saturating_mul(factor).min(params.max_delay);
    let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Some(Duration::from_millis(rand::rng().random_range(0..=cap_ms)))
}

// === impl Retry ===

impl<S, R> Service<R> for Retry<S>
where
    S: Service<R, Error = ProviderError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    R: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = ProviderError;
    type Future = BoxFuture<'static, Result<S::Response, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        // Each attempt waits for the inner service's readiness itself (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        let inner = self.inner.clone();
        let params = self.params;
        let budget = self.budget.clone();
        Box::pin(async move {
            budget.deposit();
            let mut attempt = 1;
            let mut previous: Option<ProviderError> = None;
            loop {
                let error = match inner.clone().oneshot(req.clone()).await {
                    Ok(answer) => return Ok(answer),
                    // The circuit opened after an earlier attempt failed: that failure is the
                    // answer (`CircuitOpen` out of the stack means no call was made at all).
                    Err(ProviderError::CircuitOpen) => return Err(previous.unwrap_or(ProviderError::CircuitOpen)),
                    // Likewise when no concurrency slot freed up for the retry.
                    Err(e @ ProviderError::Saturated { .. }) => return Err(previous.unwrap_or(e)),
                    Err(e) => e,
                };
                if error.class() != ErrorClass::Retryable || attempt >= params.max_attempts {
                    return Err(error);
                }
                let Some(delay) = backoff(&params, attempt, &error) else {
                    tracing::debug!(error = %error, "Retry-After beyond max_delay; not retrying");
                    return Err(error);
                };
                if !budget.withdraw() {
                    tracing::debug!(error = %error, "Retry budget exhausted; not retrying");
                    return Err(error);
                }
                tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "Retrying provider");
                tokio::time::sleep(delay).await;
                previous = Some(error);
                attempt += 1;
            }
        })
    }
}
