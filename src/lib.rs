//! kycgate: a KYC gateway speaking the Progeny v3 API.
//!
//! The crate map, in the order a request travels:
//! - [`api`]: HTTP surface (axum): auth, multipart validation, task and media endpoints.
//! - [`tasks`]: task ids, states and records (pure), and [`tasks::store`]: memory and Redis stores.
//! - [`pipeline`]: runs one task: which sub-calls, in what order, merged into the Progeny result.
//! - [`routing`]: per sub-call provider chains, each provider behind a tower stack.
//! - [`providers`]: the unified sub-call types; [`providers::http`] runs TOML-described vendors.
//! - [`local`]: the built-in on-device provider (MRZ, faces, liveness) and its model files.
//! - [`worker`]: claims tasks, runs the pipeline with a lease heartbeat, stores results.
//! - [`app`], [`config`], [`cli`]: wiring, configuration, one-shot commands; [`check`]: the
//!   whole configuration validated with file:line:column (`kycgate check`, reload).
//! - [`eval`]: `kycgate eval`, the local provider measured through the API's own sub-calls.
//! - [`simulate`]: the vendor simulator (`kycgate simulate`) serving recorded vendor answers.
//! - [`images`]: upload validation shared by the API and `verify`; [`ids`]: random UUIDs.
//! - [`telemetry`]: logging/tracing set-up; nothing personal is ever recorded.
//! - [`webhooks`]: signed callbacks when a task finishes, retried, to public addresses only.

pub mod api;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod eval;
pub mod ids;
pub mod images;
pub mod local;
pub mod pipeline;
pub mod providers;
pub mod routing;
pub mod simulate;
pub mod tasks;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
