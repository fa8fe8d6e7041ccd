//! The request every layer sees (the sub-call plus the shared attempt log) and the leaf service
//! that hands it to a provider.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use super::Attempt;
use crate::providers::{Answer, ProviderError, SharedProvider, SubCall};

/// Attempts of one routed sub-call, shared by every layer that records into it.
#[derive(Debug, Clone, Default)]
pub struct AttemptLog(Arc<Mutex<Vec<Attempt>>>);

impl AttemptLog {
    /// Appends an attempt.
    pub fn push(&self, attempt: Attempt) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(attempt);
    }

    /// Attempts recorded so far.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many attempts `provider` has had so far (the next one is this + 1).
    pub fn count_for(&self, provider: &str) -> u32 {
        let log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().filter(|a| a.provider == provider && a.outcome.made_call()).count() as u32
    }

    /// A copy of the attempts, in order.
    pub fn snapshot(&self) -> Vec<Attempt> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// What flows through a provider stack. Cloning is cheap (image bytes are shared).
#[derive(Debug, Clone)]
pub struct RouteRequest {
    pub call: SubCall,
    pub log: AttemptLog,
}

/// The innermost service: one call to a provider.
#[derive(Clone)]
pub struct ProviderService {
    provider: SharedProvider,
}

impl ProviderService {
    pub fn new(provider: SharedProvider) -> Self {
        Self { provider }
    }
}

impl tower::Service<RouteRequest> for ProviderService {
    type Response = Answer;
    type Error = ProviderError;
    type Future = BoxFuture<'static, Result<Answer, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RouteRequest) -> Self::Future {
        let provider = self.provider.clone();
        Box::pin(async move { provider.call(req.call).await })
    }
}
