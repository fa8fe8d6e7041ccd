//! `stack()`: the one place the per-provider layers are ordered.

use std::sync::Arc;

use tower::util::BoxCloneSyncService;
use tower::Layer as _;

use super::breaker::{BreakerHandle, CircuitBreakerLayer};
use super::config::RouteParams;
use super::limit::ConcurrencyLimitLayer;
use super::recent::RecentAttempts;
use super::record::{RecordAttemptLayer, Recorded};
use super::retry::RetryLayer;
use super::service::{ProviderService, RouteRequest};
use super::timeout::TimeoutLayer;
use super::AttemptOutcome;
use crate::providers::{Answer, ProviderError, SharedProvider, SubCallKind};
use crate::telemetry::events::RouteDeclared;

/// A provider wrapped in its resilience layers, type-erased.
pub type ProviderStack = BoxCloneSyncService<RouteRequest, Answer, ProviderError>;

/// Wraps `provider` for one (sub-call, provider) route. Layers, innermost first. Also returns a
/// read handle on the route's circuit breaker; every attempt made is also kept in `recent`.
pub fn stack(
    kind: SubCallKind,
    provider: SharedProvider,
    params: &RouteParams,
    recent: Arc<RecentAttempts>,
) -> (ProviderStack, BreakerHandle) {
    let name = provider.name().to_string();
    RouteDeclared { provider: &name, sub_call: kind.as_str(), outcomes: &AttemptOutcome::COUNTED.map(AttemptOutcome::as_str) }
        .emit();
    let breaker = CircuitBreakerLayer::observed(params.breaker, &name, kind.as_str());
    let recorded = Recorded {
        provider: name.as_str().into(),
        sub_call: kind,
        circuit: breaker.handle(),
        peer: provider.peer(),
        cost_per_call: provider.cost_per_call(),
        recent,
    };
    // The vendor call itself.
    let svc = ProviderService::new(provider);
    // Timeout, innermost: the per-attempt deadline bounds the vendor's work.
    let svc = TimeoutLayer::new(params.timeout).layer(svc);
    // Recording outside the timeout, so timed-out attempts are recorded with their latency;
    // inside the retry, so every retry is its own attempt.
    let svc = RecordAttemptLayer::new(recorded).layer(svc);
    // Breaker outside the recorder: it counts each attempt's outcome, and when open it fails
    // fast without an attempt being made (the router records the provider as skipped).
    let handle = breaker.handle();
    let svc = breaker.layer(svc);
    // Concurrency limit outside the breaker: waiting for a slot is our congestion, not the
    // provider failing, so it never reaches the breaker; a wait past the same deadline ends as
    // `Saturated` (the router records the provider as skipped and moves on). Inside the retry,
    // so a retry's backoff sleep holds no slot.
    let svc = ConcurrencyLimitLayer::new(params.concurrency, params.timeout).layer(svc);
    // Retry outermost: each retry passes through the limit and the breaker again (an open
    // circuit or no free slot stops retrying) and waits its backoff holding no slot.
    let svc = RetryLayer::new(params.retry).layer(svc);
    (BoxCloneSyncService::new(svc), handle)
}
