//! Routing policies that decide the order a chain is walked in for one task: rules on what is
//! known so far, then a weighted split (sticky per task), else the configured order. Also the
//! latency window hedging takes its delay from. Pure: no IO, no clocks except what callers pass.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;


use super::config::{Fact, HedgeConfig, RouteConfig};
use crate::providers::SubCallKind;

/// What routing may know about the task a sub-call belongs to. Never personal data beyond
/// codes (nationality / issuing state as ISO or ICAO codes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteContext {
    /// Stable per task (the task id): the split draw hashes it, so retries of a task keep
    /// their arm.
    pub key: String,
    facts: BTreeMap<Fact, String>,
}

impl RouteContext {
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into(), facts: BTreeMap::new() }
    }

    /// Sets a fact.
    pub fn with(mut self, fact: Fact, value: impl Into<String>) -> Self {
        self.set(fact, value);
        self
    }

    pub fn set(&mut self, fact: Fact, value: impl Into<String>) {
        self.facts.insert(fact, value.into());
    }

    pub fn fact(&self, fact: Fact) -> Option<&str> {
        self.facts.get(&fact).map(String::as_str)
    }
}

/// Why a policy could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("{policy} names `{name}`, which is not in the chain")]
    NotInChain { policy: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
}

/// The order policy of one sub-call, with chain positions resolved.
#[derive(Debug, Clone)]
pub struct OrderPolicy {
    chain_len: usize,
    rules: Vec<Rule>,
    /// (chain index, cumulative weight upper bound)
    split: Vec<(usize, u64)>,
}

#[derive(Debug, Clone)]
struct Rule {
    when: Vec<(Fact, Vec<String>)>,
    order: Vec<usize>,
    only: bool,
}

impl OrderPolicy {
    /// Resolves names against `chain` (provider names in chain order).
    pub fn build(config: &RouteConfig, chain: &[&str]) -> Result<Self, PolicyError> {
        let index = |policy: &'static str, name: &str| {
            chain.iter().position(|c| *c == name).ok_or_else(|| PolicyError::NotInChain { policy, name: name.to_string() })
        };
        let mut rules = Vec::new();
        for r in &config.rules {
            let mut when = Vec::new();
            for (fact, values) in &r.when {
                when.push((*fact, values.iter().map(|v| v.to_ascii_uppercase()).collect()));
            }
            if r.order.is_empty() {
                return Err(PolicyError::Invalid("a rule's order is empty".into()));
            }
            let order = r.order.iter().map(|n| index("rules", n)).collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { when, order, only: r.only });
        }
        let mut split = Vec::new();
        let mut total = 0u64;
        for s in &config.split {
            if s.weight == 0 {
                continue;
            }
            total += u64::from(s.weight);
            split.push((index("split", &s.provider)?, total));
        }
        if !config.split.is_empty() && split.is_empty() {
            return Err(PolicyError::Invalid("split weights are all zero".into()));
        }
        Ok(Self { chain_len: chain.len(), rules, split })
    }

    /// Chain indices to try, in order, for this task.
    pub fn order(&self, kind: SubCallKind, ctx: &RouteContext) -> Vec<usize> {
        for rule in &self.rules {
            let matches = rule.when.iter().all(|(fact, values)| {
                ctx.fact(*fact).is_some_and(|v| values.iter().any(|x| x.eq_ignore_ascii_case(v)))
            });
            if matches {
                return self.first_then_rest(&rule.order, !rule.only);
            }
        }
        if let Some(&(_, total)) = self.split.last() {
            let draw = draw(&ctx.key, kind, total);
            let arm = self.split.iter().find(|(_, upper)| draw < *upper).map_or(0, |(i, _)| *i);
            return self.first_then_rest(&[arm], true);
        }
        (0..self.chain_len).collect()
    }

    fn first_then_rest(&self, first: &[usize], rest: bool) -> Vec<usize> {
        let mut order: Vec<usize> = Vec::with_capacity(self.chain_len);
        for &i in first {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        if rest {
            order.extend((0..self.chain_len).filter(|i| !first.contains(i)));
        }
        order
    }
}

/// A uniform draw in `0..total` from the task key: the same task always draws the same arm,
/// different tasks spread evenly (sha256, not a seeded RNG, so every instance agrees).
fn draw(key: &str, kind: SubCallKind, total: u64) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(key.as_bytes());
    ctx.update(kind.as_str().as_bytes());
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first) % total
}

/// Recent successful latencies of one provider, for the hedge delay.
#[derive(Debug, Default)]
pub struct LatencyWindow(Mutex<VecDeque<Duration>>);

const WINDOW: usize = 200;

impl LatencyWindow {
    pub fn record(&self, latency: Duration) {
        let mut w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if w.len() == WINDOW {
            w.pop_front();
        }
        w.push_back(latency);
    }

    /// The `p` quantile, once `min_samples` are in.
    pub fn quantile(&self, p: f64, min_samples: usize) -> Option<Duration> {
        let w = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if w.len() < min_samples.max(1) {
            return None;
        }
        let mut v: Vec<Duration> = w.iter().copied().collect();
        v.sort();
        let i = ((v.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        v.get(i).copied()
    }
}

/// The hedge delay for a first provider with latency history `window`.
pub fn hedge_delay(cfg: &HedgeConfig, window: &LatencyWindow) -> Duration {
    let floor = Duration::from_millis(cfg.min_delay_ms);
    match cfg.delay_ms {
        Some(ms) => Duration::from_millis(ms),
        None => window.quantile(cfg.percentile, cfg.min_samples).map_or(floor, |q| q.max(floor)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::config::{ProviderRoute, RuleConfig, SplitEntry};

    fn config(split: &[(&str, u32)], rules: Vec<RuleConfig>) -> RouteConfig {
        let mut c = RouteConfig::with_chain(["a", "b", "c"].iter().map(|n| ProviderRoute::named(n)).collect());
        c.split = split.iter().map(|(p, w)| SplitEntry { provider: p.to_string(), weight: *w }).collect();
        c.rules = rules;
        c
    }

    #[test]
    fn split_is_sticky_and_close_to_its_weights() {
        let p = OrderPolicy::build(&config(&[("b", 90), ("c", 10)], vec![]), &["a", "b", "c"]).expect("policy");
        let mut to_c = 0;
        for i in 0..10_000 {
            let ctx = RouteContext::new(format!("task-{i}"));
            let order = p.order(SubCallKind::FaceCompare, &ctx);
            assert_eq!(order, p.order(SubCallKind::FaceCompare, &ctx), "not sticky");
            assert_eq!(order.len(), 3);
            if order[0] == 2 {
                to_c += 1;
                assert_eq!(order, [2, 0, 1]);
            } else {
                assert_eq!(order, [1, 0, 2]);
            }
        }
        assert!((800..1200).contains(&to_c), "{to_c} of 10000 went to the 10% arm");
    }

    #[test]
    fn first_matching_rule_wins_case_insensitively() {
        let rule = |state: &str, order: &[&str], only| RuleConfig {
            when: [(Fact::Nationality, vec![state.to_string()])].into(),
            order: order.iter().map(|s| s.to_string()).collect(),
            only,
        };
        let p = OrderPolicy::build(&config(&[], vec![rule("usa", &["c"], true), rule("UKR", &["b"], false)]), &["a", "b", "c"])
            .expect("policy");
        let ctx = |n: &str| RouteContext::new("t").with(Fact::Nationality, n);
        assert_eq!(p.order(SubCallKind::DocumentOcr, &ctx("USA")), [2]);
        assert_eq!(p.order(SubCallKind::DocumentOcr, &ctx("UKR")), [1, 0, 2]);
        assert_eq!(p.order(SubCallKind::DocumentOcr, &ctx("DEU")), [0, 1, 2]);
        assert_eq!(p.order(SubCallKind::DocumentOcr, &RouteContext::new("t")), [0, 1, 2]);
    }

    #[test]
    fn names_outside_the_chain_and_unknown_facts_are_refused() {
        let e = OrderPolicy::build(&config(&[("z", 1)], vec![]), &["a", "b", "c"]).unwrap_err();
        assert_eq!(e, PolicyError::NotInChain { policy: "split", name: "z".into() });
        // An unknown fact is a config error: the routing section does not parse.
        let bad = toml::from_str::<RouteConfig>(
            "chain = [{ provider = \"a\" }]\nrules = [{ when = { eye_colour = [\"BLUE\"] }, order = [\"a\"] }]\n",
        );
        let e = bad.expect_err("unknown fact refused").to_string();
        assert!(e.contains("unknown variant `eye_colour`"), "{e}");
    }

    #[test]
    fn hedge_delay_follows_the_observed_quantile() {
        let cfg = HedgeConfig { delay_ms: None, percentile: 0.9, min_samples: 10, min_delay_ms: 20 };
        let w = LatencyWindow::default();
        assert_eq!(hedge_delay(&cfg, &w), Duration::from_millis(20));
        for ms in 1..=100 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(hedge_delay(&cfg, &w), Duration::from_millis(90));
        let fixed = HedgeConfig { delay_ms: Some(300), ..cfg };
        assert_eq!(hedge_delay(&fixed, &w), Duration::from_millis(300));
    }
}
