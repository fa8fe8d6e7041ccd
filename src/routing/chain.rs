//! Fallback: `ChainRouter` walks a sub-call's chain of provider stacks until one answers, in
//! the order the policies pick for the task (rules, weighted split), optionally hedging the
//! first provider with the second, or asking several at once and combining (consensus).
//!
//! A `Rejected` verdict (no face, unreadable image) is a final answer, not a failure. A provider
//! error moves on to the next provider. Providers that do not serve the kind, are unavailable,
//! whose circuit is open, or whose rate limit or daily budget is reached are recorded as skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::time::Instant;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use super::breaker::{BreakerHandle, CircuitState};
use super::config::{ConsensusPolicy, HedgeConfig, RouteConfig, RoutingConfig};
use super::consensus;
use super::gates::{Gates, SharedLimits};
use super::policy::{hedge_delay, LatencyWindow, OrderPolicy, RouteContext};
use super::recent::RecentAttempts;
use super::service::{AttemptLog, RouteRequest};
use super::stack::{stack, ProviderStack};
use super::{millis, Attempt, AttemptOutcome, ProviderOverview, Routed, SubCallOverview, SubCallRouter};
use crate::providers::{Answer, IssueCode, ProviderError, SharedProvider, SubCall, SubCallKind, Verdict};
use crate::telemetry::events::{AttemptSkipped, Decided, FellBack};

/// Why routing could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("routing.{kind}: unknown provider `{name}` (no providers/{name}.toml)")]
    UnknownProvider { kind: SubCallKind, name: String },
    #[error("routing.{kind}: the chain is empty")]
    EmptyChain { kind: SubCallKind },
    #[error("routing.{kind}: provider `{name}` appears twice in the chain")]
    Duplicate { kind: SubCallKind, name: String },
    #[error("routing.{kind} provider `{name}`: {reason}")]
    Invalid { kind: SubCallKind, name: String, reason: String },
    #[error("routing.{kind}: {reason}")]
    Policy { kind: SubCallKind, reason: String },
}

/// One provider in a chain: the provider (for `supports`/`unavailable`), its stack, its
/// admission gates and its recent latencies (for hedging).
#[derive(Clone)]
struct Route {
    provider: SharedProvider,
    service: ProviderStack,
    circuit: BreakerHandle,
    gates: Arc<Gates>,
    latency: Arc<LatencyWindow>,
    /// Every attempt made lately, for the operator's view.
    recent: Arc<RecentAttempts>,
}

/// One sub-call's routes and policies.
#[derive(Clone)]
struct Chain {
    routes: Vec<Route>,
    order: OrderPolicy,
    hedge: Option<HedgeConfig>,
    /// Chain positions asked together, and how their answers combine.
    consensus: Option<(Vec<usize>, ConsensusPolicy)>,
    /// The configuration it was built from, as the operator's view shows it.
    config: RouteConfig,
}

/// Routes each sub-call through its configured chain of provider stacks.
#[derive(Clone)]
pub struct ChainRouter {
    chains: BTreeMap<SubCallKind, Chain>,
}

/// Builds the router: one stack per (sub-call, provider) in the config, each with gates of its own.
pub fn build(config: &RoutingConfig, providers: &HashMap<String, SharedProvider>) -> Result<ChainRouter, RoutingError> {
    build_with(config, providers, None)
}

/// As [`build`]; with `shared`, rate limits and daily budgets are kept in Redis for every
/// instance together (see [`SharedLimits`]).
pub fn build_with(
    config: &RoutingConfig,
    providers: &HashMap<String, SharedProvider>,
    shared: Option<Arc<SharedLimits>>,
) -> Result<ChainRouter, RoutingError> {
    let mut chains = BTreeMap::new();
    for kind in SubCallKind::ALL {
        let route = config.route(kind);
        if route.chain.is_empty() {
            return Err(RoutingError::EmptyChain { kind });
        }
        let mut built: Vec<Route> = Vec::with_capacity(route.chain.len());
        for entry in &route.chain {
            let provider = providers
                .get(&entry.provider)
                .ok_or_else(|| RoutingError::UnknownProvider { kind, name: entry.provider.clone() })?;
            if built.iter().any(|r| r.provider.name() == provider.name()) {
                return Err(RoutingError::Duplicate { kind, name: entry.provider.clone() });
            }
            let params = entry.params();
            params
                .check()
                .map_err(|reason| RoutingError::Invalid { kind, name: entry.provider.clone(), reason })?;
            if entry.rate_limit.is_some_and(|r| !(r.per_second > 0.0)) {
                return Err(RoutingError::Invalid { kind, name: entry.provider.clone(), reason: "rate_limit.per_second must be > 0".into() });
            }
            if !provider.supports(kind) {
                tracing::warn!(%kind, provider = %entry.provider, "Provider in chain does not serve this sub-call");
            }
            let recent = Arc::new(RecentAttempts::default());
            let (service, circuit) = stack(kind, provider.clone(), &params, recent.clone());
            built.push(Route {
                provider: provider.clone(),
                service,
                circuit,
                gates: Arc::new(match &shared {
                    Some(limits) => Gates::shared(entry, limits.clone(), format!("{kind}:{}", entry.provider)),
                    None => Gates::new(entry),
                }),
                latency: Arc::new(LatencyWindow::default()),
                recent,
            });
        }
        let names: Vec<&str> = route.chain.iter().map(|e| e.provider.as_str()).collect();
        let policy_error = |reason: String| RoutingError::Policy { kind, reason };
        let order = OrderPolicy::build(route, &names).map_err(|e| policy_error(e.to_string()))?;
        let consensus = match &route.consensus {
            None => None,
            Some(_) if kind == SubCallKind::Liveness => {
                return Err(policy_error("consensus is offered for face_compare and document_ocr only".into()))
            }
            Some(c) => {
                if c.providers.len() < 2 {
                    return Err(policy_error("consensus needs at least two providers".into()));
                }
                let mut members = Vec::new();
                for p in &c.providers {
                    let i = names
                        .iter()
                        .position(|n| n == p)
                        .ok_or_else(|| policy_error(format!("consensus names `{p}`, which is not in the chain")))?;
                    members.push(i);
                }
                Some((members, c.policy))
            }
        };
        chains.insert(kind, Chain { routes: built, order, hedge: route.hedge.clone(), consensus, config: route.clone() });
    }
    Ok(ChainRouter { chains })
}

/// Records a provider passed over without a call: in the log, the metrics, and as an empty
/// `attempt` span so the trace shows the circuit decision.
fn skip(log: &AttemptLog, kind: SubCallKind, route: &Route, reason: String, code: Option<IssueCode>) {
    let provider = route.provider.name();
    let outcome = AttemptOutcome::Skipped;
    let _span = tracing::info_span!(
        "attempt",
        otel.kind = "client",
        provider,
        sub_call = kind.as_str(),
        attempt = 0u32,
        kycgate.circuit.state = route.circuit.state().as_str(),
        status = outcome.as_str(),
        reason = reason.as_str(),
        latency_ms = 0.0f64,
    )
    .entered();
    AttemptSkipped { provider, sub_call: kind.as_str(), outcome: outcome.as_str() }.emit();
    log.push(Attempt { provider: provider.to_string(), attempt: 0, latency_ms: 0.0, outcome, reason: Some(reason), code });
}

/// Counts the verdict behind the decision-rate metrics.
fn count_decision(verdict: &Verdict) {
    match verdict {
        Verdict::Liveness(l) => Decided { kind: "liveness", pass: l.is_live }.emit(),
        Verdict::Compare(c) => Decided { kind: "compare", pass: c.is_match }.emit(),
        Verdict::Ocr(_) | Verdict::Rejected(_) => {}
    }
}

impl ChainRouter {
    /// Provider names of one chain, in configured order.
    pub fn chain(&self, kind: SubCallKind) -> Vec<&str> {
        self.chains.get(&kind).map(|c| c.routes.iter().map(|r| r.provider.name()).collect()).unwrap_or_default()
    }
}

/// Why a provider gave no answer.
enum Miss {
    /// Passed over without a call (unsupported, unavailable, gate closed, circuit open).
    Skipped,
    /// Called, and failed every attempt.
    Failed(String),
}

/// One provider's turn: gates, then its stack. Every outcome is recorded in `log`.
async fn attempt(route: &Route, kind: SubCallKind, call: SubCall, log: &AttemptLog) -> Result<Answer, Miss> {
    let name = route.provider.name();
    if !route.provider.supports(kind) {
        skip(log, kind, route, ProviderError::Unsupported(kind).to_string(), None);
        return Err(Miss::Skipped);
    }
    if let Some(u) = route.provider.unavailable(kind) {
        skip(log, kind, route, u.reason, u.code);
        return Err(Miss::Skipped);
    }
    if let Err(reason) = route.gates.admit().await {
        skip(log, kind, route, reason, None);
        return Err(Miss::Skipped);
    }
    let made_before = log.count_for(name);
    let started = Instant::now();
    let result = route.service.clone().oneshot(RouteRequest { call, log: log.clone() }).await;
    route.gates.charge(log.count_for(name).saturating_sub(made_before)).await;
    match result {
        Ok(a) => {
            route.latency.record(started.elapsed());
            Ok(a)
        }
        // The breaker refused the first attempt, or no concurrency slot freed up in time:
        // nothing reached the provider (a circuit that opens during retries ends them with the
        // failure that opened it, see `retry`).
        Err(e @ (ProviderError::CircuitOpen | ProviderError::Saturated { .. })) => {
            skip(log, kind, route, e.to_string(), None);
            Err(Miss::Skipped)
        }
        Err(e) => Err(Miss::Failed(e.to_string())),
    }
}

/// Counts and traces a hand-over from a provider that failed to the next one.
fn fell_back(kind: SubCallKind, provider: &str, why: &str, fallbacks: &mut u32) {
    *fallbacks += 1;
    FellBack { provider, sub_call: kind.as_str() }.emit();
    let span = tracing::Span::current();
    span.record("fallbacks", *fallbacks);
    span.record("fallback_reason", format!("{provider}: {why}").as_str());
    tracing::info!(provider = %provider, error = %why, "Falling back to the next provider");
}

/// Records that `loser` was still working when the hedge was decided, and was dropped.
fn cancelled(log: &AttemptLog, loser: &Route, started: Instant, winner: &str) {
    let name = loser.provider.name();
    log.push(Attempt {
        provider: name.to_string(),
        attempt: log.count_for(name) + 1,
        latency_ms: millis(started.elapsed()),
        outcome: AttemptOutcome::Cancelled,
        reason: Some(format!("hedge: {winner} answered first")),
        code: None,
    });
}

/// The primary alone until the hedge delay, then both; the first answer wins.
async fn hedged(
    cfg: &HedgeConfig,
    primary: &Route,
    secondary: &Route,
    kind: SubCallKind,
    call: &SubCall,
    log: &AttemptLog,
) -> Result<Answer, Miss> {
    let delay = hedge_delay(cfg, &primary.latency);
    let first_started = Instant::now();
    let first = attempt(primary, kind, call.clone(), log);
    tokio::pin!(first);
    tokio::select! {
        res = &mut first => {
            return match res {
                Ok(a) => Ok(a),
                Err(_) => attempt(secondary, kind, call.clone(), log).await,
            };
        }
        _ = tokio::time::sleep(delay) => {}
    }
    tracing::info!(primary = %primary.provider.name(), delay_ms = millis(delay), "Hedging with a second provider");
    let second_started = Instant::now();
    let second = attempt(secondary, kind, call.clone(), log);
    tokio::pin!(second);
    tokio::select! {
        res = &mut first => match res {
            Ok(a) => {
                cancelled(log, secondary, second_started, primary.provider.name());
                Ok(a)
            }
            Err(_) => second.await,
        },
        res = &mut second => match res {
            Ok(a) => {
                cancelled(log, primary, first_started, secondary.provider.name());
                Ok(a)
            }
            Err(_) => first.await,
        },
    }
}

impl Chain {
    /// Walks `order`, hedging pairs when configured.
    async fn walk(&self, order: &[usize], kind: SubCallKind, call: &SubCall, log: &AttemptLog) -> Option<Answer> {
        let mut fallbacks = 0u32;
        let mut i = 0;
        while i < order.len() {
            let route = &self.routes[order[i]];
            let (result, step) = match (&self.hedge, order.get(i + 1)) {
                (Some(cfg), Some(&next)) => (hedged(cfg, route, &self.routes[next], kind, call, log).await, 2),
                _ => (attempt(route, kind, call.clone(), log).await, 1),
            };
            match result {
                Ok(a) => return Some(a),
                Err(Miss::Failed(why)) if i + step < order.len() => {
                    fell_back(kind, route.provider.name(), &why, &mut fallbacks);
                }
                Err(_) => {}
            }
            i += step;
        }
        None
    }

    /// Asks every consensus member at once and combines; if none answers, the rest of the
    /// chain is walked as plain fallback.
    async fn consensus(
        &self,
        members: &[usize],
        policy: ConsensusPolicy,
        kind: SubCallKind,
        call: &SubCall,
        log: &AttemptLog,
    ) -> Option<Answer> {
        let asks = members.iter().map(|&i| attempt(&self.routes[i], kind, call.clone(), log));
        let answers: Vec<Answer> = futures::future::join_all(asks).await.into_iter().filter_map(Result::ok).collect();
        if let Some(a) = consensus::combine(policy, answers) {
            return Some(a);
        }
        let rest: Vec<usize> = (0..self.routes.len()).filter(|i| !members.contains(i)).collect();
        self.walk(&rest, kind, call, log).await
    }
}

#[async_trait::async_trait]
impl SubCallRouter for ChainRouter {
    async fn route(&self, call: SubCall) -> Routed {
        self.route_with(call, &RouteContext::default()).await
    }

    async fn route_with(&self, call: SubCall, ctx: &RouteContext) -> Routed {
        let kind = call.kind();
        let span = tracing::info_span!(
            "sub_call",
            %kind,
            provider = tracing::field::Empty,
            outcome = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
            fallbacks = tracing::field::Empty,
            fallback_reason = tracing::field::Empty,
        );
        async move {
            let started = Instant::now();
            let log = AttemptLog::default();
            let answer = match self.chains.get(&kind) {
                None => None,
                Some(chain) => match &chain.consensus {
                    Some((members, policy)) => chain.consensus(members, *policy, kind, &call, &log).await,
                    None => chain.walk(&chain.order.order(kind, ctx), kind, &call, &log).await,
                },
            };
            let span = tracing::Span::current();
            let outcome = match &answer {
                Some(a) if matches!(a.verdict, Verdict::Rejected(_)) => "rejected",
                Some(_) => "ok",
                None => "failed",
            };
            if let Some(a) = &answer {
                span.record("provider", a.provider.as_str());
                count_decision(&a.verdict);
            }
            span.record("outcome", outcome);
            span.record("latency_ms", millis(started.elapsed()));
            Routed { kind, answer, attempts: log.snapshot() }
        }
        .instrument(span)
        .await
    }

    fn circuits(&self) -> Vec<(SubCallKind, Vec<(String, CircuitState)>)> {
        self.chains
            .iter()
            .map(|(kind, chain)| {
                (*kind, chain.routes.iter().map(|r| (r.provider.name().to_string(), r.circuit.state())).collect())
            })
            .collect()
    }

    async fn overview(&self) -> Vec<SubCallOverview> {
        let mut out = Vec::with_capacity(self.chains.len());
        for (kind, chain) in &self.chains {
            let mut providers = Vec::with_capacity(chain.routes.len());
            for route in &chain.routes {
                providers.push(ProviderOverview {
                    provider: route.provider.name().to_string(),
                    circuit: route.circuit.state(),
                    recent: route.recent.summary(),
                    spend: route.gates.spend().await,
                });
            }
            out.push(SubCallOverview { sub_call: *kind, config: chain.config.clone(), providers });
        }
        out
    }

    fn readiness(&self) -> Vec<(SubCallKind, Result<(), String>)> {
        SubCallKind::ALL
            .into_iter()
            .map(|kind| {
                let chain = self.chains.get(&kind).map(|c| c.routes.as_slice()).unwrap_or_default();
                let mut reasons = Vec::new();
                for route in chain {
                    let name = route.provider.name();
                    if !route.provider.supports(kind) {
                        reasons.push(format!("{name}: does not serve {kind}"));
                    } else if let Some(u) = route.provider.unavailable(kind) {
                        reasons.push(format!("{name}: {}", u.reason));
                    } else {
                        return (kind, Ok(()));
                    }
                }
                if reasons.is_empty() {
                    reasons.push("no provider configured".into());
                }
                (kind, Err(reasons.join("; ")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::providers::{Answer, Image, IssueCode, LivenessAnswer, Provider, Rejection, Score};
    use crate::routing::config::{BreakerConfig, ProviderRoute, RetryConfig, RouteConfig};

    /// Answers from a script: each call pops the next outcome (the last one repeats).
    struct Scripted {
        name: &'static str,
        script: Vec<Result<Verdict, fn() -> ProviderError>>,
        calls: AtomicU32,
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl Provider for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn supports(&self, kind: SubCallKind) -> bool {
            kind == SubCallKind::Liveness
        }
        async fn call(&self, _request: SubCall) -> Result<Answer, ProviderError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
            tokio::time::sleep(self.delay).await;
            match &self.script[n.min(self.script.len() - 1)] {
                Ok(v) => Ok(Answer { provider: self.name.into(), verdict: v.clone(), raw: None }),
                Err(e) => Err(e()),
            }
        }
    }

    fn live() -> Verdict {
        Verdict::Liveness(LivenessAnswer {
            is_live: true,
            score: Score { value: 0.9, threshold: Some(0.5), raw: None },
            quality: None,
        })
    }

    fn scripted(name: &'static str, script: Vec<Result<Verdict, fn() -> ProviderError>>) -> Arc<Scripted> {
        Arc::new(Scripted { name, script, calls: AtomicU32::new(0), delay: Duration::from_millis(10) })
    }

    fn call() -> SubCall {
        SubCall::Liveness { image: Image { bytes: Bytes::from_static(b"\xff\xd8"), mime: "image/jpeg" } }
    }

    fn route(name: &str, attempts: u32, threshold: u32) -> ProviderRoute {
        ProviderRoute {
            retry: RetryConfig { max_attempts: attempts, base_delay_ms: 10, max_delay_ms: 2_000, ..RetryConfig::default() },
            breaker: BreakerConfig { failure_threshold: threshold, cool_down_ms: 300, ..BreakerConfig::default() },
            timeout_ms: 200,
            ..ProviderRoute::named(name)
        }
    }

    fn router(chain: Vec<ProviderRoute>, providers: &[Arc<Scripted>]) -> ChainRouter {
        let map: HashMap<String, SharedProvider> =
            providers.iter().map(|p| (p.name.to_string(), p.clone() as SharedProvider)).collect();
        let config = RoutingConfig { liveness: RouteConfig::with_chain(chain), ..RoutingConfig::default() };
        let mut map = map;
        map.entry("local".into()).or_insert_with(|| scripted("local", vec![Ok(live())]));
        build(&config, &map).expect("router")
    }

    #[tokio::test(start_paused = true)]
    async fn retries_then_falls_back_and_records_every_attempt() {
        let a = scripted("a", vec![Err(|| ProviderError::Http { status: 503, retry_after: None })]);
        let b = scripted("b", vec![Ok(live())]);
        let r = router(vec![route("a", 3, 10), route("b", 1, 10)], &[a.clone(), b.clone()]);
        let routed = r.route(call()).await;
        assert_eq!(routed.answer.expect("answer").provider, "b");
        let seen: Vec<(&str, u32, AttemptOutcome)> =
            routed.attempts.iter().map(|x| (x.provider.as_str(), x.attempt, x.outcome)).collect();
        assert_eq!(seen, [("a", 1, AttemptOutcome::Error), ("a", 2, AttemptOutcome::Error), ("a", 3, AttemptOutcome::Error), ("b", 1, AttemptOutcome::Ok)]);
        assert_eq!(a.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rejection_is_final() {
        let a = scripted("a", vec![Ok(Verdict::Rejected(Rejection::new(IssueCode::FaceNotFound)))]);
        let b = scripted("b", vec![Ok(live())]);
        let r = router(vec![route("a", 3, 10), route("b", 1, 10)], &[a.clone(), b.clone()]);
        let routed = r.route(call()).await;
        assert!(matches!(routed.answer.expect("answer").verdict, Verdict::Rejected(_)));
        assert_eq!(routed.attempts.len(), 1);
        assert_eq!(routed.attempts[0].outcome, AttemptOutcome::Rejected);
        assert_eq!(b.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_are_not_retried() {
        let a = scripted("a", vec![Err(|| ProviderError::Http { status: 401, retry_after: None })]);
        let r = router(vec![route("a", 3, 10)], std::slice::from_ref(&a));
        let routed = r.route(call()).await;
        assert!(routed.answer.is_none());
        assert_eq!(a.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_is_an_attempt_error() {
        let slow = Arc::new(Scripted {
            name: "slow",
            script: vec![Ok(live())],
            calls: AtomicU32::new(0),
            delay: Duration::from_secs(2),
        });
        let r = router(vec![route("slow", 1, 10)], &[slow]);
        let routed = r.route(call()).await;
        assert!(routed.answer.is_none());
        assert_eq!(routed.attempts[0].outcome, AttemptOutcome::Error);
        assert!(routed.attempts[0].reason.as_deref().is_some_and(|r| r.contains("timed out")));
        // The paused clock makes the deadline exact.
        assert_eq!(routed.attempts[0].latency_ms, 200.0);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_skips_and_recovers_after_cool_down() {
        let a = scripted(
            "a",
            vec![
                Err(|| ProviderError::Transport("reset".into())),
                Err(|| ProviderError::Transport("reset".into())),
                Ok(live()),
            ],
        );
        let b = scripted("b", vec![Ok(live())]);
        let r = router(vec![route("a", 1, 2), route("b", 1, 10)], &[a.clone(), b.clone()]);
        let started = Instant::now();
        r.route(call()).await;
        r.route(call()).await;
        // Open: `a` is skipped without a call.
        let routed = r.route(call()).await;
        assert_eq!(routed.attempts[0].outcome, AttemptOutcome::Skipped);
        assert_eq!(routed.attempts[0].reason.as_deref(), Some("circuit open"));
        assert_eq!(a.calls.load(Ordering::SeqCst), 2);
        // After the cool-down one probe goes through, succeeds, and closes the circuit.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let routed = r.route(call()).await;
            if routed.answer.as_ref().is_some_and(|a| a.provider == "a") {
                break;
            }
            assert!(Instant::now() < deadline, "breaker never half-opened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(300));
        let routed = r.route(call()).await;
        assert_eq!(routed.answer.expect("answer").provider, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn error_rate_opens_without_consecutive_failures() {
        let reset = || ProviderError::Transport("reset".into());
        // Fails every other call: never two in a row.
        let a = scripted("a", vec![Ok(live()), Err(reset), Ok(live()), Err(reset), Ok(live())]);
        let b = scripted("b", vec![Ok(live())]);
        let mut flaky = route("a", 1, 100);
        flaky.breaker.error_rate = Some(0.5);
        flaky.breaker.min_calls = 4;
        let r = router(vec![flaky, route("b", 1, 10)], &[a.clone(), b.clone()]);
        for _ in 0..4 {
            r.route(call()).await;
        }
        let routed = r.route(call()).await;
        assert_eq!(routed.attempts[0].outcome, AttemptOutcome::Skipped, "{:?}", routed.attempts);
        assert_eq!(routed.attempts[0].reason.as_deref(), Some("circuit open"));
        assert_eq!(a.calls.load(Ordering::SeqCst), 4);
        assert!(build(
            &RoutingConfig {
                liveness: RouteConfig::with_chain(vec![ProviderRoute {
                    breaker: BreakerConfig { error_rate: Some(1.5), ..BreakerConfig::default() },
                    ..ProviderRoute::named("a")
                }]),
                ..RoutingConfig::default()
            },
            &[("a".to_string(), a.clone() as SharedProvider), ("local".to_string(), b.clone() as SharedProvider)].into(),
        )
        .is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_longer_ones_fall_back() {
        let limited = || ProviderError::RateLimited { retry_after: Some(Duration::from_millis(1_500)) };
        let a = scripted("a", vec![Err(limited), Ok(live())]);
        let r = router(vec![route("a", 2, 10)], std::slice::from_ref(&a));
        let started = Instant::now();
        let routed = r.route(call()).await;
        assert_eq!(routed.answer.expect("answer").provider, "a");
        // Two 10 ms calls and exactly the server's delay between them.
        assert_eq!(started.elapsed(), Duration::from_millis(1_520));
        // Beyond max_delay_ms the chain moves on instead of waiting.
        let too_long = || ProviderError::RateLimited { retry_after: Some(Duration::from_secs(60)) };
        let a = scripted("a", vec![Err(too_long)]);
        let b = scripted("b", vec![Ok(live())]);
        let r = router(vec![route("a", 3, 10), route("b", 1, 10)], &[a.clone(), b]);
        let started = Instant::now();
        assert_eq!(r.route(call()).await.answer.expect("answer").provider, "b");
        assert_eq!(a.calls.load(Ordering::SeqCst), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn hedge_starts_the_second_provider_after_the_delay() {
        let slow = Arc::new(Scripted {
            name: "slow",
            script: vec![Ok(live())],
            calls: AtomicU32::new(0),
            delay: Duration::from_millis(150),
        });
        let fast = scripted("fast", vec![Ok(live())]);
        let mut chain = RouteConfig::with_chain(vec![route("slow", 1, 10), route("fast", 1, 10)]);
        chain.hedge = Some(HedgeConfig { delay_ms: Some(50), percentile: 0.9, min_samples: 20, min_delay_ms: 50 });
        let map: HashMap<String, SharedProvider> = [
            ("slow".to_string(), slow.clone() as SharedProvider),
            ("fast".to_string(), fast.clone() as SharedProvider),
            ("local".to_string(), scripted("local", vec![Ok(live())]) as SharedProvider),
        ]
        .into();
        let r = build(&RoutingConfig { liveness: chain, ..RoutingConfig::default() }, &map).expect("router");
        let started = Instant::now();
        let routed = r.route(call()).await;
        // The hedge starts at 50 ms and answers 10 ms later, well before the primary's 150 ms.
        assert_eq!(routed.answer.expect("answer").provider, "fast");
        assert_eq!(started.elapsed(), Duration::from_millis(60));
        let seen: Vec<(&str, AttemptOutcome)> = routed.attempts.iter().map(|a| (a.provider.as_str(), a.outcome)).collect();
        assert_eq!(seen, [("fast", AttemptOutcome::Ok), ("slow", AttemptOutcome::Cancelled)]);
        assert_eq!(routed.attempts[1].latency_ms, 60.0);
    }

    #[tokio::test(start_paused = true)]
    async fn unsupported_and_unknown_providers() {
        let a = scripted("a", vec![Ok(live())]);
        let config = RoutingConfig {
            document_ocr: RouteConfig::with_chain(vec![ProviderRoute::named("a")]),
            liveness: RouteConfig::with_chain(vec![ProviderRoute::named("a")]),
            face_compare: RouteConfig::with_chain(vec![ProviderRoute::named("a")]),
        };
        let map: HashMap<String, SharedProvider> = [("a".to_string(), a.clone() as SharedProvider)].into();
        let r = build(&config, &map).expect("router");
        let routed = r.route(SubCall::DocumentOcr { pages: vec![] }).await;
        assert_eq!(routed.attempts[0].outcome, AttemptOutcome::Skipped);
        let ready = r.readiness();
        assert!(ready.iter().any(|(k, s)| *k == SubCallKind::Liveness && s.is_ok()));
        assert!(ready.iter().any(|(k, s)| *k == SubCallKind::DocumentOcr && s.is_err()));

        let bad = RoutingConfig { liveness: RouteConfig::with_chain(vec![ProviderRoute::named("ghost")]), ..config };
        assert!(matches!(build(&bad, &map), Err(RoutingError::UnknownProvider { .. })));
    }
}
