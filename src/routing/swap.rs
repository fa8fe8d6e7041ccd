//! A router whose chains can be replaced while the gateway runs (configuration reload).
//!
//! New tasks take the chains in force; a task keeps the chains its first sub-call saw until it
//! ends ([`pinned`] scopes a task), so a reload never mixes two configurations in one result.

use std::cell::OnceCell;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use super::{CircuitState, RouteContext, Routed, SubCallOverview, SubCallRouter};
use crate::providers::{SubCall, SubCallKind};

tokio::task_local! {
    /// The router a running task started with (set on its first sub-call).
    static PINNED: OnceCell<Arc<dyn SubCallRouter>>;
}

/// Runs `task` with its router pinned: every sub-call inside it is routed by the router that was
/// current at its first sub-call, whatever is swapped in meanwhile.
pub async fn pinned<F: Future>(task: F) -> F::Output {
    PINNED.scope(OnceCell::new(), task).await
}

/// Routes through whichever router was swapped in last.
pub struct SwappableRouter {
    // A read lock held only to clone an `Arc`: no await happens under it.
    current: RwLock<Arc<dyn SubCallRouter>>,
}

impl SwappableRouter {
    pub fn new(router: Arc<dyn SubCallRouter>) -> Self {
        Self { current: RwLock::new(router) }
    }

    /// The router new tasks get.
    pub fn current(&self) -> Arc<dyn SubCallRouter> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Puts `router` in force for tasks that have not routed yet; running ones keep theirs.
    pub fn swap(&self, router: Arc<dyn SubCallRouter>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = router;
    }

    /// This task's router: the pinned one, pinning the current one on first use.
    fn for_task(&self) -> Arc<dyn SubCallRouter> {
        PINNED.try_with(|cell| cell.get_or_init(|| self.current()).clone()).unwrap_or_else(|_| self.current())
    }
}

#[async_trait::async_trait]
impl SubCallRouter for SwappableRouter {
    async fn route(&self, call: SubCall) -> Routed {
        self.for_task().route(call).await
    }

    async fn route_with(&self, call: SubCall, ctx: &RouteContext) -> Routed {
        self.for_task().route_with(call, ctx).await
    }

    fn readiness(&self) -> Vec<(SubCallKind, Result<(), String>)> {
        self.current().readiness()
    }

    fn circuits(&self) -> Vec<(SubCallKind, Vec<(String, CircuitState)>)> {
        self.current().circuits()
    }

    async fn overview(&self) -> Vec<SubCallOverview> {
        self.current().overview().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Image;
    use crate::routing::{Attempt, AttemptOutcome};

    /// A router that names itself in the one attempt it records.
    struct Named(&'static str);

    #[async_trait::async_trait]
    impl SubCallRouter for Named {
        async fn route(&self, call: SubCall) -> Routed {
            let attempt =
                Attempt { provider: self.0.into(), attempt: 1, latency_ms: 0.0, outcome: AttemptOutcome::Ok, reason: None, code: None };
            Routed { kind: call.kind(), answer: None, attempts: vec![attempt] }
        }

        fn readiness(&self) -> Vec<(SubCallKind, Result<(), String>)> {
            Vec::new()
        }
    }

    fn call() -> SubCall {
        SubCall::Liveness { image: Image { bytes: bytes::Bytes::from_static(b"x"), mime: "image/png" } }
    }

    async fn routed_by(router: &SwappableRouter) -> String {
        router.route(call()).await.attempts[0].provider.clone()
    }

    #[tokio::test]
    async fn a_task_keeps_its_router_across_a_swap_and_new_tasks_get_the_new_one() {
        let router = SwappableRouter::new(Arc::new(Named("old")));
        let task = pinned(async {
            let first = routed_by(&router).await;
            router.swap(Arc::new(Named("new")));
            let second = routed_by(&router).await;
            (first, second)
        })
        .await;
        assert_eq!(task, ("old".to_string(), "old".to_string()));
        assert_eq!(pinned(routed_by(&router)).await, "new");
        // Outside any task scope: always the current one.
        assert_eq!(routed_by(&router).await, "new");
    }
}
