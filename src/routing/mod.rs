//! Routing: which provider serves a sub-call, and the tower stack around each one
//! (timeout, retry with backoff and budget, concurrency limit, circuit breaker, fallback).
//!
//! `stack()` is the one place where layers are ordered.

pub mod breaker;
pub mod chain;
pub mod config;
pub mod consensus;
pub mod gates;
pub mod limit;
pub mod policy;
pub mod record;
pub mod retry;
pub mod service;
pub mod stack;
pub mod timeout;

use serde::{Deserialize, Serialize};

pub use chain::{build, ChainRouter, RoutingError};
pub use policy::RouteContext;
pub use stack::{stack, ProviderStack};

use crate::providers::{Answer, SubCall, SubCallKind};

/// A duration in whole milliseconds, saturating (for attempt records and span fields).
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One attempt at one provider, as recorded in the task result (`result.data.providers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    /// 1-based attempt number at this provider.
    pub attempt: u32,
    pub latency_ms: u64,
    /// `ok`, `rejected` (final input verdict), `error`, `skipped`, or `cancelled` (a hedge
    /// that lost the race).
    pub outcome: String,
    /// Why it failed or was skipped (error text never carries personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcome of routing one sub-call through its chain.
#[derive(Debug, Clone)]
pub struct Routed {
    pub kind: SubCallKind,
    /// The answer of the provider that answered, if any did.
    pub answer: Option<Answer>,
    /// Every attempt, in order, including other providers' failures.
    pub attempts: Vec<Attempt>,
}

/// Routes sub-calls to providers. Built once at start-up from config.
#[async_trait::async_trait]
pub trait SubCallRouter: Send + Sync + 'static {
    async fn route(&self, call: SubCall) -> Routed;
    /// Routes with what is known about the task (its id for sticky splits, facts for rules).
    async fn route_with(&self, call: SubCall, ctx: &RouteContext) -> Routed {
        let _ = ctx;
        self.route(call).await
    }
    /// For `/readyz`: per sub-call kind, whether at least one provider can serve it, and why not.
    fn readiness(&self) -> Vec<(SubCallKind, Result<(), String>)>;
    /// Provider names per sub-call, in configured order (for `/readyz` circuit states).
    fn providers(&self) -> Vec<(SubCallKind, Vec<String>)> {
        Vec::new()
    }
}
