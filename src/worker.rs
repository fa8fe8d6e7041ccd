//! Workers: claim a task from the store, run the pipeline, store the result, acknowledge.
//!
//! At-least-once: a task is acknowledged only together with its result (`complete`); while it
//! runs, a heartbeat keeps the lease, so a crashed instance's tasks are reclaimed by others.
//! Shutdown: the `stop` watch flips, loops finish their current task and return.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::pipeline::{Finished, Pipeline, PipelineError};
use crate::tasks::store::{Claimed, SharedStore, StoreError};
use crate::tasks::{FailureReason, TaskInput, TaskOutcome};

/// Settings for this instance's workers.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This instance's consumer name (unique per process).
    pub name: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How often a running task's lease is renewed.
    pub heartbeat: Duration,
    /// How long one claim call waits for work.
    pub poll: Duration,
}

/// Starts `concurrency` worker loops; they stop when `stop` becomes true.
pub fn spawn(
    store: SharedStore,
    pipeline: Arc<Pipeline>,
    settings: WorkerSettings,
    stop: watch::Receiver<bool>,
    runtime: &tokio::runtime::Handle,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for i in 0..settings.concurrency.max(1) {
        let store = store.clone();
        let pipeline = pipeline.clone();
        let mut stop = stop.clone();
        let name = settings.name.clone();
        let s = settings.clone();
        set.spawn_on(async move {
            tracing::debug!(worker = %name, slot = i, "Worker started");
            let mut backoff = Duration::from_millis(100);
            loop {
                if *stop.borrow() {
                    break;
                }
                let claimed = tokio::select! {
                    c = store.claim(&name, s.poll) => c,
                    _ = stop.changed() => break,
                };
                match claimed {
                    Ok(Some(task)) => {
                        backoff = Duration::from_millis(100);
                        run_one(&store, &pipeline, &name, s.heartbeat, task).await;
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::warn!(worker = %name, error = %err, "Claiming failed; backing off");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.changed() => break,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }, runtime);
    }
    set
}

/// A runtime of its own for task work (claims, sub-calls, the local provider's models), at a
/// lower OS priority than the API's threads, so that on a busy machine a client's request is
/// served before the work of tasks already accepted. Opt-in (`[worker] threads`): on two cores,
/// 64 workers and vendors answering at once it halved the memory store's added p50 but raised
/// p99 from about 2 ms to 6–10 ms and cost 10–14% of throughput (docs/PERFORMANCE.md).
/// Dropping it stops its threads without waiting: `serve` has joined the workers by then.
pub struct TaskRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl TaskRuntime {
    /// `threads` threads (at least 1) at `nice` more niceness than the process (0 to 19; Linux
    /// only, elsewhere the threads keep the process's priority).
    pub fn new(threads: usize, nice: i32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("kycgate-task")
            .enable_all()
            .on_thread_start(move || lower_priority(nice))
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self { runtime: Some(runtime), handle })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for TaskRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Not `drop`: dropping a runtime blocks, which panics inside the API's runtime.
            runtime.shutdown_background();
        }
    }
}

/// Raises this thread's niceness (lowers its priority) by `nice`, from whatever the process
/// runs at (Linux's `nice` applies to the calling thread only).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: errno is thread-local; `nice` changes only this thread's priority.
    let failed = unsafe {
        *libc::__errno_location() = 0;
        libc::nice(nice) == -1 && *libc::__errno_location() != 0
    };
    if failed {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "Could not lower the task threads' priority");
    }
}

/// This thread's niceness.
#[cfg(all(test, target_os = "linux"))]
fn niceness() -> i32 {
    // SAFETY: reads this thread's own priority.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

/// Runs one claimed task to completion, renewing its lease meanwhile.
async fn run_one(store: &SharedStore, pipeline: &Arc<Pipeline>, worker: &str, heartbeat: Duration, mut task: Claimed) {
    let id = task.id;
    if let Err(err) = store.start(worker, &task).await {
        tracing::warn!(task = %id, error = %err, "Could not mark task started");
        if matches!(err, StoreError::LeaseLost | StoreError::IllegalTransition { .. }) {
            return;
        }
    }
    let today = chrono::Utc::now().date_naive();
    // The pipeline runs in its own task so a panic in a provider becomes a FAILURE, not a
    // silently dead worker slot.
    let run = {
        let pipeline = pipeline.clone();
        // The pipeline owns the images (and frees each when done with it); the worker keeps
        // the rest of the input for the store and the metrics.
        let input = TaskInput { upload: task.input.upload.take_images(), ..task.input.clone() };
        let late_selfie = task.late_selfie;
        tokio::spawn(async move { pipeline.run_claimed(id, input, late_selfie, today).await })
    };
    tokio::pin!(run);
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let outcome = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = ticker.tick() => {
                if let Err(err) = store.heartbeat(worker, &task).await {
                    tracing::warn!(task = %id, error = %err, "Heartbeat failed");
                    if matches!(err, StoreError::LeaseLost) {
                        // Another instance owns it now; let it finish.
                        run.abort();
                        return;
                    }
                }
            }
        }
    };
    let finished = match outcome {
        Ok(Ok(finished)) => finished,
        // Deleted or expired while it ran: what a claim finding no input records.
        Ok(Err(PipelineError::SelfieGone)) => TaskOutcome::from(FailureReason::InputExpired).into(),
        Ok(Err(err)) => {
            tracing::warn!(task = %id, error = %err, "Task could not run");
            TaskOutcome::from(FailureReason::Store(err.to_string())).into()
        }
        Err(join) => {
            tracing::error!(task = %id, error = %join, "Task panicked");
            TaskOutcome::from(FailureReason::Panicked).into()
        }
    };
    store_outcome(store, worker, &task, finished).await;
}

/// Completes the task with its outcome and media. The outcome must not be lost to a passing
/// store outage: retried a few times, after which the lease lapses and the task runs again.
async fn store_outcome(store: &SharedStore, worker: &str, task: &Claimed, finished: Finished) {
    let id = task.id;
    let Finished { outcome, media } = finished;
    let status = outcome.status();
    let code = crate::api::result::status_code(&outcome);
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        match store.complete_with(worker, task, outcome.clone(), &media).await {
            Ok(()) => {
                tracing::info!(task = %id, status = status.as_str(), "Task finished");
                let elapsed = since_submit(task);
                crate::telemetry::metrics().task_finished(task.input.service().as_str(), status.as_str(), code.into(), elapsed);
                return;
            }
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(task = %id, error = %e, "Storing result failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::warn!(task = %id, error = %err, "Result not stored");
                return;
            }
        }
    }
    tracing::error!(task = %id, "Result could not be stored; the task will be reclaimed and run again");
}

/// Time since the task was submitted, for the duration metric; `None` when the store could not
/// say (then no duration is recorded).
fn since_submit(task: &Claimed) -> Option<Duration> {
    let ms = crate::tasks::now_ms().saturating_sub(task.submitted_ms?).max(0);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    //! The worker's timing logic (lease heartbeats while a task runs) on a paused tokio clock.
    use bytes::Bytes;
    use tokio::time::Instant;

    use super::*;
    use crate::providers::{SubCall, SubCallKind};
    use crate::routing::{Routed, SubCallRouter};
    use crate::tasks::store::memory::MemoryStore;
    use crate::tasks::store::Ttls;
    use crate::tasks::{now_ms, ServiceInput, TaskId, TaskRecord, TaskStatus};

    /// A router whose every sub-call takes `delay` and gets no answer.
    struct SlowRouter(Duration);

    #[async_trait::async_trait]
    impl SubCallRouter for SlowRouter {
        async fn route(&self, call: SubCall) -> Routed {
            tokio::time::sleep(self.0).await;
            Routed { kind: call.kind(), answer: None, attempts: Vec::new() }
        }

        fn readiness(&self) -> Vec<(SubCallKind, Result<(), String>)> {
            Vec::new()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_hold_the_lease_of_a_task_that_outlives_it() {
        // A 1 s lease and a 10 s sub-call: only the heartbeat keeps a rival from taking it.
        let hour = Duration::from_secs(3600);
        let store: SharedStore = Arc::new(MemoryStore::new(Ttls { task: hour, face: hour, lease: Duration::from_secs(1) }));
        let pipeline = Arc::new(Pipeline::new(Arc::new(SlowRouter(Duration::from_secs(10))), store.clone(), None));
        let input = TaskInput {
            upload: ServiceInput::FaceLiveness { selfie: Bytes::from_static(b"jpeg") },
            owner: "alice".into(),
            extend_data: false,
            trace_context: None,
            base_url: None,
        };
        let id = TaskId::new();
        store.submit(TaskRecord::new(id, &input, now_ms()), input).await.expect("submit");

        let (stop, stopped) = watch::channel(false);
        let settings = WorkerSettings {
            name: "w1".into(),
            concurrency: 1,
            heartbeat: Duration::from_millis(300),
            poll: Duration::from_millis(100),
        };
        let mut workers = spawn(store.clone(), pipeline, settings, stopped, &tokio::runtime::Handle::current());
        let status = |store: SharedStore| async move { store.get(id).await.expect("get").expect("record").status };
        while status(store.clone()).await == TaskStatus::Pending {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        while !status(store.clone()).await.is_finished() {
            let stolen = store.claim("rival", Duration::from_millis(200)).await.expect("claim");
            assert!(stolen.is_none(), "the lease lapsed after {:?} despite heartbeats", started.elapsed());
        }
        assert!(started.elapsed() >= Duration::from_secs(10), "finished after {:?}", started.elapsed());

        // No provider answered: the worker stored the pipeline's outcome, not a failure of its own.
        let record = store.get(id).await.expect("get").expect("record");
        assert_eq!(record.status, TaskStatus::Failure);
        assert!(matches!(record.outcome, Some(TaskOutcome::Unanswered { .. })), "{:?}", record.outcome);
        stop.send(true).expect("workers listen");
        while workers.join_next().await.is_some() {}
    }

    /// Task threads run below the API's priority: a client's request is served first.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn task_threads_run_at_a_lower_priority() {
        let api = super::niceness();
        let tasks = TaskRuntime::new(1, 7).expect("runtime");
        let on_task_thread = tasks.handle().spawn(async { super::niceness() }).await.expect("task");
        assert_eq!(on_task_thread, (api + 7).min(19));
        assert_eq!(super::niceness(), api, "the API's thread keeps its priority");
        let same = TaskRuntime::new(1, 0).expect("runtime");
        assert_eq!(same.handle().spawn(async { super::niceness() }).await.expect("task"), api);
    }

}
