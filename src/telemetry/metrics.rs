//! The gateway's metrics: every instrument, its exact name and labels, in one place.
//!
//! Instruments live in the OpenTelemetry SDK; the same data goes out by OTLP (when enabled) and
//! is rendered for Prometheus at `/metrics`. Names are a contract with `deploy/` (dashboard,
//! alert rules) and `docs/OBSERVABILITY.md`: change them together. Labels carry only closed
//! sets and operator-chosen names (provider, sub-call, route template), never request content.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality};

/// Every metric name, for docs and the deploy check (`tests/telemetry/`).
pub const NAMES: &[&str] = &[
    HTTP_REQUESTS,
    HTTP_SERVER_DURATION_PROMETHEUS,
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
    WEBHOOK_DELIVERIES,
    STORE_INPUT_READS,
];

pub const HTTP_REQUESTS: &str = "kycgate_http_requests_total";
/// OpenTelemetry HTTP semantic conventions' server latency (seconds), under its standard name.
pub const HTTP_SERVER_DURATION: &str = "http.server.request.duration";
/// [`HTTP_SERVER_DURATION`] as `/metrics` shows it (dots to `_`, unit suffix; see `prometheus`).
pub const HTTP_SERVER_DURATION_PROMETHEUS: &str = "http_server_request_duration_seconds";
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
pub const WEBHOOK_DELIVERIES: &str = "kycgate_webhook_deliveries_total";
pub const STORE_INPUT_READS: &str = "kycgate_store_input_reads_total";
/// The `source` label of [`STORE_INPUT_READS`]: kept by the instance that queued the task, or
/// read back from Redis.
pub const INPUT_SOURCES: &[&str] = &["kept", "redis"];
/// The `outcome` label of [`WEBHOOK_DELIVERIES`] (a closed set).
pub const WEBHOOK_OUTCOMES: &[&str] = &["delivered", "retry", "failed", "refused"];

/// A [`ManualReader`] the meter provider owns and the scrape handler shares.
#[derive(Debug, Clone)]
pub struct SharedReader(Arc<ManualReader>);

impl SharedReader {
    pub fn new(reader: ManualReader) -> Self {
        Self(Arc::new(reader))
    }
}

// === impl SharedReader ===

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Task latency buckets: a task runs from a few milliseconds (vendors on the same network) to
/// minutes.
const TASK_BUCKETS: &[f64] =
    &[0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];
/// Vendor attempt buckets: from 0.5 ms (a vendor or sidecar on the same host answers well under
/// 5 ms, which used to be the first bucket) to timeouts at 30 s.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];
/// HTTP server latency buckets: the semantic conventions' advice.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// The latest queue sample; observable gauges read it, `/metrics` and a sampler refresh it
/// (the store is async, OTel callbacks are not).
#[derive(Debug, Default)]
struct QueueSample {
    depth: AtomicU64,
    oldest_ms: AtomicU64,
}

/// The instruments, created once from the process's meter provider. They only observe: no state
/// any other module reads back lives here (breakers, budgets and peers are their owners' own).
/// Routing reports through the event structs of [`super::events`].
pub struct Metrics {
    http_requests: Counter<u64>,
    http_duration: Histogram<f64>,
    tasks_submitted: Counter<u64>,
    tasks_finished: Counter<u64>,
    task_duration: Histogram<f64>,
    pub(super) attempts: Counter<u64>,
    pub(super) attempt_duration: Histogram<f64>,
    pub(super) retries: Counter<u64>,
    pub(super) fallbacks: Counter<u64>,
    pub(super) circuit_state: Gauge<i64>,
    pub(super) in_flight: UpDownCounter<i64>,
    pub(super) cost: Counter<f64>,
    pub(super) decisions: Counter<u64>,
    webhooks: Counter<u64>,
    input_reads: Counter<u64>,
    queue: Arc<QueueSample>,
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

pub(super) fn kv(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

impl Metrics {
    /// Instruments on a meter of the test's own (not the process's).
    #[cfg(test)]
    pub(super) fn for_tests(meter: &Meter) -> Self {
        Self::new(meter)
    }

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
            http_duration: meter
                .f64_histogram(HTTP_SERVER_DURATION)
                .with_description("Duration of HTTP server requests")
                .with_unit("s")
                .with_boundaries(HTTP_BUCKETS.to_vec())
                .build(),
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
            webhooks: meter
                .u64_counter(WEBHOOK_DELIVERIES)
                .with_description("Webhook delivery attempts by outcome (delivered, retry, failed, refused)")
                .build(),
            input_reads: meter
                .u64_counter(STORE_INPUT_READS)
                .with_description("Claimed inputs (Redis store) by source: kept by this instance, or read back from Redis")
                .build(),
            queue,
        };
        // Closed label sets start at 0 (see `route_declared`).
        for service in crate::tasks::ServiceKind::ALL {
            metrics.tasks_submitted.add(0, &[kv("service", service.as_str())]);
        }
        for outcome in WEBHOOK_OUTCOMES {
            metrics.webhooks.add(0, &[kv("outcome", *outcome)]);
        }
        for source in INPUT_SOURCES {
            metrics.input_reads.add(0, &[kv("source", *source)]);
        }
        for kind in ["liveness", "compare"] {
            for decision in ["pass", "fail"] {
                metrics.decisions.add(0, &[kv("kind", kind), kv("decision", decision)]);
            }
        }
        metrics
    }

    /// One HTTP request answered. `route` is the matched template, never the raw path; `method`
    /// comes from [`super::http::method_label`] (a closed set).
    pub fn http_request(&self, route: &str, method: &'static str, status: u16) {
        self.http_requests.add(
            1,
            &[kv("route", route.to_string()), kv("method", method), kv("status", i64::from(status))],
        );
    }

    /// One webhook attempt (or a refusal at delivery time); `outcome` is one of
    /// [`WEBHOOK_OUTCOMES`].
    pub fn webhook_delivery(&self, outcome: &'static str) {
        debug_assert!(WEBHOOK_OUTCOMES.contains(&outcome));
        self.webhooks.add(1, &[kv("outcome", outcome)]);
    }

    /// How long one request took, with the semantic conventions' attribute names. `method` is
    /// a closed set (`telemetry::http::method_label`), `route` the matched template.
    pub fn http_server_duration(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
        self.http_duration.record(
            elapsed.as_secs_f64(),
            &[
                kv("http.request.method", method),
                kv("http.route", route.to_string()),
                kv("http.response.status_code", i64::from(status)),
            ],
        );
    }

    /// A claimed task's input came from `source`, one of [`INPUT_SOURCES`].
    pub fn input_read(&self, source: &'static str) {
        debug_assert!(INPUT_SOURCES.contains(&source));
        self.input_reads.add(1, &[kv("source", source)]);
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

    /// Stores a queue sample for the queue gauges.
    pub fn set_queue(&self, depth: u64, oldest: Option<Duration>) {
        self.queue.depth.store(depth, Ordering::Relaxed);
        let ms = oldest.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.queue.oldest_ms.store(ms, Ordering::Relaxed);
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

