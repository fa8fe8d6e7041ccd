//! Telemetry: logs (`tracing-subscriber`, pretty or JSON), traces (`tracing` spans bridged to
//! OpenTelemetry) and metrics (OTel SDK), exported by OTLP when enabled and served for Prometheus
//! at `/metrics` always.
//!
//! - [`metrics`]: every instrument and its exact name; the hooks other modules call.
//! - [`events`]: one struct per routing event, whose `emit()` records it (observe only).
//! - [`http`]: the HTTP server span and request counter.
//! - [`propagation`]: W3C trace context across the queue (the task stores its `traceparent`).
//! - [`prometheus`]: the `/metrics` text rendering.
//! - [`redact`]: [`Redacted`], the wrapper personal data travels in.
//!
//! Nothing personal is recorded: images, names and document numbers never reach a log line, a
//! span or a label (the types carrying them print redacted `Debug`; labels are closed sets).
//! Span and metric names are listed in `docs/OBSERVABILITY.md`.

mod config;
pub mod events;
pub mod http;
pub mod metrics;
mod otlp;
pub mod prometheus;
pub mod propagation;
pub mod redact;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{ManualReader, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{EnvFilter, Layer};

pub use config::{OtlpConfig, TelemetryConfig};
pub use metrics::metrics;
pub use otlp::OtlpError;
pub use redact::Redacted;

/// Handle on the installed exporters. Flush it before exit so the last spans leave.
#[must_use = "dropping the handle does not flush; call shutdown() before exiting"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports everything buffered. Blocks on the export, which runs on the Tokio runtime: call
    /// it from `spawn_blocking` (or a multi-threaded runtime's blocking section).
    pub fn flush(&self) {
        if let Some(t) = &self.tracer {
            if let Err(err) = t.force_flush() {
                tracing::debug!(error = %err, "Flushing spans failed");
            }
        }
        if let Err(err) = metrics::installed().provider.force_flush() {
            tracing::debug!(error = %err, "Flushing metrics failed");
        }
    }

    /// Flushes and stops the exporters (same blocking rules as [`Telemetry::flush`]).
    pub fn shutdown(self) {
        self.flush();
        if let Some(t) = self.tracer {
            let _ = t.shutdown();
        }
        let _ = metrics::installed().provider.shutdown();
    }
}

/// Installs logging to stderr, and OTLP export when configured. See [`init_with_writer`].
pub fn init(cfg: &TelemetryConfig) -> Telemetry {
    init_with_writer(cfg, BoxMakeWriter::new(std::io::stderr))
}

/// Installs the global subscriber (`pretty` for terminals, `json` for production; `RUST_LOG`
/// overrides the configured filter) writing logs to `writer`, and the OTel providers. Never
/// fails: an unusable OTLP setting is logged and export stays off. Must run inside a Tokio
/// runtime for OTLP. A second call keeps the first installation.
pub fn init_with_writer(cfg: &TelemetryConfig, writer: BoxMakeWriter) -> Telemetry {
    let mut problems: Vec<OtlpError> = Vec::new();
    let settings = otlp::Settings::resolve(&cfg.otlp).unwrap_or_else(|e| {
        problems.push(e);
        None
    });

    let tracer = settings.as_ref().filter(|s| s.traces).and_then(|s| match s.span_exporter() {
        Ok(exporter) => {
            Some(SdkTracerProvider::builder().with_resource(s.resource.clone()).with_batch_exporter(exporter).build())
        }
        Err(e) => {
            problems.push(e);
            None
        }
    });

    let reader = metrics::SharedReader::new(ManualReader::builder().build());
    let mut meter = SdkMeterProvider::builder().with_reader(reader.clone());
    if let Some(s) = settings.as_ref().filter(|s| s.metrics) {
        match s.metric_exporter() {
            Ok(exporter) => {
                meter = meter
                    .with_resource(s.resource.clone())
                    .with_reader(PeriodicReader::builder(exporter).with_interval(s.metrics_interval).build());
            }
            Err(e) => problems.push(e),
        }
    }
    let metrics_installed = metrics::install(meter.build(), reader);

    // Each layer has its own filter: quieting the logs (`RUST_LOG=warn`) must not switch traces off.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_filter));
    let fmt_layer = if cfg.log_format == "json" {
        tracing_subscriber::fmt::layer().json().with_writer(writer).with_filter(filter).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(writer).with_filter(filter).boxed()
    };
    let otel_layer = tracer.as_ref().map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer("kycgate"))
            .with_location(false)
            .with_threads(false)
            .with_filter(Targets::new().with_target("kycgate", LevelFilter::INFO))
    });
    let installed = tracing_subscriber::registry().with(fmt_layer).with(otel_layer).try_init();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());

    if installed.is_err() {
        tracing::debug!("Tracing subscriber already installed");
    }
    if !metrics_installed {
        tracing::warn!("Metrics were already in use before telemetry::init; OTLP metric export is off");
    }
    for problem in problems {
        tracing::warn!(error = %problem, "OpenTelemetry export disabled");
    }
    if let Some(s) = &settings {
        tracing::info!(
            protocol = ?s.wire,
            traces = tracer.is_some(),
            metrics = s.metrics,
            "OpenTelemetry export on"
        );
    }
    Telemetry { tracer: if installed.is_ok() { tracer } else { None } }
}
