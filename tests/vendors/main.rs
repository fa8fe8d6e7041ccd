//! Everything about vendors in one test binary: the adapters' contracts (one table over
//! `providers/*.toml`, then what each vendor's requests must look like), the routing stacks
//! against wiremock vendors, fallback and routing policies through the real gateway, and the
//! simulator.
//!
//! Run: `KYCGATE_MODEL_DIR=… KYCGATE_EVAL_DIR=… cargo test --test vendors`.

/// The end-to-end harness shared with the other gateway tests (a real server on loopback).
#[path = "../support/mod.rs"]
#[allow(dead_code)] // the vendor tests use part of the harness
mod support;
/// Adapters against wiremock: fixtures, fixed clocks, multipart and SigV4 readers.
mod vendor;

mod adapters;
mod fallback;
mod policies;
mod routing;
mod simulate;
mod slots;
