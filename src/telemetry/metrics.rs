//! The gateway's metrics: every instrument, its exact name and labels, in one place.
//!
//! Instruments live in the OpenTelemetry SDK; the same data goes out by OTLP (when enabled) and
//! is rendered for Prometheus at `/metrics`. Names are a contract with `deploy/` (dashboard,
//! alert rules) and `docs/OBSERVABILITY.md`: change them together. Labels carry only closed
//! sets and operator-chosen names (provider, sub-call, route template), never request content.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};

use super::prometheus::SharedReader;

/// Every metric name, for docs and the deploy check (`tests/telemetry_deploy.rs`).
pub const NAMES: &[&str] = &[
    HTTP_REQUESTS,
    TASKS_SUBMITTED,
    TASKS_FINISHED,
    TASK_DURATION,
    PROVIDER_ATTEMPTS,
    PROVIDER_ATTEMPT_DURATION,
    PROVIDER_RETRIES,
    PROVIDER_FALLBACKS,
    PROVIDER_CIRCUIT_STATE,
    PROVIDER_IN_FLIGHT,
    PROVIDER_COST,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    DECISIONS,
];

pub const HTTP_REQUESTS: &str = "kycgate_http_requests_total";
pub const TASKS_SUBMITTED: &str = "kycgate_tasks_submitted_total";
pub const TASKS_FINISHED: &str = "kycgate_tasks_finished_total";
pub const TASK_DURATION: &str = "kycgate_task_duration_seconds";
pub const PROVIDER_ATTEMPTS: &str = "kycgate_provider_attempts_total";
pub const PROVIDER_ATTEMPT_DURATION: &str = "kycgate_provider_attempt_duration_seconds";
pub const PROVIDER_RETRIES: &str = "kycgate_provider_retries_total";
pub const PROVIDER_FALLBACKS: &str = "kycgate_provider_fallbacks_total";
pub const PROVIDER_CIRCUIT_STATE: &str = "kycgate_provider_circuit_state";
pub const PROVIDER_IN_FLIGHT: &str = "kycgate_provider_in_flight";
pub const PROVIDER_COST: &str = "kycgate_provider_cost_total";
pub const QUEUE_DEPTH: &str = "kycgate_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "kycgate_queue_oldest_pending_age_seconds";
pub const DECISIONS: &str = "kycgate_decisions_total";

/// Task latency buckets: a task runs from tens of milliseconds (cached local) to minutes.
const TASK_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];
/// Vendor attempt buckets: p99 of a healthy vendor is a few seconds, timeouts reach 30 s.
const ATTEMPT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];

/// A circuit breaker's state as the gauge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl CircuitState {
    /// The span attribute value (`kycgate.circuit.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::HalfOpen,
            2 => Self::Open,
            _ => Self::Closed,
        }
    }
}

/// The latest queue sample; observable gauges read it, `/metrics` and a sampler refresh it
/// (the store is async, OTel callbacks are not).
#[derive(Debug, Default)]
struct QueueSample {
    depth: AtomicU64,
    oldest_ms: AtomicU64,
}

/// The instruments, created once from the process's meter provider.
pub struct Metrics {
    http_requests: Counter<u64>,
    tasks_submitted: Counter<u64>,
    tasks_finished: Counter<u64>,
    task_duration: Histogram<f64>,
    attempts: Counter<u64>,
    attempt_duration: Histogram<f64>,
    retries: Counter<u64>,
    fallbacks: Counter<u64>,
    circuit_state: Gauge<i64>,
    in_flight: UpDownCounter<i64>,
    cost: Counter<f64>,
    decisions: Counter<u64>,
    queue: Arc<QueueSample>,
    /// Declared `cost_per_call` per provider (providers without one cost nothing).
    costs: RwLock<HashMap<String, f64>>,
    /// Vendor host and port per provider, for the attempt spans' `server.address`/`server.port`.
    peers: RwLock<HashMap<String, (String, u16)>>,
    /// Current circuit states, so attempt spans can say which state admitted them.
    circuits: RwLock<HashMap<(String, &'static str), Arc<AtomicU8>>>,
}

/// The installed pipeline: the provider (for flush/shutdown), the scrape reader, the instruments.
pub(crate) struct Installed {
    pub provider: SdkMeterProvider,
    pub reader: SharedReader,
    pub metrics: Metrics,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the meter provider built by `telemetry::init`. First caller wins: a second
/// install (or one after [`metrics`] was first used) is refused and returns `false`.
pub(crate) fn install(provider: SdkMeterProvider, reader: SharedReader) -> bool {
    let mut fresh = false;
    INSTALLED.get_or_init(|| {
        fresh = true;
        let metrics = Metrics::new(&provider.meter("kycgate"));
        Installed { provider, reader, metrics }
    });
    fresh
}

pub(crate) fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| {
        // Nothing installed yet (a test, a one-shot command): scrape-only metrics.
        let reader = SharedReader::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder().with_reader(reader.clone()).build();
        let metrics = Metrics::new(&provider.meter("kycgate"));
        Installed { provider, reader, metrics }
    })
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &installed().metrics
}

fn kv(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        let queue = Arc::new(QueueSample::default());
        let q = queue.clone();
        meter
            .u64_observable_gauge(QUEUE_DEPTH)
            .with_description("Tasks waiting to be claimed (shared queue, sampled)")
            .with_callback(move |o| o.observe(q.depth.load(Ordering::Relaxed), &[]))
            .build();
        let q = queue.clone();
        meter
            .f64_observable_gauge(QUEUE_OLDEST_AGE)
            .with_description("Age of the oldest pending task, 0 when the queue is empty")
            .with_unit("s")
            .with_callback(move |o| o.observe(q.oldest_ms.load(Ordering::Relaxed) as f64 / 1000.0, &[]))
            .build();
        let metrics = Self {
            http_requests: meter.u64_counter(HTTP_REQUESTS).with_description("HTTP requests served").build(),
            tasks_submitted: meter.u64_counter(TASKS_SUBMITTED).with_description("Tasks accepted").build(),
            tasks_finished: meter
                .u64_counter(TASKS_FINISHED)
                .with_description("Tasks finished, by final status and Progeny result status")
                .build(),
            task_duration: meter
                .f64_histogram(TASK_DURATION)
                .with_description("Submit to finish")
                .with_unit("s")
                .with_boundaries(TASK_BUCKETS.to_vec())
                .build(),
            attempts: meter
                .u64_counter(PROVIDER_ATTEMPTS)
                .with_description("Provider attempts by outcome (ok, rejected, error, skipped)")
                .build(),
            attempt_duration: meter
                .f64_histogram(PROVIDER_ATTEMPT_DURATION)
                .with_description("One attempt at one provider, timeouts included")
                .with_unit("s")
                .with_boundaries(ATTEMPT_BUCKETS.to_vec())
                .build(),
            retries: meter.u64_counter(PROVIDER_RETRIES).with_description("Attempts after the first").build(),
            fallbacks: meter
                .u64_counter(PROVIDER_FALLBACKS)
                .with_description("Times the chain moved past this provider after it failed")
                .build(),
            circuit_state: meter
                .i64_gauge(PROVIDER_CIRCUIT_STATE)
                .with_description("Circuit breaker: 0 closed, 1 half-open, 2 open")
                .build(),
            in_flight: meter
                .i64_up_down_counter(PROVIDER_IN_FLIGHT)
                .with_description("Attempts in progress (waiting for a slot included)")
                .build(),
            cost: meter
                .f64_counter(PROVIDER_COST)
                .with_description("Declared vendor cost of answered calls (cost_per_call)")
                .build(),
            decisions: meter.u64_counter(DECISIONS).with_description("Liveness and face-compare verdicts").build(),
            queue,
            costs: RwLock::default(),
            peers: RwLock::default(),
            circuits: RwLock::default(),
        };
        // Closed label sets start at 0 (see `route_declared`).
        for service in crate::tasks::ServiceKind::ALL {
            metrics.tasks_submitted.add(0, &[kv("service", service.as_str())]);
        }
        for kind in ["liveness", "compare"] {
            for decision in ["pass", "fail"] {
                metrics.decisions.add(0, &[kv("kind", kind), kv("decision", decision)]);
            }
        }
        metrics
    }

    /// One HTTP request answered. `route` is the matched template, never the raw path.
    pub fn http_request(&self, route: &str, method: &str, status: u16) {
        self.http_requests.add(
            1,
            &[kv("route", route.to_string()), kv("method", method.to_string()), kv("status", i64::from(status))],
        );
    }

    pub fn task_submitted(&self, service: &'static str) {
        self.tasks_submitted.add(1, &[kv("service", service)]);
    }

    /// A task's result was stored. `outcome` is `SUCCESS`/`FAILURE`, `result` the Progeny status.
    /// `elapsed` is `None` when the submit time could not be read (then no latency is recorded).
    pub fn task_finished(&self, service: &'static str, outcome: &'static str, result: i64, elapsed: Option<Duration>) {
        self.tasks_finished.add(1, &[kv("service", service), kv("outcome", outcome), kv("result", result)]);
        if let Some(elapsed) = elapsed {
            self.task_duration.record(elapsed.as_secs_f64(), &[kv("service", service)]);
        }
    }

    /// An attempt that reached a provider (or timed out) ended; `attempt` is 1-based.
    pub fn attempt_finished(
        &self,
        provider: &str,
        sub_call: &'static str,
        outcome: &'static str,
        attempt: u32,
        elapsed: Duration,
    ) {
        let labels = [kv("provider", provider.to_string()), kv("sub_call", sub_call)];
        self.attempts.add(1, &[kv("provider", provider.to_string()), kv("sub_call", sub_call), kv("outcome", outcome)]);
        self.attempt_duration.record(elapsed.as_secs_f64(), &labels);
        if attempt > 1 {
            self.retries.add(1, &labels);
        }
        // Vendors bill answers, not failures: ok and rejected (e.g. "no face") are charged.
        if matches!(outcome, "ok" | "rejected") {
            let cost = self.costs.read().ok().and_then(|c| c.get(provider).copied()).unwrap_or(0.0);
            if cost > 0.0 {
                self.cost.add(cost, &[kv("provider", provider.to_string())]);
            }
        }
    }

    /// A (provider, sub-call) route exists: its counters start at 0, so `rate()` and alerts see
    /// the series before the first event (a missing series is not a zero).
    pub fn route_declared(&self, provider: &str, sub_call: &'static str) {
        let labels = [kv("provider", provider.to_string()), kv("sub_call", sub_call)];
        for outcome in ["ok", "rejected", "error", "skipped"] {
            self.attempts
                .add(0, &[kv("provider", provider.to_string()), kv("sub_call", sub_call), kv("outcome", outcome)]);
        }
        self.retries.add(0, &labels);
        self.fallbacks.add(0, &labels);
        self.in_flight.add(0, &labels);
        // Providers without `cost_per_call` (e.g. `local`) stay at 0.
        self.cost.add(0.0, &[kv("provider", provider.to_string())]);
    }

    /// A provider was passed over without a call (unsupported, unavailable, circuit open).
    pub fn attempt_skipped(&self, provider: &str, sub_call: &'static str) {
        self.attempts
            .add(1, &[kv("provider", provider.to_string()), kv("sub_call", sub_call), kv("outcome", "skipped")]);
    }

    /// The chain moved on from `provider` to the next one.
    pub fn fallback(&self, provider: &str, sub_call: &'static str) {
        self.fallbacks.add(1, &[kv("provider", provider.to_string()), kv("sub_call", sub_call)]);
    }

    /// An attempt started; the returned guard ends it (also when the future is dropped).
    pub fn in_flight(&'static self, provider: &str, sub_call: &'static str) -> InFlight {
        let labels = vec![kv("provider", provider.to_string()), kv("sub_call", sub_call)];
        self.in_flight.add(1, &labels);
        InFlight { metrics: self, labels }
    }

    /// A liveness (`is_live`) or compare (`is_match`) verdict was reached.
    pub fn decision(&self, kind: &'static str, pass: bool) {
        self.decisions.add(1, &[kv("kind", kind), kv("decision", if pass { "pass" } else { "fail" })]);
    }

    /// Sets a provider's declared cost per answered call.
    pub fn set_cost_per_call(&self, provider: &str, cost: f64) {
        if let Ok(mut costs) = self.costs.write() {
            costs.insert(provider.to_string(), cost);
        }
    }

    /// Sets where an HTTP provider lives (client-span attributes; not a metric label).
    pub fn set_peer(&self, provider: &str, host: &str, port: u16) {
        if let Ok(mut peers) = self.peers.write() {
            peers.insert(provider.to_string(), (host.to_string(), port));
        }
    }

    /// The vendor host and port of `provider`, when it is an HTTP provider.
    pub fn peer(&self, provider: &str) -> Option<(String, u16)> {
        self.peers.read().ok().and_then(|p| p.get(provider).cloned())
    }

    /// Records a circuit's state (the breaker calls this on every transition).
    pub fn set_circuit_state(&self, provider: &str, sub_call: &'static str, state: CircuitState) {
        let cell = {
            let key = (provider.to_string(), sub_call);
            let existing = self.circuits.read().ok().and_then(|c| c.get(&key).cloned());
            match existing {
                Some(cell) => cell,
                None => match self.circuits.write() {
                    Ok(mut c) => c.entry(key).or_default().clone(),
                    Err(_) => return,
                },
            }
        };
        cell.store(state as u8, Ordering::Relaxed);
        self.circuit_state.record(state as i64, &[kv("provider", provider.to_string()), kv("sub_call", sub_call)]);
    }

    /// The circuit state last recorded for a route (closed when it has no breaker record).
    pub fn circuit_state(&self, provider: &str, sub_call: &'static str) -> CircuitState {
        let key = (provider.to_string(), sub_call);
        let v = self.circuits.read().ok().and_then(|c| c.get(&key).map(|a| a.load(Ordering::Relaxed)));
        CircuitState::from_u8(v.unwrap_or(0))
    }

    /// Stores a queue sample for the queue gauges.
    pub fn set_queue(&self, depth: u64, oldest: Option<Duration>) {
        self.queue.depth.store(depth, Ordering::Relaxed);
        let ms = oldest.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.queue.oldest_ms.store(ms, Ordering::Relaxed);
    }
}

/// Decrements the in-flight gauge when the attempt ends or is cancelled.
pub struct InFlight {
    metrics: &'static Metrics,
    labels: Vec<KeyValue>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.add(-1, &self.labels);
    }
}

// === hooks needing the store ===

/// Samples the shared queue into the queue gauges (on scrape and periodically).
pub async fn sample_queue(store: &crate::tasks::store::SharedStore) {
    match store.queue_stats().await {
        Ok(stats) => metrics().set_queue(stats.pending, stats.oldest_pending_age),
        Err(err) => tracing::debug!(error = %err, "Queue stats unavailable"),
    }
}

/// Keeps the queue gauges fresh for OTLP pushes between scrapes, until `stop` flips.
pub async fn sample_queue_every(
    store: crate::tasks::store::SharedStore,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = ticker.tick() => sample_queue(&store).await,
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

