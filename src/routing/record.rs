//! Attempt recording layer: every attempt that reached the provider (or timed out) is appended to
//! the request's [`AttemptLog`](super::service::AttemptLog) and traced, with latency and outcome
//! only — never request content.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::breaker::BreakerHandle;
use super::service::RouteRequest;
use super::{Attempt, AttemptOutcome};
use crate::providers::{Answer, ProviderError, SubCallKind, Verdict};
use crate::telemetry::events::{AttemptFinished, AttemptStarted};

/// What the recorder says about one provider besides its name.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub provider: Arc<str>,
    pub sub_call: SubCallKind,
    /// The breaker outside this layer: its state says whether an attempt is a normal call
    /// (closed) or the half-open probe.
    pub circuit: BreakerHandle,
    /// Vendor host and port (`server.address`, `server.port`), for HTTP providers.
    pub peer: Option<(String, u16)>,
    /// Declared cost of an answered call.
    pub cost_per_call: f64,
    /// The route's recent attempts (latency, failures), for the operator's routing view.
    pub recent: Arc<super::recent::RecentAttempts>,
}

/// Records each attempt at one provider.
#[derive(Debug, Clone)]
pub struct RecordAttempt<S> {
    inner: S,
    route: Arc<Recorded>,
}

/// Builds [`RecordAttempt`].
#[derive(Debug, Clone)]
pub struct RecordAttemptLayer {
    route: Arc<Recorded>,
}

impl RecordAttemptLayer {
    pub fn new(route: Recorded) -> Self {
        Self { route: Arc::new(route) }
    }
}

impl<S> Layer<S> for RecordAttemptLayer {
    type Service = RecordAttempt<S>;

    fn layer(&self, inner: S) -> RecordAttempt<S> {
        RecordAttempt { inner, route: self.route.clone() }
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
        let route = self.route.clone();
        let provider = route.provider.clone();
        let log = req.log.clone();
        let attempt = log.count_for(&provider) + 1;
        let sub_call = route.sub_call.as_str();
        // The breaker (outside this layer) has already admitted the call.
        let circuit = route.circuit.state();
        let span = tracing::info_span!(
            "attempt",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            provider = %provider,
            sub_call,
            attempt,
            kycgate.circuit.state = circuit.as_str(),
            status = tracing::field::Empty,
            error.type = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            server.address = tracing::field::Empty,
            server.port = tracing::field::Empty,
            reason = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        if let Some((host, port)) = &route.peer {
            span.record("server.address", host.as_str());
            span.record("server.port", *port);
        }
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let started = Instant::now();
                let in_flight = AttemptStarted { provider: &provider, sub_call }.emit();
                let result = fut.await;
                drop(in_flight);
                let latency_ms = super::millis(started.elapsed());
                let (outcome, reason) = match &result {
                    Ok(Answer { verdict: Verdict::Rejected(r), .. }) => {
                        (AttemptOutcome::Rejected, Some(r.code.as_str().to_string()))
                    }
                    Ok(_) => (AttemptOutcome::Ok, None),
                    Err(e) => (AttemptOutcome::Error, Some(e.to_string())),
                };
                route.recent.record(latency_ms, outcome);
                AttemptFinished {
                    provider: &provider,
                    sub_call,
                    outcome: outcome.as_str(),
                    attempt,
                    duration: started.elapsed(),
                    // Vendors bill answers, not failures: ok and rejected (e.g. "no face").
                    billed: if outcome.is_billed() { route.cost_per_call } else { 0.0 },
                }
                .emit();
                let span = tracing::Span::current();
                span.record("status", outcome.as_str());
                span.record("latency_ms", latency_ms);
                if let Some(reason) = &reason {
                    span.record("reason", reason.as_str());
                }
                if let Err(e) = &result {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", error_type(e));
                    if let ProviderError::Http { status, .. } = e {
                        span.record("http.response.status_code", *status);
                    }
                }
                match &result {
                    Err(e) => tracing::info!(error = %e, class = ?e.class(), "Provider attempt failed"),
                    Ok(_) => tracing::debug!("Provider attempt answered"),
                }
                log.push(Attempt {
                    provider: provider.to_string(),
                    attempt,
                    latency_ms,
                    outcome,
                    reason,
                    code: None,
                });
                result
            }
            .instrument(span),
        )
    }
}

/// A low-cardinality `error.type` (OTel semantic conventions) for an attempt's failure.
fn error_type(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::Timeout(_) => "timeout",
        ProviderError::Transport(_) => "transport",
        ProviderError::Http { status, .. } if *status >= 500 => "http_5xx",
        ProviderError::Http { .. } => "http_4xx",
        ProviderError::RateLimited { .. } => "rate_limited",
        ProviderError::Vendor { .. } => "vendor",
        ProviderError::Decode(_) => "decode",
        ProviderError::Redirect { .. } => "redirect",
        ProviderError::Unsupported(_) => "unsupported",
        ProviderError::Unavailable(_) => "unavailable",
        ProviderError::CircuitOpen => "circuit_open",
        ProviderError::Saturated { .. } => "saturated",
        ProviderError::Config(_) => "config",
    }
}
