//! Admission gates checked before a provider is called: a rate limit (token bucket) and a daily
//! spend budget. A closed gate skips the provider for the next one in the chain (recorded as
//! `skipped` with the reason) rather than queueing: the chain exists to answer elsewhere.

use std::sync::{Mutex, PoisonError};

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

/// The gates of one (sub-call, provider) route.
#[derive(Debug)]
pub struct Gates {
    rate: Option<TokenBucket>,
    budget: Option<DailyBudget>,
    cost: f64,
}

impl Gates {
    pub fn new(route: &ProviderRoute) -> Self {
        Self {
            rate: route.rate_limit.map(TokenBucket::new),
            budget: route.daily_budget.map(DailyBudget::new),
            cost: route.cost_per_call,
        }
    }

    /// `Err(reason)` when the provider must be passed over now. The budget is checked before a
    /// token is taken, so a spent provider does not drain its bucket.
    pub fn admit(&self) -> Result<(), String> {
        if let Some(b) = &self.budget {
            if !b.allows(self.cost) {
                return Err(format!("daily budget spent ({:.2} of {:.2})", b.spent(), b.limit));
            }
        }
        if let Some(r) = &self.rate {
            if !r.try_take() {
                return Err(format!("rate limit ({}/s) reached", r.cfg.per_second));
            }
        }
        Ok(())
    }

    /// Charges `attempts` calls to the budget; returns the amount charged.
    pub fn charge(&self, attempts: u32) -> f64 {
        let amount = self.cost * f64::from(attempts);
        if let Some(b) = &self.budget {
            b.charge(amount);
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
        assert!(g.admit().is_ok());
        g.charge(2);
        assert!(g.admit().is_err(), "0.8 spent + 0.4 exceeds 1.0");
        let unlimited = Gates::new(&ProviderRoute::named("q"));
        unlimited.charge(1000);
        assert!(unlimited.admit().is_ok());
    }
}
