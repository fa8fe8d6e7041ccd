//! OTLP export: which settings are in force (TOML, then the standard `OTEL_*` variables) and the
//! exporters built from them.
//!
//! Nothing here connects at start-up: a collector that is down costs failed exports (dropped
//! telemetry), never a failed start.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;

use super::OtlpConfig;

/// Why OTLP export could not be set up (the gateway then runs without it).
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP protocol {0:?} is not supported (use http/protobuf or grpc)")]
    Protocol(String),
    #[error("OTLP over gRPC is not built into this binary (build with --features otlp-grpc)")]
    GrpcNotBuilt,
    #[error("OTLP export needs a Tokio runtime")]
    NoRuntime,
    #[error("OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    HttpProtobuf,
    Grpc,
}

/// The export settings in force after the environment is applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub wire: Wire,
    /// Base URL from TOML, passed on only when no `OTEL_EXPORTER_OTLP_*ENDPOINT` is set (the SDK
    /// reads those itself, signal-specific ones included).
    pub endpoint: Option<String>,
    pub traces: bool,
    pub metrics: bool,
    pub resource: Resource,
    pub metrics_interval: Duration,
    pub timeout: Duration,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

impl Settings {
    /// Applies the standard variables over `cfg`. `None`: export is off.
    pub fn resolve(cfg: &OtlpConfig) -> Result<Option<Self>, OtlpError> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let env_endpoint = [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ]
        .into_iter()
        .any(|v| env(v).is_some());
        // Pointing the standard variable at a collector is the usual way to turn export on.
        if !cfg.enabled && !env_endpoint {
            return Ok(None);
        }
        let protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| cfg.protocol.clone());
        let wire = match protocol.as_str() {
            "http/protobuf" | "http" | "" => Wire::HttpProtobuf,
            "grpc" => Wire::Grpc,
            other => return Err(OtlpError::Protocol(other.to_string())),
        };
        let off = |var: &str| env(var).is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let service = env("OTEL_SERVICE_NAME").unwrap_or_else(|| cfg.service_name.clone());
        // `Resource::builder()` reads OTEL_RESOURCE_ATTRIBUTES; the service name is set explicitly.
        let resource = Resource::builder()
            .with_service_name(service)
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let metrics_interval = env("OTEL_METRIC_EXPORT_INTERVAL")
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(cfg.metrics_interval_secs.max(1)));
        Ok(Some(Self {
            wire,
            endpoint: Some(cfg.endpoint.trim_end_matches('/').to_string()).filter(|e| !e.is_empty() && !env_endpoint),
            traces: cfg.traces && !off("OTEL_TRACES_EXPORTER"),
            metrics: cfg.metrics && !off("OTEL_METRICS_EXPORTER"),
            resource,
            metrics_interval,
            timeout: env("OTEL_EXPORTER_OTLP_TIMEOUT")
                .and_then(|ms| ms.parse::<u64>().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(cfg.timeout_secs.max(1))),
        }))
    }

    /// The per-signal URL: HTTP wants the full path, gRPC the bare base.
    fn signal_endpoint(&self, path: &str) -> Option<String> {
        self.endpoint.as_ref().map(|base| match self.wire {
            Wire::HttpProtobuf => format!("{base}{path}"),
            Wire::Grpc => base.clone(),
        })
    }

    fn client(&self) -> Result<TokioReqwest, OtlpError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
        let client = reqwest::Client::builder().timeout(self.timeout).build()?;
        Ok(TokioReqwest { client, runtime })
    }

    pub fn span_exporter(&self) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
        let endpoint = self.signal_endpoint("/v1/traces");
        match self.wire {
            Wire::HttpProtobuf => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(self.timeout)
                    .with_http_client(self.client()?);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                Ok(b.build()?)
            }
            #[cfg(feature = "otlp-grpc")]
            Wire::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_timeout(self.timeout);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                Ok(b.build()?)
            }
            #[cfg(not(feature = "otlp-grpc"))]
            Wire::Grpc => Err(OtlpError::GrpcNotBuilt),
        }
    }

    pub fn metric_exporter(&self) -> Result<opentelemetry_otlp::MetricExporter, OtlpError> {
        let endpoint = self.signal_endpoint("/v1/metrics");
        match self.wire {
            Wire::HttpProtobuf => {
                let mut b = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(self.timeout)
                    .with_http_client(self.client()?);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                Ok(b.build()?)
            }
            #[cfg(feature = "otlp-grpc")]
            Wire::Grpc => {
                let mut b = opentelemetry_otlp::MetricExporter::builder().with_tonic().with_timeout(self.timeout);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                Ok(b.build()?)
            }
            #[cfg(not(feature = "otlp-grpc"))]
            Wire::Grpc => Err(OtlpError::GrpcNotBuilt),
        }
    }
}

/// OTLP/HTTP through the gateway's own reqwest (0.12), run on the gateway's Tokio runtime.
///
/// The SDK exports from its own threads with a plain `block_on`; async reqwest needs a Tokio
/// reactor, so each export is spawned onto the runtime captured at start-up and awaited.
#[derive(Debug, Clone)]
struct TokioReqwest {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for TokioReqwest {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};

    use super::*;

    /// No collector listens on the endpoint: building works, exporting fails quietly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_collector_is_not_fatal() {
        let cfg = OtlpConfig {
            enabled: true,
            endpoint: "http://127.0.0.1:9".into(),
            timeout_secs: 1,
            ..OtlpConfig::default()
        };
        let Some(settings) = Settings::resolve(&cfg).expect("settings") else {
            return; // OTEL_SDK_DISABLED is set in this environment.
        };
        let exporter = settings.span_exporter().expect("span exporter builds without a collector");
        settings.metric_exporter().expect("metric exporter builds without a collector");
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).build();
        provider.tracer("test").in_span("work", |_| {});
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await.expect("no panic");
        assert!(flushed.is_err(), "the export reports the failure instead of panicking");
    }

    #[test]
    fn off_unless_enabled_and_unknown_protocols_are_refused() {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            return;
        }
        assert!(Settings::resolve(&OtlpConfig::default()).expect("settings").is_none());
        let bad = OtlpConfig { enabled: true, protocol: "carrier-pigeon".into(), ..OtlpConfig::default() };
        if std::env::var_os("OTEL_EXPORTER_OTLP_PROTOCOL").is_none() {
            assert!(matches!(Settings::resolve(&bad), Err(OtlpError::Protocol(_))));
        }
    }
}
