//! Task stores: where task records, uploaded images, portraits and registered faces live, and
//! how work is handed to workers.
//!
//! Two implementations pass one conformance suite (`tests/gateway/store_conformance.rs`):
//! [`memory::MemoryStore`] (embedded default, one node) and [`redis::RedisStore`] (production,
//! many gateway instances; at-least-once delivery through a Redis Stream consumer group).

mod codec;
pub mod memory;
pub mod once;
pub mod redis;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{ServiceKind, TaskId, TaskInput, TaskOutcome, TaskRecord, TaskStatus};

/// Store failures. Callers act on the variant, never on message text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached (Redis down): retry later, nothing was lost.
    #[error("task store unavailable: {0}")]
    Unavailable(String),
    /// The task does not exist (or expired).
    #[error("task not found")]
    NotFound,
    /// The caller's lease on the task was lost (another worker reclaimed it) or it is finished.
    #[error("task is no longer held by this worker")]
    LeaseLost,
    /// The requested status change would go backwards or touch a finished task.
    #[error("illegal status transition {from:?} -> {to:?}")]
    IllegalTransition { from: TaskStatus, to: TaskStatus },
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A queue bound is reached ([`QueueLimits`]): nothing was stored; retry after a while.
    #[error("queue full ({scope}): retry after {retry_after:?}")]
    Full { scope: FullScope, retry_after: Duration },
    /// The idempotency key was already used by this owner for a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
}

/// Which bound refused a submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullScope {
    /// The owner has `max_queued_per_owner` unfinished tasks.
    Owner,
    /// The store holds `max_queued_tasks` unfinished tasks or `max_queued_bytes` of their images.
    Queue,
}

impl std::fmt::Display for FullScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Owner => "owner",
            Self::Queue => "queue",
        })
    }
}

/// Bounds on unfinished (queued or running) tasks: past them `submit` is `Full`, so a burst
/// of uploads costs the store a known amount, not all of its memory.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Unfinished tasks in the store (per instance for memory, in total for Redis).
    pub max_tasks: u64,
    /// Their image bytes (likewise).
    pub max_bytes: u64,
    /// Unfinished tasks of one owner (held across instances on Redis).
    pub max_per_owner: u64,
    /// What a refused client is told to wait (`Retry-After`).
    pub retry_after: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self { max_tasks: 10_000, max_bytes: 4 << 30, max_per_owner: 1_000, retry_after: Duration::from_secs(5) }
    }
}

/// What a store needs besides its lifetimes: bounds, per-owner retention, idempotency window,
/// and (memory store) where queued images go past a RAM bound.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub limits: QueueLimits,
    /// Per-owner task TTL overriding `Ttls::task` (records, inputs, portraits).
    pub retention: HashMap<String, Duration>,
    /// How long an `Idempotency-Key` maps to its task.
    pub idempotency_ttl: Duration,
    /// Memory store: image bytes of queued inputs held in RAM; past it inputs spill to
    /// `spill_dir`, or (without one) submits are `Full`.
    pub memory_max_bytes: u64,
    /// Memory store: directory for spilled inputs (created 0700, files named by task id).
    pub spill_dir: Option<PathBuf>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            limits: QueueLimits::default(),
            retention: HashMap::new(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            memory_max_bytes: 1 << 30,
            spill_dir: None,
        }
    }
}

impl StoreOptions {
    /// The task TTL for `owner`: its retention rule, else the global one.
    pub fn task_ttl(&self, ttls: &Ttls, owner: &str) -> Duration {
        self.retention.get(owner).copied().unwrap_or(ttls.task)
    }
}

/// A client's `Idempotency-Key` with a fingerprint of its request (hash of the form fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// What `submit_with` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The task was stored and queued.
    Created,
    /// The idempotency key already names this task (same request): nothing was stored.
    Existing(TaskId),
}

/// A task handed to one worker. The worker must `complete` it or keep it alive with `heartbeat`;
/// otherwise another worker reclaims it after the lease expires.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: TaskId,
    pub input: TaskInput,
    /// How many times this task has been handed out (1 on first delivery).
    pub deliveries: u32,
    /// Backend-specific delivery handle (the stream entry id for Redis).
    pub receipt: String,
    /// When the task was submitted (Unix ms), for the task-duration metric without reading the
    /// record back after completing it. Redis: the time in its stream entry id (the server's
    /// clock).
    pub submitted_ms: Option<i64>,
    /// The input's selfie was left in the store (Redis, `kyc_*`: it is checked only after
    /// document OCR) and is empty here: read it with [`TaskStore::late_image`] when needed.
    pub late_selfie: bool,
}

/// A media object (a portrait JPEG) a finished task keeps, under its store key ([`media_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMedia {
    pub key: String,
    pub bytes: Bytes,
}

/// Storage lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    /// Task records, inputs and portraits (KYC images must not linger). Default 24 h.
    pub task: Duration,
    /// Registered faces (`register_face`). Default 30 days.
    pub face: Duration,
    /// A claimed task whose worker has not heartbeated for this long is reclaimed.
    pub lease: Duration,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            task: Duration::from_secs(24 * 3600),
            face: Duration::from_secs(30 * 24 * 3600),
            lease: Duration::from_secs(60),
        }
    }
}

/// The task store. Every method is one atomic step on the backend.
#[async_trait::async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// Saves a new Pending record and its input, and queues it for a worker.
    async fn submit(&self, record: TaskRecord, input: TaskInput) -> Result<(), StoreError> {
        self.submit_with(record, input, None).await.map(|_| ())
    }

    /// `submit` with the queue bounds and an optional idempotency key, in one atomic step:
    /// a key already used by the owner with the same fingerprint gives back its task
    /// (`Existing`, nothing stored), with another fingerprint `IdempotencyConflict`; a bound
    /// reached is `Full`. The key is remembered for `StoreOptions::idempotency_ttl`.
    async fn submit_with(
        &self,
        record: TaskRecord,
        input: TaskInput,
        idempotency: Option<&Idempotency>,
    ) -> Result<Submitted, StoreError>;

    /// Deletes `owner`'s task at once: record, input, queue entry, portraits, idempotency key.
    /// `false` when there is no such task or it is someone else's (indistinguishable).
    /// A worker still running it loses its lease and writes nothing.
    async fn delete(&self, owner: &str, id: TaskId) -> Result<bool, StoreError>;

    /// Erases every face `owner` registered; returns how many there were.
    async fn erase_faces(&self, owner: &str) -> Result<u64, StoreError>;

    /// The record, if it exists and has not expired.
    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError>;

    /// `owner`'s live tasks matching `query`, newest first (creation time, then id), one page.
    /// Following `next` until it is `None` yields every matching task once; a page may hold
    /// fewer than `limit` tasks while `next` is still set (a store bounds the work one page
    /// costs). Expired and deleted tasks never appear.
    async fn list(&self, owner: &str, query: &TaskQuery) -> Result<TaskPage, StoreError>;

    /// Takes the next queued task for `worker`, waiting up to `wait` for one. Also hands out
    /// tasks whose previous worker's lease expired (reclaim), so a dead worker's task is finished
    /// by someone else. A task whose input expired is failed, not returned.
    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claimed>, StoreError>;

    /// Marks a claimed task Started (allowed again after a reclaim).
    async fn start(&self, worker: &str, claimed: &Claimed) -> Result<(), StoreError>;

    /// Extends the lease of a claimed task. `LeaseLost` if another worker took it.
    async fn heartbeat(&self, worker: &str, claimed: &Claimed) -> Result<(), StoreError>;

    /// Finishes a task with its outcome (its status follows from it), deletes its input images
    /// and acknowledges the delivery, atomically. A task that is already finished is left
    /// untouched (`IllegalTransition`); a lost lease is `LeaseLost` and nothing is written.
    async fn complete(&self, worker: &str, claimed: &Claimed, outcome: TaskOutcome) -> Result<(), StoreError> {
        self.complete_with(worker, claimed, outcome, &[]).await
    }

    /// `complete`, keeping `media` (the portraits its result links to) with the task in the same
    /// atomic step: they expire with the task and are deleted with it, and nothing of them is
    /// stored when the outcome is not (lost lease, finished, deleted or expired task).
    async fn complete_with(
        &self,
        worker: &str,
        claimed: &Claimed,
        outcome: TaskOutcome,
        media: &[TaskMedia],
    ) -> Result<(), StoreError>;

    /// Stores a media object (portrait JPEG) of no task under an unguessable key, with the task
    /// TTL (a one-shot run's portrait; a worker's go with [`TaskStore::complete_with`]).
    async fn put_media(&self, key: &str, bytes: Bytes) -> Result<(), StoreError>;
    async fn get_media(&self, key: &str) -> Result<Option<Bytes>, StoreError>;

    /// An image a claim left out of the task's input (see [`Claimed::late_selfie`]), by role.
    /// `None` when the input is gone (the task was deleted or expired meanwhile). Stores that
    /// hand out whole inputs have none.
    async fn late_image(&self, _task: TaskId, _role: &'static str) -> Result<Option<Bytes>, StoreError> {
        Ok(None)
    }

    /// Registered faces for `register_face` / `authenticate_face`, scoped by owner.
    async fn put_face(&self, owner: &str, uuid: &str, image: Bytes) -> Result<(), StoreError>;
    async fn get_face(&self, owner: &str, uuid: &str) -> Result<Option<Bytes>, StoreError>;

    /// Queued-but-unclaimed count and age of the oldest pending task (for readiness/metrics).
    async fn queue_stats(&self) -> Result<QueueStats, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Which of an owner's tasks [`TaskStore::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQuery {
    /// Only tasks in this state.
    pub status: Option<TaskStatus>,
    /// Only tasks of this service.
    pub service: Option<ServiceKind>,
    /// At most this many tasks per page, within [`TaskQuery::MAX_LIMIT`].
    pub limit: usize,
    /// Only tasks older than this position (the previous page's `next`).
    pub after: Option<ListCursor>,
}

impl TaskQuery {
    /// Page size when the caller names none.
    pub const DEFAULT_LIMIT: usize = 20;
    /// Largest page: a page is read under one lock / one script.
    pub const MAX_LIMIT: usize = 100;
    /// Most index entries one page reads (filters may skip many): bounds the time a page holds
    /// the memory store's lock or runs as one Redis script; past it the page ends early, with
    /// `next` where the read stopped.
    pub const READ_BUDGET: usize = 400;
}

impl Default for TaskQuery {
    fn default() -> Self {
        Self { status: None, service: None, limit: Self::DEFAULT_LIMIT, after: None }
    }
}

/// A position in an owner's task list: creation time, then id (so tasks created in the same
/// millisecond still have one order). Its text form (`<13-digit ms>.<uuid>`) sorts like the
/// position itself, which is what the Redis index relies on; clients treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListCursor {
    pub created_ms: i64,
    pub id: TaskId,
}

impl ListCursor {
    /// The position of `record`.
    pub fn of(record: &TaskRecord) -> Self {
        Self { created_ms: record.created_ms, id: record.id }
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Zero-padded, so text order is time order (until the year 2286).
        write!(f, "{:013}.{}", self.created_ms, self.id)
    }
}

/// A list cursor that is not one this gateway issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid list cursor")]
pub struct BadCursor;

impl std::str::FromStr for ListCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let (ms, id) = s.split_once('.').ok_or(BadCursor)?;
        if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadCursor);
        }
        let created_ms = ms.parse().map_err(|_| BadCursor)?;
        let id: TaskId = id.parse().map_err(|_| BadCursor)?;
        // Only the canonical form: one cursor text per position.
        if id.to_string() != s[14..] {
            return Err(BadCursor);
        }
        Ok(Self { created_ms, id })
    }
}

/// One task as a list shows it: no result (that is `get`'s job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub id: TaskId,
    pub service: ServiceKind,
    pub status: TaskStatus,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// When it finished (Unix ms), for finished tasks only.
    pub finished_ms: Option<i64>,
}

impl TaskSummary {
    pub fn of(record: &TaskRecord) -> Self {
        Self {
            id: record.id,
            service: record.service,
            status: record.status,
            created_ms: record.created_ms,
            finished_ms: record.status.is_finished().then_some(record.updated_ms),
        }
    }
}

/// One page of [`TaskStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    /// Where the next page starts; `None`: no further task matches.
    pub next: Option<ListCursor>,
}

/// Queue depth numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    pub pending: u64,
    pub oldest_pending_age: Option<Duration>,
}

/// Shared handle to a store.
pub type SharedStore = Arc<dyn TaskStore>;

/// The store key of the media object at `path` (as served under `/media/<path>`) for `owner`:
/// owners cannot reach each other's files. The owner is escaped (`%` and `/`), so the key's first
/// `/` always ends the owner: owners `t` and `t/images` never share a key.
pub fn media_key(owner: &str, path: &str) -> String {
    let owner = owner.replace('%', "%25").replace('/', "%2F");
    format!("{owner}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_sort_like_their_text() {
        let a = ListCursor { created_ms: 999, id: TaskId::new() };
        let b = ListCursor { created_ms: 1_733_300_000_000, id: TaskId::new() };
        assert_eq!(a.to_string().parse::<ListCursor>(), Ok(a));
        assert_eq!(b.to_string().parse::<ListCursor>(), Ok(b));
        assert!(a < b && a.to_string() < b.to_string());
        let same_ms = ListCursor { created_ms: 999, ..b };
        assert_eq!(a < same_ms, a.to_string() < same_ms.to_string(), "ties break by id in both forms");
        for bad in ["", "x", "999.abc", "0000000000999", "000000000999.00000000-0000-4000-8000-000000000000",
            "0000000000999.00000000-0000-4000-8000-00000000000G", "-000000000999.00000000-0000-4000-8000-000000000000",
            "0000000000999.00000000000040008000000000000000"] {
            assert_eq!(bad.parse::<ListCursor>(), Err(BadCursor), "{bad:?}");
        }
    }
}
