//! Telemetry end to end (one gateway exporting to an in-test OTLP receiver, its span tree,
//! `/metrics` and OTLP metrics) and the deploy configs the gateway reads.
//!
//! Telemetry is process-global (subscriber, meter provider): this binary installs it once (in
//! `e2e`); the redaction test, which installs its own log writer, is its own binary
//! (`tests/telemetry_redaction.rs`).
//!
//! Run: `KYCGATE_MODEL_DIR=… KYCGATE_EVAL_DIR=… cargo test --test telemetry`.

/// In-test OTLP receiver, kbyai vendors on wiremock, a gateway, a Prometheus text parser.
mod common;

mod deploy;
mod e2e;
