//! Admission gates checked before a provider is called: a rate limit (token bucket) and a daily
//! spend budget. A closed gate skips the provider for the next one in the chain (recorded as
//! `skipped` with the reason) rather than queueing: the chain exists to answer elsewhere.
//!
//! With the Redis store, the bucket and the day's spend live in Redis ([`SharedLimits`], like
//! Kong's `policy = redis`), so N instances share one limit and one budget instead of spending
//! N. If Redis cannot be reached, each instance falls back to its own local gates (which are
//! always kept up to date), so an outage degrades to per-instance limits, never to none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{NaiveDate, Utc};
use tokio::time::Instant;

use super::config::{ProviderRoute, RateLimitConfig};

/// Refills `per_second` tokens a second up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    cfg: RateLimitConfig,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self { cfg, state: Mutex::new((f64::from(cfg.burst.max(1)), Instant::now())) }
    }

    /// Takes a token if one is there.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// As `try_take`, at a given time (tests pass their own clock).
    fn try_take_at(&self, now: Instant) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let refill = now.saturating_duration_since(s.1).as_secs_f64() * self.cfg.per_second;
        s.0 = (s.0 + refill).min(f64::from(self.cfg.burst.max(1)));
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Spend per UTC day at one provider (this instance's share).
#[derive(Debug)]
pub struct DailyBudget {
    limit: f64,
    state: Mutex<(NaiveDate, f64)>,
}

impl DailyBudget {
    pub fn new(limit: f64) -> Self {
        Self { limit, state: Mutex::new((Utc::now().date_naive(), 0.0)) }
    }

    fn today(&self) -> std::sync::MutexGuard<'_, (NaiveDate, f64)> {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let today = Utc::now().date_naive();
        if s.0 != today {
            *s = (today, 0.0);
        }
        s
    }

    /// Whether another call costing `cost` still fits.
    pub fn allows(&self, cost: f64) -> bool {
        self.today().1 + cost <= self.limit + f64::EPSILON
    }

    pub fn charge(&self, amount: f64) {
        self.today().1 += amount;
    }

    pub fn spent(&self) -> f64 {
        self.today().1
    }
}

/// Gate state shared by every gateway instance through Redis: one token bucket and one spend
/// counter per UTC day for each (sub-call, provider) route.
pub struct SharedLimits {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    admit: redis::Script,
    /// Set while Redis is failing, so the fallback is logged once per outage, not per call.
    degraded: AtomicBool,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Budget first (a spent provider must not drain its bucket), then the bucket, in one atomic
/// step on Redis's own clock (instances' clocks may differ).
/// KEYS: bucket hash, today's spend. ARGV: per_second (0 = no bucket), burst, cost, budget
/// (negative = none), bucket TTL ms. Returns {0} admitted, {1, spent} budget spent, {2} empty.
const ADMIT_LUA: &str = r"
local budget = tonumber(ARGV[4])
if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent + tonumber(ARGV[3]) > budget + 1e-9 then return {1, tostring(spent)} end
end
local rate = tonumber(ARGV[1])
if rate > 0 then
  local burst = tonumber(ARGV[2])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local admitted = tokens >= 1
  if admitted then tokens = tokens - 1 end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if not admitted then return {2} end
end
return {0}
";

/// A day's spend key outlives its day by one more, then expires by itself.
const BUDGET_TTL_SECS: i64 = 2 * 24 * 3600;

impl SharedLimits {
    /// Connects to the Redis the task store uses; keys go under `<namespace>:gate:`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(2))
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        Ok(Arc::new(Self {
            conn,
            prefix: format!("{namespace}:gate"),
            admit: redis::Script::new(ADMIT_LUA),
            degraded: AtomicBool::new(false),
        }))
    }

    fn keys(&self, route: &str) -> (String, String) {
        let day = Utc::now().date_naive();
        (format!("{}:bucket:{route}", self.prefix), format!("{}:spent:{route}:{day}", self.prefix))
    }

    /// Logs the first failure of an outage and the recovery, not every call in between.
    fn note(&self, result: Result<(), &redis::RedisError>) {
        match result {
            Ok(()) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Shared rate limits and budgets reachable again");
                }
            }
            Err(e) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "Shared rate limits unreachable: using this instance's own gates");
                }
            }
        }
    }
}

/// What the shared gates answered.
enum SharedVerdict {
    Admitted,
    BudgetSpent(f64),
    RateLimited,
}

/// A route's spend today (UTC) against its daily budget, for the operator's routing view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub cost_per_call: f64,
    /// Spent today: every instance's together when shared through Redis. `None` without a
    /// budget (spend is only counted where a budget needs it).
    pub spent_today: Option<f64>,
    pub daily_budget: Option<f64>,
}

/// The gates of one (sub-call, provider) route.
#[derive(Debug)]
pub struct Gates {
    rate: Option<TokenBucket>,
    budget: Option<DailyBudget>,
    cost: f64,
    /// Redis-backed state and this route's key (`<sub_call>:<provider>`), when shared.
    shared: Option<(Arc<SharedLimits>, String)>,
}

impl Gates {
    pub fn new(route: &ProviderRoute) -> Self {
        Self {
            rate: route.rate_limit.map(TokenBucket::new),
            budget: route.daily_budget.map(DailyBudget::new),
            cost: route.cost_per_call,
            shared: None,
        }
    }

    /// As `new`, with the state shared through Redis under `route_key`.
    pub fn shared(route: &ProviderRoute, limits: Arc<SharedLimits>, route_key: String) -> Self {
        Self { shared: Some((limits, route_key)), ..Self::new(route) }
    }

    fn limited(&self) -> bool {
        self.rate.is_some() || self.budget.is_some()
    }

    /// `Err(reason)` when the provider must be passed over now. The budget is checked before a
    /// token is taken, so a spent provider does not drain its bucket.
    pub async fn admit(&self) -> Result<(), String> {
        if let (Some((limits, route)), true) = (&self.shared, self.limited()) {
            match self.admit_shared(limits, route).await {
                Ok(SharedVerdict::Admitted) => return Ok(()),
                Ok(SharedVerdict::BudgetSpent(spent)) => return Err(self.budget_reason(spent)),
                Ok(SharedVerdict::RateLimited) => return Err(self.rate_reason()),
                Err(()) => {} // Redis unreachable: this instance's own gates decide.
            }
        }
        self.admit_local()
    }

    async fn admit_shared(&self, limits: &SharedLimits, route: &str) -> Result<SharedVerdict, ()> {
        let (bucket, spent) = limits.keys(route);
        let (per_second, burst, ttl_ms) = match &self.rate {
            Some(r) => {
                let burst = f64::from(r.cfg.burst.max(1));
                // Kept while it could still be refilling, and at least a minute.
                let ttl = (burst / r.cfg.per_second * 1000.0).clamp(60_000.0, 86_400_000.0);
                (r.cfg.per_second, burst, ttl as u64)
            }
            None => (0.0, 0.0, 60_000),
        };
        let budget = self.budget.as_ref().map_or(-1.0, |b| b.limit);
        let mut conn = limits.conn.clone();
        let answer: Result<Vec<String>, _> = limits
            .admit
            .key(bucket)
            .key(spent)
            .arg(per_second)
            .arg(burst)
            .arg(self.cost)
            .arg(budget)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await;
        limits.note(answer.as_ref().map(|_| ()));
        let answer = answer.map_err(|_| ())?;
        // Keep the local bucket drained in step, so a fallback starts from a fair state.
        let verdict = match answer.first().map(String::as_str) {
            Some("0") => SharedVerdict::Admitted,
            Some("1") => SharedVerdict::BudgetSpent(answer.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.0)),
            Some("2") => SharedVerdict::RateLimited,
            _ => return Err(()),
        };
        if matches!(verdict, SharedVerdict::Admitted) {
            if let Some(r) = &self.rate {
                let _ = r.try_take();
            }
        }
        Ok(verdict)
    }

    fn admit_local(&self) -> Result<(), String> {
        if let Some(b) = &self.budget {
            if !b.allows(self.cost) {
                return Err(self.budget_reason(b.spent()));
            }
        }
        if let Some(r) = &self.rate {
            if !r.try_take() {
                return Err(self.rate_reason());
            }
        }
        Ok(())
    }

    fn budget_reason(&self, spent: f64) -> String {
        let limit = self.budget.as_ref().map_or(0.0, |b| b.limit);
        format!("daily budget spent ({spent:.2} of {limit:.2})")
    }

    fn rate_reason(&self) -> String {
        format!("rate limit ({}/s) reached", self.rate.as_ref().map_or(0.0, |r| r.cfg.per_second))
    }

    /// Today's spend against the budget: read from Redis when shared (this instance's own count
    /// if Redis cannot be reached), else this instance's.
    pub async fn spend(&self) -> Spend {
        let Some(budget) = &self.budget else {
            return Spend { cost_per_call: self.cost, spent_today: None, daily_budget: None };
        };
        let mut spent = budget.spent();
        if let Some((limits, route)) = &self.shared {
            let (_, key) = limits.keys(route);
            let mut conn = limits.conn.clone();
            let shared: Result<Option<f64>, redis::RedisError> = redis::cmd("GET").arg(&key).query_async(&mut conn).await;
            limits.note(shared.as_ref().map(|_| ()));
            if let Ok(shared) = shared {
                spent = shared.unwrap_or(0.0);
            }
        }
        Spend { cost_per_call: self.cost, spent_today: Some(spent), daily_budget: Some(budget.limit) }
    }

    /// Charges `attempts` calls to the budget (locally, and to the shared day when shared);
    /// returns the amount charged.
    pub async fn charge(&self, attempts: u32) -> f64 {
        let amount = self.cost * f64::from(attempts);
        let Some(b) = &self.budget else { return amount };
        b.charge(amount);
        if let (Some((limits, route)), true) = (&self.shared, amount > 0.0) {
            let (_, spent) = limits.keys(route);
            let mut conn = limits.conn.clone();
            let result: Result<(), redis::RedisError> = redis::pipe()
                .atomic()
                .cmd("INCRBYFLOAT")
                .arg(&spent)
                .arg(amount)
                .ignore()
                .cmd("EXPIRE")
                .arg(&spent)
                .arg(BUDGET_TTL_SECS)
                .ignore()
                .query_async(&mut conn)
                .await;
            limits.note(result.as_ref().map(|_| ()));
        }
        amount
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let b = TokenBucket::new(RateLimitConfig { per_second: 10.0, burst: 2 });
        let t0 = b.state.lock().expect("lock").1;
        assert!(b.try_take_at(t0));
        assert!(b.try_take_at(t0));
        assert!(!b.try_take_at(t0));
        let later = t0 + std::time::Duration::from_millis(100);
        assert!(b.try_take_at(later));
        assert!(!b.try_take_at(later));
        // Idle for long: never more than the burst.
        let much_later = later + std::time::Duration::from_secs(60);
        assert!(b.try_take_at(much_later) && b.try_take_at(much_later));
        assert!(!b.try_take_at(much_later));
    }

    #[test]
    fn budget_stops_admitting_when_spent() {
        let route = ProviderRoute { cost_per_call: 0.4, daily_budget: Some(1.0), ..ProviderRoute::named("p") };
        let g = Gates::new(&route);
        assert!(g.admit_local().is_ok());
        futures::executor::block_on(g.charge(2));
        assert!(g.admit_local().is_err(), "0.8 spent + 0.4 exceeds 1.0");
        let unlimited = Gates::new(&ProviderRoute::named("q"));
        futures::executor::block_on(unlimited.charge(1000));
        assert!(unlimited.admit_local().is_ok());
    }
}
