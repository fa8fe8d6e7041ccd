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

    /// Everything wrong with the chains and policies, all at once, each at its dotted key under
    /// `routing` (`routing.liveness.chain.0.provider`). `provider` says what the providers
    /// directory knows of a name. [`crate::routing::build`] refuses the same things one at a time.
    pub fn problems(&self, provider: &dyn Fn(&str) -> Known) -> Vec<RoutingProblem> {
        let mut out = Vec::new();
        for kind in SubCallKind::ALL {
            self.route(kind).problems(kind, provider, &mut out);
        }
        out
    }

    /// Gives every route without its own `concurrency` the worker count: each task has at most
    /// one call in flight per (sub-call, provider), so `workers` slots never make a task wait.
    pub fn default_concurrency(&mut self, workers: usize) {
        for kind in SubCallKind::ALL {
            let route = match kind {
                SubCallKind::Liveness => &mut self.liveness,
                SubCallKind::FaceCompare => &mut self.face_compare,
                SubCallKind::DocumentOcr => &mut self.document_ocr,
            };
            for entry in &mut route.chain {
                entry.concurrency.get_or_insert(workers);
            }
        }
    }

    /// Routes whose slots are fewer than the tasks run at once: `(sub_call, provider, slots)`.
    /// Tasks beyond the slots wait, and after the route's `timeout_ms` skip the provider.
    pub fn fewer_slots_than(&self, workers: usize) -> Vec<(SubCallKind, String, usize)> {
        SubCallKind::ALL
            .into_iter()
            .flat_map(|kind| self.route(kind).chain.iter().map(move |e| (kind, e)))
            .filter_map(|(kind, e)| e.concurrency.filter(|&c| c < workers).map(|c| (kind, e.provider.clone(), c)))
            .collect()
    }

    /// Every provider name used by any chain (with repeats), so start-up only builds those.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> + '_ {
        SubCallKind::ALL.into_iter().flat_map(move |k| self.route(k).chain.iter().map(|r| r.provider.as_str()))
    }
}

/// One sub-call's chain: providers are tried in order until one answers. The policies below
/// only change that order for one task (or, for consensus, ask several providers at once);
/// every provider they name must be in `chain`, which is where its settings live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub chain: Vec<ProviderRoute>,
    /// Weighted split (A/B): the provider tried first, drawn per task (sticky: the same task
    /// always draws the same one); the rest of the chain stays as fallback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<SplitEntry>,
    /// Rules on what is known so far; the first rule that matches sets the order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// Hedging: if the first provider has not answered after a delay, start the second one too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeConfig>,
    /// Ask several providers and combine their answers (face compare, document OCR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<ConsensusConfig>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self::with_chain(vec![ProviderRoute::named("local")])
    }
}

/// What the providers directory knows of a name used in routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// No file of that name.
    Missing { known: Vec<String> },
    /// A file that failed to load (reported on its own).
    Broken,
    /// A valid file serving these sub-calls.
    Serves(Vec<SubCallKind>),
}

/// One problem in `[routing]`: the dotted key it is at, what is wrong, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingProblem {
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
}

impl RouteConfig {
    fn problems(&self, kind: SubCallKind, provider: &dyn Fn(&str) -> Known, out: &mut Vec<RoutingProblem>) {
        let base = format!("routing.{kind}");
        let mut push = |key: String, message: String, hint: Option<String>| out.push(RoutingProblem { key, message, hint });
        if self.chain.is_empty() {
            push(format!("{base}.chain"), format!("the {kind} chain is empty"), Some("name at least one provider, e.g. { provider = \"local\" }".into()));
        }
        let names: Vec<&str> = self.chain.iter().map(|e| e.provider.as_str()).collect();
        for (i, entry) in self.chain.iter().enumerate() {
            let at = format!("{base}.chain.{i}");
            match provider(&entry.provider) {
                Known::Missing { known } => push(
                    format!("{at}.provider"),
                    format!("unknown provider `{}` (no {}.toml in the providers directory)", entry.provider, entry.provider),
                    Some(format!("known providers: {}", known.join(", "))),
                ),
                Known::Broken => {}
                Known::Serves(serves) if !serves.contains(&kind) => push(
                    format!("{at}.provider"),
                    format!("provider `{}` does not serve {kind}", entry.provider),
                    Some(if serves.is_empty() {
                        format!("`{}` serves no sub-call", entry.provider)
                    } else {
                        format!("`{}` serves: {}", entry.provider, serves.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
                    }),
                ),
                Known::Serves(_) => {}
            }
            if names[..i].contains(&entry.provider.as_str()) {
                push(format!("{at}.provider"), format!("provider `{}` appears twice in the {kind} chain", entry.provider), None);
            }
            if let Err(reason) = entry.params().check() {
                push(at.clone(), reason, None);
            }
            if entry.rate_limit.is_some_and(|r| !(r.per_second > 0.0)) {
                push(format!("{at}.rate_limit.per_second"), "rate_limit.per_second must be > 0".into(), None);
            }
            if entry.daily_budget.is_some_and(|b| !(b >= 0.0)) || !(entry.cost_per_call >= 0.0) {
                push(at.clone(), "cost_per_call and daily_budget must be >= 0".into(), None);
            }
        }
        let in_chain_hint = || Some(format!("the {kind} chain has: {}", names.join(", ")));
        for (j, s) in self.split.iter().enumerate() {
            if !names.contains(&s.provider.as_str()) {
                push(format!("{base}.split.{j}.provider"), format!("split names `{}`, which is not in the chain", s.provider), in_chain_hint());
            }
        }
        if !self.split.is_empty() && self.split.iter().all(|s| s.weight == 0) {
            push(format!("{base}.split"), "split weights are all zero".into(), Some("give at least one arm a weight > 0".into()));
        }
        for (r, rule) in self.rules.iter().enumerate() {
            if rule.order.is_empty() {
                push(format!("{base}.rules.{r}.order"), "a rule's order is empty".into(), None);
            }
            for (o, name) in rule.order.iter().enumerate() {
                if !names.contains(&name.as_str()) {
                    push(format!("{base}.rules.{r}.order.{o}"), format!("rule names `{name}`, which is not in the chain"), in_chain_hint());
                }
            }
        }
        if let Some(c) = &self.consensus {
            if kind == SubCallKind::Liveness {
                push(format!("{base}.consensus"), "consensus is offered for face_compare and document_ocr only".into(), None);
            } else if c.providers.len() < 2 {
                push(format!("{base}.consensus.providers"), "consensus needs at least two providers".into(), None);
            }
            for (p, name) in c.providers.iter().enumerate() {
                if !names.contains(&name.as_str()) {
                    push(format!("{base}.consensus.providers.{p}"), format!("consensus names `{name}`, which is not in the chain"), in_chain_hint());
                }
            }
        }
        if let Some(h) = &self.hedge {
            if !(h.percentile > 0.0 && h.percentile < 1.0) {
                push(format!("{base}.hedge.percentile"), "hedge.percentile must be within (0, 1)".into(), None);
            }
        }
    }

    /// A plain ordered fallback chain, no other policy.
    pub fn with_chain(chain: Vec<ProviderRoute>) -> Self {
        Self { chain, split: Vec::new(), rules: Vec::new(), hedge: None, consensus: None }
    }
}

/// One arm of a weighted split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub provider: String,
    /// Relative weight (90 and 10 send 90% of tasks to the first).
    pub weight: u32,
}

/// `when` every listed fact has one of the listed values (case-insensitive), try `order` first.
/// Facts: `service`, `owner`, and from the document read earlier in the task `nationality`,
/// `issuing_state` (ISO/ICAO codes, e.g. "USA").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub when: std::collections::BTreeMap<Fact, Vec<String>>,
    pub order: Vec<String>,
    /// Only the providers in `order`, no fallback to the rest of the chain.
    #[serde(default)]
    pub only: bool,
}

/// What a rule may test. A rule naming anything else fails to parse (a config error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fact {
    /// The Progeny service (`kyc_passport`, …).
    Service,
    /// The caller (API key or token subject).
    Owner,
    /// ISO/ICAO nationality read from the document earlier in the task.
    Nationality,
    /// ISO/ICAO issuing state read from the document earlier in the task.
    IssuingState,
}

/// When to start the hedged (second) request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// Fixed delay. Without it, the delay is `percentile` of the first provider's observed
    /// latency (recent successful calls), once `min_samples` have been seen.
    pub delay_ms: Option<u64>,
    #[serde(default = "default_hedge_percentile")]
    pub percentile: f64,
    #[serde(default = "default_hedge_min_samples")]
    pub min_samples: usize,
    /// Delay used until enough samples exist, and the floor of the computed delay.
    #[serde(default = "default_hedge_min_delay_ms")]
    pub min_delay_ms: u64,
}

fn default_hedge_percentile() -> f64 {
    0.9
}
fn default_hedge_min_samples() -> usize {
    20
}
fn default_hedge_min_delay_ms() -> u64 {
    50
}

/// How several providers' answers are combined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusConfig {
    /// The providers asked (all of them, concurrently); at least two, all in the chain.
    pub providers: Vec<String>,
    /// Face compare: `all` must match, `any` may match, or the `mean` score against the mean
    /// threshold. Document OCR always compares fields and flags disagreement.
    #[serde(default)]
    pub policy: ConsensusPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsensusPolicy {
    #[default]
    All,
    Any,
    Mean,
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
    /// In-flight calls allowed at this provider for this sub-call. Unset: `[worker]
    /// concurrency` (filled in by `RoutingConfig::default_concurrency` when the gateway config
    /// loads), so a slot is never what tasks wait for; set it lower only for a vendor's own cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Calls per second allowed to this provider for this sub-call (token bucket); beyond it
    /// the provider is skipped for the next one. None: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// What one call costs (any currency unit), charged per attempt made.
    #[serde(default)]
    pub cost_per_call: f64,
    /// Spend allowed per UTC day at this provider, in this gateway instance; when spent the
    /// provider is skipped until midnight UTC. None: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget: Option<f64>,
}

/// A token bucket: `per_second` refill, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

impl ProviderRoute {
    /// A route with every setting at its default.
    pub fn named(provider: &str) -> Self {
        Self {
            provider: provider.to_string(),
            timeout_ms: default_timeout_ms(),
            retry: RetryConfig::default(),
            concurrency: None,
            breaker: BreakerConfig::default(),
            rate_limit: None,
            cost_per_call: 0.0,
            daily_budget: None,
        }
    }

    /// The typed parameters the layers receive (layers never see the config).
    pub fn params(&self) -> RouteParams {
        RouteParams {
            timeout: Duration::from_millis(self.timeout_ms),
            concurrency: self.concurrency.unwrap_or(UNRESOLVED_CONCURRENCY),
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
                error_rate: self.breaker.error_rate,
                window: Duration::from_millis(self.breaker.window_ms),
                min_calls: self.breaker.min_calls,
            },
        }
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// Slots of a route whose `concurrency` was neither set nor filled from `[worker]` (a routing
/// table used outside a gateway config, as tests do).
const UNRESOLVED_CONCURRENCY: usize = 16;

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
    /// Also open when at least this fraction (0..1) of the attempts in the last `window_ms`
    /// failed, once `min_calls` attempts were seen (catches a vendor failing every other call,
    /// which never reaches `failure_threshold` consecutive failures). None: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
}

fn default_window_ms() -> u64 {
    30_000
}
fn default_min_calls() -> u32 {
    20
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            cool_down_ms: default_cool_down_ms(),
            error_rate: None,
            window_ms: default_window_ms(),
            min_calls: default_min_calls(),
        }
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
    pub error_rate: Option<f64>,
    pub window: Duration,
    pub min_calls: u32,
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
        if self.breaker.error_rate.is_some_and(|r| !(r > 0.0 && r <= 1.0)) {
            return Err("breaker.error_rate must be within (0, 1]".into());
        }
        if self.breaker.error_rate.is_some() && (self.breaker.window.is_zero() || self.breaker.min_calls == 0) {
            return Err("breaker.window_ms and breaker.min_calls must be > 0".into());
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
    fn problems_are_all_reported_with_their_keys() {
        let c: RoutingConfig = toml::from_str(
            "[liveness]\nchain = [{ provider = \"nope\" }, { provider = \"ocr\", concurrency = 0 }]\nsplit = [{ provider = \"x\", weight = 0 }]\n",
        )
        .unwrap();
        let known = |name: &str| match name {
            "local" => Known::Serves(SubCallKind::ALL.to_vec()),
            "ocr" => Known::Serves(vec![SubCallKind::DocumentOcr]),
            _ => Known::Missing { known: vec!["local".into(), "ocr".into()] },
        };
        let keys: Vec<String> = c.problems(&known).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "routing.liveness.chain.0.provider",
                "routing.liveness.chain.1.provider",
                "routing.liveness.chain.1",
                "routing.liveness.split.0.provider",
                "routing.liveness.split",
            ]
        );
    }

    #[test]
    fn unset_slots_follow_the_workers_and_fewer_are_reported() {
        let mut c: RoutingConfig = toml::from_str(
            "[liveness]\nchain = [{ provider = \"a\", concurrency = 16 }, { provider = \"b\" }]\n",
        )
        .unwrap();
        assert_eq!(c.liveness.chain[1].concurrency, None);
        c.default_concurrency(256);
        assert_eq!(c.liveness.chain[0].concurrency, Some(16), "an explicit cap is kept");
        assert_eq!(c.liveness.chain[1].concurrency, Some(256));
        assert_eq!(c.face_compare.chain[0].params().concurrency, 256);
        assert_eq!(c.fewer_slots_than(256), vec![(SubCallKind::Liveness, "a".to_string(), 16)]);
        assert!(c.fewer_slots_than(16).is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = toml::from_str::<RoutingConfig>("[liveness]\nchain = [{ provider = \"x\", timeout = 5 }]\n");
        assert!(e.unwrap_err().to_string().contains("unknown field `timeout`"));
    }
}
