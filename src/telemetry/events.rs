//! Named routing events (vector's `internal_events` model): one struct per event, whose `emit()`
//! records it in the instruments of [`super::metrics`].
//!
//! Events only observe. The state they describe is owned elsewhere (the breaker owns its
//! circuit, the routing gates their budgets, a provider its cost and address) and is passed in
//! the event; nothing here is read back. Fields are closed sets and operator-chosen names,
//! never request content.

use std::time::Duration;

use opentelemetry::KeyValue;

use super::metrics::{kv, metrics, Metrics};

fn route_labels(provider: &str, sub_call: &'static str) -> [KeyValue; 2] {
    [kv("provider", provider.to_string()), kv("sub_call", sub_call)]
}

/// A (provider, sub-call) route exists: its counters start at 0, so `rate()` and alerts see the
/// series before the first event (a missing series is not a zero).
#[derive(Debug)]
pub struct RouteDeclared<'a> {
    pub provider: &'a str,
    pub sub_call: &'static str,
    /// Every `outcome` label the attempts counter can carry.
    pub outcomes: &'a [&'static str],
}

impl RouteDeclared<'_> {
    pub fn emit(self) {
        let m = metrics();
        let labels = route_labels(self.provider, self.sub_call);
        for outcome in self.outcomes {
            m.attempts.add(0, &[labels[0].clone(), labels[1].clone(), kv("outcome", *outcome)]);
        }
        m.retries.add(0, &labels);
        m.fallbacks.add(0, &labels);
        m.in_flight.add(0, &labels);
        // Providers without `cost_per_call` (e.g. `local`) stay at 0.
        m.cost.add(0.0, &[kv("provider", self.provider.to_string())]);
    }
}

/// An attempt went to a provider; the returned guard ends it (also when the future is dropped).
#[derive(Debug)]
pub struct AttemptStarted<'a> {
    pub provider: &'a str,
    pub sub_call: &'static str,
}

impl AttemptStarted<'_> {
    #[must_use = "the attempt counts as in flight until the guard drops"]
    pub fn emit(self) -> InFlight {
        let m = metrics();
        let labels = route_labels(self.provider, self.sub_call);
        m.in_flight.add(1, &labels);
        InFlight { metrics: m, labels }
    }
}

/// Decrements the in-flight gauge when the attempt ends or is cancelled.
pub struct InFlight {
    metrics: &'static Metrics,
    labels: [KeyValue; 2],
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.add(-1, &self.labels);
    }
}

/// An attempt that reached a provider (or timed out) ended.
#[derive(Debug)]
pub struct AttemptFinished<'a> {
    pub provider: &'a str,
    pub sub_call: &'static str,
    pub outcome: &'static str,
    /// 1-based: attempts after the first are retries.
    pub attempt: u32,
    pub duration: Duration,
    /// What the vendor bills for this attempt (0 when it bills nothing).
    pub billed: f64,
}

impl AttemptFinished<'_> {
    pub fn emit(self) {
        let m = metrics();
        let labels = route_labels(self.provider, self.sub_call);
        m.attempts.add(1, &[labels[0].clone(), labels[1].clone(), kv("outcome", self.outcome)]);
        m.attempt_duration.record(self.duration.as_secs_f64(), &labels);
        if self.attempt > 1 {
            m.retries.add(1, &labels);
        }
        if self.billed > 0.0 {
            m.cost.add(self.billed, &[kv("provider", self.provider.to_string())]);
        }
    }
}

/// A provider was passed over without a call (unsupported, unavailable, gate or circuit).
#[derive(Debug)]
pub struct AttemptSkipped<'a> {
    pub provider: &'a str,
    pub sub_call: &'static str,
    pub outcome: &'static str,
}

impl AttemptSkipped<'_> {
    pub fn emit(self) {
        let labels = route_labels(self.provider, self.sub_call);
        metrics().attempts.add(1, &[labels[0].clone(), labels[1].clone(), kv("outcome", self.outcome)]);
    }
}

/// The chain moved on from `provider` to the next one after it failed.
#[derive(Debug)]
pub struct FellBack<'a> {
    pub provider: &'a str,
    pub sub_call: &'static str,
}

impl FellBack<'_> {
    pub fn emit(self) {
        metrics().fallbacks.add(1, &route_labels(self.provider, self.sub_call));
    }
}

/// A liveness (`is_live`) or compare (`is_match`) verdict was reached.
#[derive(Debug)]
pub struct Decided {
    /// `liveness` or `compare`.
    pub kind: &'static str,
    pub pass: bool,
}

impl Decided {
    pub fn emit(self) {
        let decision = if self.pass { "pass" } else { "fail" };
        metrics().decisions.add(1, &[kv("kind", self.kind), kv("decision", decision)]);
    }
}

/// A circuit breaker changed state (or was created, closed).
#[derive(Debug)]
pub struct CircuitStateChanged<'a> {
    pub provider: &'a str,
    pub sub_call: &'static str,
    /// The gauge value: 0 closed, 1 half-open, 2 open.
    pub state: i64,
}

impl CircuitStateChanged<'_> {
    pub fn emit(self) {
        metrics().circuit_state.record(self.state, &route_labels(self.provider, self.sub_call));
    }
}
