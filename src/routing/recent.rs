//! The last [`CAPACITY`] attempts at one (sub-call, provider) route, for the operator's routing
//! view: latency percentiles and error rate of what the provider did lately. Written by the
//! attempt recorder (`record.rs`), read by `ChainRouter::overview`; a fixed ring, so memory
//! stays bounded however long the gateway runs. Not hedging's window (`policy::LatencyWindow`):
//! that one keeps successes only.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::AttemptOutcome;

/// Attempts kept per route.
pub const CAPACITY: usize = 256;

/// One attempt that reached the provider.
#[derive(Debug, Clone, Copy)]
struct Sample {
    latency_ms: f64,
    failed: bool,
}

/// A bounded ring of one route's recent attempts.
#[derive(Debug, Default)]
pub struct RecentAttempts(Mutex<VecDeque<Sample>>);

/// What the ring says now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentSummary {
    /// Attempts in the ring (at most [`CAPACITY`]).
    pub calls: usize,
    /// Latency percentiles (nearest rank, ms); `None` before the first attempt.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Share of attempts that failed (`error`; a vendor's input rejection is an answer).
    pub error_rate: Option<f64>,
}

impl RecentAttempts {
    /// Records an attempt that was made (a skip made no call and is not recorded).
    pub fn record(&self, latency_ms: f64, outcome: AttemptOutcome) {
        if !outcome.made_call() || outcome == AttemptOutcome::Cancelled {
            return;
        }
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(Sample { latency_ms, failed: outcome == AttemptOutcome::Error });
    }

    pub fn summary(&self) -> RecentSummary {
        let samples: Vec<Sample> = self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect();
        let calls = samples.len();
        let mut latencies: Vec<f64> = samples.iter().map(|s| s.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let rank = |p: f64| -> Option<f64> {
            let n = latencies.len();
            // Nearest rank: the smallest value with at least p of the samples at or below it.
            (n > 0).then(|| latencies[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        let failed = samples.iter().filter(|s| s.failed).count();
        RecentSummary {
            calls,
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            error_rate: (calls > 0).then(|| failed as f64 / calls as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_error_rate_over_the_last_attempts_only() {
        let ring = RecentAttempts::default();
        assert_eq!(ring.summary(), RecentSummary { calls: 0, p50_ms: None, p95_ms: None, p99_ms: None, error_rate: None });
        // 100 old slow failures, then CAPACITY fast answers 1..=CAPACITY ms push them all out.
        for _ in 0..100 {
            ring.record(5_000.0, AttemptOutcome::Error);
        }
        for i in 1..=CAPACITY {
            let outcome = if i % 4 == 0 { AttemptOutcome::Error } else { AttemptOutcome::Ok };
            ring.record(i as f64, outcome);
        }
        ring.record(1.0, AttemptOutcome::Skipped);
        ring.record(1.0, AttemptOutcome::Cancelled);
        let s = ring.summary();
        assert_eq!(s.calls, CAPACITY);
        assert_eq!((s.p50_ms, s.p95_ms, s.p99_ms), (Some(128.0), Some(244.0), Some(254.0)));
        assert_eq!(s.error_rate, Some(0.25));
        // Four rejections push out attempts 1..=4 (one of them an error): a rejection is an answer.
        for _ in 0..4 {
            ring.record(3.0, AttemptOutcome::Rejected);
        }
        assert_eq!(ring.summary().error_rate, Some(63.0 / 256.0));
    }
}
