//! Attempt recording layer: every attempt that reached the provider (or timed out) is appended to
//! the request's [`AttemptLog`](super::service::AttemptLog) and traced, with latency and outcome
//! only — never request content.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::service::RouteRequest;
use super::Attempt;
use crate::providers::{Answer, ProviderError, Verdict};

/// Records each attempt at `provider`.
#[derive(Debug, Clone)]
pub struct RecordAttempt<S> {
    inner: S,
    provider: Arc<str>,
}

/// Builds [`RecordAttempt`].
#[derive(Debug, Clone)]
pub struct RecordAttemptLayer {
    provider: Arc<str>,
}

impl RecordAttemptLayer {
    pub fn new(provider: &str) -> Self {
        Self { provider: provider.into() }
    }
}

impl<S> Layer<S> for RecordAttemptLayer {
    type Service = RecordAttempt<S>;

    fn layer(&self, inner: S) -> RecordAttempt<S> {
        RecordAttempt { inner, provider: self.provider.clone() }
    }
}

// === impl RecordAttempt ===

impl<S> Service<RouteRequest> for RecordAttempt<S>
where
    S: Service<RouteRequest, Response = Answer, Error = ProviderError>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = ProviderError;
    type Future = BoxFuture<'static, Result<Answer, ProviderError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: RouteRequest) -> Self::Future {
        let provider = self.provider.clone();
        let log = req.log.clone();
        let attempt = log.count_for(&provider) + 1;
        let span = tracing::info_span!(
            "attempt",
            provider = %provider,
            attempt,
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let started = Instant::now();
                let result = fut.await;
                let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let (outcome, reason) = match &result {
                    Ok(Answer { verdict: Verdict::Rejected(r), .. }) => ("rejected", Some(r.code.as_str().to_string())),
                    Ok(_) => ("ok", None),
                    Err(e) => ("error", Some(e.to_string())),
                };
                let span = tracing::Span::current();
                span.record("status", outcome);
                span.record("latency_ms", latency_ms);
                match &result {
                    Err(e) => tracing::info!(error = %e, class = ?e.class(), "Provider attempt failed"),
                    Ok(_) => tracing::debug!("Provider attempt answered"),
                }
                log.push(Attempt {
                    provider: provider.to_string(),
                    attempt,
                    latency_ms,
                    outcome: outcome.to_string(),
                    reason,
                });
                result
            }
            .instrument(span),
        )
    }
}
