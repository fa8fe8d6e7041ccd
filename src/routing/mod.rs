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
pub mod recent;
pub mod retry;
pub mod service;
pub mod stack;
pub mod swap;
pub mod timeout;

use serde::{Deserialize, Serialize};

pub use breaker::{BreakerHandle, CircuitState};
pub use chain::{build, build_with, ChainRouter, RoutingError};
pub use gates::SharedLimits;
pub use config::Fact;
pub use policy::RouteContext;
pub use stack::{stack, ProviderStack};

use crate::providers::{Answer, SubCall, SubCallKind};

/// A duration in milliseconds with microsecond precision (for attempt records and span
/// fields): whole milliseconds read 0 for every call to a fast vendor.
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// One attempt at one provider, as recorded in the task result (`result.data.providers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    /// 1-based attempt number at this provider.
    pub attempt: u32,
    /// Fractional milliseconds, microsecond precision.
    pub latency_ms: f64,
    pub outcome: AttemptOutcome,
    /// Why it failed or was skipped (error text never carries personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The stable code of a skip a client is told about (`MODEL_UNAVAILABLE`), so the merge
    /// reads the cause from a field, not from the reason's wording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::providers::IssueCode>,
}

/// How one attempt ended. The serde names are the wire strings of `result.data.providers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider answered.
    Ok,
    /// The provider gave a final input verdict (no face, unreadable image).
    Rejected,
    /// The attempt failed (error, timeout).
    Error,
    /// The provider was passed over without a call (unsupported, unavailable, gate or circuit).
    Skipped,
    /// A hedged attempt that lost the race and was dropped.
    Cancelled,
}

impl AttemptOutcome {
    /// The outcomes the attempts counter reports (a cancelled hedge is not counted).
    pub const COUNTED: [Self; 4] = [Self::Ok, Self::Rejected, Self::Error, Self::Skipped];

    /// The wire string (also the `outcome` metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the vendor did the work and bills for it: answers and input rejections.
    pub fn is_billed(self) -> bool {
        matches!(self, Self::Ok | Self::Rejected)
    }

    /// Whether the provider was actually called (a skip made no call).
    pub fn made_call(self) -> bool {
        self != Self::Skipped
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Per sub-call, each provider's circuit state in configured order (for `/readyz`).
    fn circuits(&self) -> Vec<(SubCallKind, Vec<(String, CircuitState)>)> {
        Vec::new()
    }
    /// Per sub-call, the configuration in force and each provider's live state (for the
    /// operator's routing view).
    async fn overview(&self) -> Vec<SubCallOverview> {
        Vec::new()
    }
}

/// One sub-call as the operator's routing view shows it.
#[derive(Debug, Clone)]
pub struct SubCallOverview {
    pub sub_call: SubCallKind,
    /// The chain and its policies (split, rules, hedge, consensus) as configured.
    pub config: config::RouteConfig,
    /// The chain's providers in configured order.
    pub providers: Vec<ProviderOverview>,
}

/// One provider of a chain, now.
#[derive(Debug, Clone)]
pub struct ProviderOverview {
    pub provider: String,
    pub circuit: CircuitState,
    /// Its last attempts ([`recent::CAPACITY`] at most).
    pub recent: recent::RecentSummary,
    pub spend: gates::Spend,
}
