//! Routing configuration (`[routing]`): per sub-call, an ordered chain of providers, each with its
//! own timeout, retry, concurrency and breaker settings, and the typed parameters layers receive.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::providers::SubCallKind;

/// Provider chains per sub-call. The default routes everything to the built-in `local`
/// provider; vendors are opt-in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    #[serde(default)]
    pub liveness: RouteConfig,
    #[serde(default)]
    pub face_compare: RouteConfig,
    #[serde(default)]
    pub document_ocr: RouteConfig,
}

impl RoutingConfig {
    /// The chain of one sub-call.
    pub fn route(&self, kind: SubCallKind) -> &RouteConfig {
        match kind {
            SubCallKind::Liveness => &self.liveness,
            SubCallKind::FaceCompare => &self.face_compare,
            SubCallKind::DocumentOcr => &self.document_ocr,
        }
    }

    /// Every provider name used by any chain (with repeats), so start-up only builds those.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> + '_ {
        SubCallKind::ALL.into_iter().flat_map(move |k| self.route(k).chain.iter().map(|r| r.provider.as_str()))
    }
}

/// One sub-call's chain: providers are tried in order until one answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub chain: Vec<ProviderRoute>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self { chain: vec![ProviderRoute::named("local")] }
    }
}

/// One provider in a chain, with its resilience settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderRoute {
    /// A provider file name (`local`, `facepp`, …).
    pub provider: String,
    /// Per-attempt deadline, waiting for a concurrency slot included.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryConfig,
    /// In-flight calls allowed at this provider for this sub-call.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default)]
    pub breaker: BreakerConfig,
}

impl ProviderRoute {
    /// A route with every setting at its default.
    pub fn named(provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            timeout_ms: default_timeout_ms(),
            retry: RetryConfig::default(),
            concurrency: default_concurrency(),
            breaker: BreakerConfig::default(),
        }
    }

    /// The typed parameters the layers receive (layers never see the config).
    pub fn params(&self) -> RouteParams {
        RouteParams {
            timeout: Duration::from_millis(self.timeout_ms),
            concurrency: self.concurrency,
            retry: RetryParams {
                max_attempts: self.retry.max_attempts,
                base_delay: Duration::from_millis(self.retry.base_delay_ms),
                max_delay: Duration::from_millis(self.retry.max_delay_ms),
                budget_ratio: self.retry.budget_ratio,
                min_retries_per_sec: self.retry.min_retries_per_sec,
            },
            breaker: BreakerParams {
                failure_threshold: self.breaker.failure_threshold,
                cool_down: Duration::from_millis(self.breaker.cool_down_ms),
            },
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_concurrency() -> usize {
    16
}

/// Retries at one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff cap; doubles per retry (full jitter: the delay is uniform in 0..cap).
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
    /// Backoff cap, and the longest `Retry-After` honoured (longer: fall back instead).
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// Retry budget: retries allowed per request over a 10 s window (like tower's `TpsBudget`).
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f32,
    /// Retries always allowed per second regardless of traffic.
    #[serde(default = "default_min_retries_per_sec")]
    pub min_retries_per_sec: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            base_delay_ms: default_base_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
            budget_ratio: default_budget_ratio(),
            min_retries_per_sec: default_min_retries_per_sec(),
        }
    }
}

fn default_max_attempts() -> u32 {
    2
}
fn default_base_delay_ms() -> u64 {
    100
}
fn default_max_delay_ms() -> u64 {
    2_000
}
fn default_budget_ratio() -> f32 {
    0.2
}
fn default_min_retries_per_sec() -> u32 {
    10
}

/// Circuit breaker at one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the circuit.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe is let through.
    #[serde(default = "default_cool_down_ms")]
    pub cool_down_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: default_failure_threshold(), cool_down_ms: default_cool_down_ms() }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_cool_down_ms() -> u64 {
    30_000
}

/// Everything the stack of one (sub-call, provider) pair needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteParams {
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry: RetryParams,
    pub breaker: BreakerParams,
}

/// Retry layer parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryParams {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub budget_ratio: f32,
    pub min_retries_per_sec: u32,
}

/// Breaker layer parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerParams {
    pub failure_threshold: u32,
    pub cool_down: Duration,
}

impl RouteParams {
    /// Rejects settings that cannot work (zero attempts, zero concurrency, …).
    pub fn check(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("timeout_ms must be > 0".into());
        }
        if self.concurrency == 0 {
            return Err("concurrency must be > 0".into());
        }
        if self.retry.max_attempts == 0 {
            return Err("retry.max_attempts must be >= 1".into());
        }
        if self.retry.base_delay > self.retry.max_delay {
            return Err("retry.base_delay_ms must be <= retry.max_delay_ms".into());
        }
        if !(0.0..=1000.0).contains(&self.retry.budget_ratio) {
            return Err("retry.budget_ratio must be within 0..=1000".into());
        }
        if self.breaker.failure_threshold == 0 {
            return Err("breaker.failure_threshold must be >= 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_route_to_local_and_fill_settings() {
        let c: RoutingConfig = toml::from_str("[liveness]\nchain = [{ provider = \"facepp\", timeout_ms = 500 }]\n").unwrap();
        assert_eq!(c.liveness.chain[0].timeout_ms, 500);
        assert_eq!(c.liveness.chain[0].retry, RetryConfig::default());
        assert_eq!(c.face_compare.chain[0].provider, "local");
        assert_eq!(c.provider_names().collect::<Vec<_>>(), ["facepp", "local", "local"]);
        assert!(c.liveness.chain[0].params().check().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<RoutingConfig>("[liveness]\nchain = [{ provider = \"x\", timeout = 5 }]\n");
        assert!(e.unwrap_err().to_string().contains("unknown field `timeout`"));
    }
}
