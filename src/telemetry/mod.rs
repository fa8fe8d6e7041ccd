//! Logging and tracing set-up. Nothing personal is recorded: images, names and document
//! numbers never reach a log line or span (the types carrying them print redacted `Debug`).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::TelemetryConfig;

/// Installs the global subscriber: `pretty` for terminals, `json` for production. `RUST_LOG`
/// overrides the configured filter. Safe to call twice (the second call is a no-op).
pub fn init(cfg: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if cfg.log_format == "json" {
        registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()
    };
    if result.is_err() {
        tracing::debug!("Tracing subscriber already installed");
    }
}
