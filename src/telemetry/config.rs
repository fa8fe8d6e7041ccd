//! `[telemetry]` settings, declared here so telemetry imports nothing of the gateway's config
//! (`crate::config` re-exports them for the file format).

use serde::Deserialize;

/// Logs and OpenTelemetry export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: String,
    pub log_filter: String,
    /// OpenTelemetry export; `/metrics` is served whatever this says.
    #[serde(default)]
    pub otlp: OtlpConfig,
}

/// OTLP export settings. The standard `OTEL_*` environment variables take precedence (see
/// `docs/OBSERVABILITY.md`), so one image runs anywhere without a config change.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Off by default: nothing leaves the process unless asked.
    pub enabled: bool,
    /// `http/protobuf` or `grpc` (the latter needs the `otlp-grpc` build feature).
    pub protocol: String,
    /// Collector base URL (`http://collector:4318`); empty = the OTLP default for the protocol.
    pub endpoint: String,
    pub traces: bool,
    pub metrics: bool,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// How often metrics are pushed.
    pub metrics_interval_secs: u64,
    /// Per-export deadline, so a dead collector never stalls the exporter thread for long.
    pub timeout_secs: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            protocol: "http/protobuf".into(),
            endpoint: String::new(),
            traces: true,
            metrics: true,
            service_name: "kycgate".into(),
            metrics_interval_secs: 30,
            timeout_secs: 10,
        }
    }
}
