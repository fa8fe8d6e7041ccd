//! `stack()`: the one place the per-provider layers are ordered.

use tower::util::BoxCloneSyncService;
use tower::Layer as _;

use super::breaker::{BreakerHandle, CircuitBreakerLayer};
use super::config::RouteParams;
use super::limit::ConcurrencyLimitLayer;
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
/// read handle on the route's circuit breaker.
pub fn stack(kind: SubCallKind, provider: SharedProvider, params: &RouteParams) -> (ProviderStack, BreakerHandle) {
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
    };
    // The vendor call itself.
    let svc = ProviderService::new(provider);
    // Concurrency limit, innermost: the slot is held only while the vendor works, never during
    // a retry's backoff sleep.
    let svc = ConcurrencyLimitLayer::new(params.concurrency).layer(svc);
    // Timeout around the limit: the per-attempt deadline also bounds waiting for a slot, so a
    // saturated provider times out and the chain moves on instead of queueing without bound.
    let svc = TimeoutLayer::new(params.timeout).layer(svc);
    // Recording outside the timeout, so timed-out attempts are recorded with their latency;
    // inside the retry, so every retry is its own attempt.
    let svc = RecordAttemptLayer::new(recorded).layer(svc);
    // Breaker outside the recorder: it counts each attempt's outcome, and when open it fails
    // fast without an attempt being made (the router records the provider as skipped).
    let handle = breaker.handle();
    let svc = breaker.layer(svc);
    // Retry outermost: each retry passes through the breaker again (an open circuit is Fatal
    // and stops retrying) and waits its backoff holding no concurrency slot.
    let svc = RetryLayer::new(params.retry).layer(svc);
    (BoxCloneSyncService::new(svc), handle)
}
