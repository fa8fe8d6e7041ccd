//! Circuit breaker layer: after N consecutive failed attempts, or (when configured) an error
//! rate over a sliding window, the provider is not called for a cool-down (calls fail fast with
//! `ProviderError::CircuitOpen`), then one probe decides whether it closes again.
//!
//! The gate is a small state machine behind a mutex, shared by every clone of the service:
//! `Closed { failures }` → `Open { until }` → `HalfOpen` (one probe in flight) → `Closed` or
//! back to `Open`. A final input rejection counts as success: the provider worked.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::config::BreakerParams;
use crate::providers::ProviderError;
use crate::telemetry::events::CircuitStateChanged;

/// A circuit's state, as `/readyz`, attempt spans and the state gauge report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    /// The `/readyz` and span attribute value (`kycgate.circuit.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    /// The `kycgate_provider_circuit_state` gauge value.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::HalfOpen => 1,
            Self::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    /// The cool-down is over and one probe is in flight.
    HalfOpen,
}

/// Breaker state shared by the clones of one stack.
#[derive(Debug)]
struct Gate {
    params: BreakerParams,
    state: Mutex<State>,
    /// Outcomes of recent attempts (time, failed), for the error-rate rule.
    recent: Mutex<std::collections::VecDeque<(Instant, bool)>>,
    /// `(provider, sub_call)` transitions are reported under, if observed.
    labels: Option<(Arc<str>, &'static str)>,
}

/// Whether the gate let a call through as a normal call or as the half-open probe.
#[derive(Debug, Clone, Copy)]
enum Admission {
    Normal,
    Probe,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reports a transition to telemetry (the state itself lives here, in `state`).
    fn report(&self, state: CircuitState) {
        if let Some((provider, sub_call)) = &self.labels {
            CircuitStateChanged { provider, sub_call, state: state.gauge() }.emit();
        }
    }

    /// The current state, for readers.
    fn circuit_state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::HalfOpen => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
        }
    }

    /// Decides whether a call may go to the provider.
    fn admit(&self) -> Option<Admission> {
        let mut state = self.lock();
        match *state {
            // ## Closed => Closed
            State::Closed { .. } => Some(Admission::Normal),
            // ## Open => (Open | HalfOpen): the first call after the cool-down is the probe.
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                self.report(CircuitState::HalfOpen);
                tracing::info!("Circuit half-open: probing provider");
                Some(Admission::Probe)
            }
            State::Open { .. } => None,
            // ## HalfOpen => HalfOpen: only one probe at a time.
            State::HalfOpen => None,
        }
    }

    /// Notes an outcome and says whether the window's error rate calls for opening.
    fn error_rate_exceeded(&self, failed: bool) -> bool {
        let Some(rate) = self.params.error_rate else { return false };
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.push_back((now, failed));
        while recent.front().is_some_and(|(t, _)| now.duration_since(*t) > self.params.window) {
            recent.pop_front();
        }
        let calls = recent.len();
        let failures = recent.iter().filter(|(_, f)| *f).count();
        calls >= self.params.min_calls as usize && failures as f64 >= rate * calls as f64
    }

    /// The provider answered (or rejected the input): close.
    fn success(&self) {
        self.error_rate_exceeded(false);
        let mut state = self.lock();
        if *state != (State::Closed { failures: 0 }) {
            if *state == State::HalfOpen {
                tracing::info!("Circuit closed: probe succeeded");
            }
            *state = State::Closed { failures: 0 };
            self.report(CircuitState::Closed);
        }
    }

    /// The attempt failed: count it, open at the threshold, re-open after a failed probe.
    fn failure(&self, admission: Admission) {
        let by_rate = self.error_rate_exceeded(true);
        let mut state = self.lock();
        let open = State::Open { until: Instant::now() + self.params.cool_down };
        match (*state, admission) {
            // ## HalfOpen => Open
            (State::HalfOpen, Admission::Probe) => {
                tracing::warn!("Circuit re-opened: probe failed");
                *state = open;
                self.report(CircuitState::Open);
            }
            // ## Closed => (Closed | Open)
            (State::Closed { failures }, _) => {
                let failures = failures + 1;
                if failures >= self.params.failure_threshold || by_rate {
                    tracing::warn!(failures, by_error_rate = by_rate, "Circuit opened");
                    self.recent.lock().unwrap_or_else(PoisonError::into_inner).clear();
                    *state = open;
                    self.report(CircuitState::Open);
                } else {
                    *state = State::Closed { failures };
                }
            }
            // A call admitted before the circuit opened finished late: already open.
            _ => {}
        }
    }

    /// A probe that never finished (cancelled) must not leave the gate half-open forever.
    fn abandoned(&self, admission: Admission) {
        if matches!(admission, Admission::Probe) && *self.lock() == State::HalfOpen {
            self.failure(admission);
        }
    }
}

/// Reports a probe's cancellation if the call future is dropped before completing.
struct ProbeGuard {
    gate: Arc<Gate>,
    admission: Admission,
    done: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if !self.done {
            self.gate.abandoned(self.admission);
        }
    }
}

/// Read handle on one breaker's state, handed out by [`CircuitBreakerLayer::handle`]: `/readyz`,
/// attempt spans and skip records read the circuit here, never from metrics.
#[derive(Debug, Clone)]
pub struct BreakerHandle(Arc<Gate>);

impl BreakerHandle {
    pub fn state(&self) -> CircuitState {
        self.0.circuit_state()
    }
}

/// Fails fast while the provider is known to be failing.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    gate: Arc<Gate>,
}

/// Builds [`CircuitBreaker`]; services built from one layer share one circuit.
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer {
    gate: Arc<Gate>,
}

impl CircuitBreakerLayer {
    pub fn new(params: BreakerParams) -> Self {
        Self {
            gate: Arc::new(Gate {
                params,
                state: Mutex::new(State::Closed { failures: 0 }),
                recent: Mutex::default(),
                labels: None,
            }),
        }
    }

    /// Like [`CircuitBreakerLayer::new`], reporting the state gauge for `(provider, sub_call)`
    /// (starting at closed, so the series exists before the first failure).
    pub fn observed(params: BreakerParams, provider: &str, sub_call: &'static str) -> Self {
        let gate = Gate {
            params,
            state: Mutex::new(State::Closed { failures: 0 }),
            recent: Mutex::default(),
            labels: Some((provider.into(), sub_call)),
        };
        gate.report(CircuitState::Closed);
        Self { gate: Arc::new(gate) }
    }

    /// A read handle on the circuit these services share.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle(self.gate.clone())
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker { inner, gate: self.gate.clone() }
    }
}

// === impl CircuitBreaker ===

impl<S, R> Service<R> for CircuitBreaker<S>
where
    S: Service<R, Error = ProviderError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = ProviderError;
    type Future = BoxFuture<'static, Result<S::Response, ProviderError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let Some(admission) = self.gate.admit() else {
            return Box::pin(async { Err(ProviderError::CircuitOpen) });
        };
        let gate = self.gate.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut guard = ProbeGuard { gate, admission, done: false };
            let result = fut.await;
            guard.done = true;
            match &result {
                Ok(_) => guard.gate.success(),
                Err(_) => guard.gate.failure(admission),
            }
            result
        })
    }
}
