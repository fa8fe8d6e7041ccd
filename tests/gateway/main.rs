//! The gateway's integration tests, one binary: the public API end to end, instances sharing
//! one Redis, and the task stores (one conformance suite for both, and a Redis outage).
//!
//! Needs the shared images (`KYCGATE_EVAL_DIR`), models (`KYCGATE_MODEL_DIR`), Redis
//! (`KYCGATE_TEST_REDIS`, default redis://127.0.0.1:6379) and `redis-server` on PATH.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod chaos;
mod console;
mod console_api;
mod corpus;
mod hostile;
mod instances;
mod props;
mod openapi;
mod store_conformance;
mod store_costs;
mod store_limits;
mod store_outage;
mod vendor_hostile;
mod webhooks;
mod uploads;
