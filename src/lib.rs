//! kycgate: a KYC gateway speaking the Progeny v3 API.
//!
//! The crate map, in the order a request travels:
//! - [`api`]: HTTP surface (axum): auth, multipart validation, task and media endpoints.
//! - [`tasks`]: task ids, states and records (pure), and [`tasks::store`]: memory and Redis stores.
//! - [`pipeline`]: runs one task: which sub-calls, in what order, merged into the Progeny result.
//! - [`routing`]: per sub-call provider chains, each provider behind a tower stack.
//! - [`providers`]: the unified sub-call types; [`providers::http`] runs TOML-described vendors.
//! - [`local`]: the built-in on-device provider (MRZ, faces, liveness) and its model files.
//! - [`telemetry`]: logging/tracing set-up; nothing personal is ever recorded.

pub mod providers;
pub mod routing;
pub mod tasks;
