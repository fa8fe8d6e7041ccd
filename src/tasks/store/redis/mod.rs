//! Redis task store: TTL'd keys for records, inputs, media and faces; work handed out at least
//! once through a Redis Stream consumer group, one Lua script per transition.
//!
//! The queue protocol (all keys from [`keys`], all scripts in `lua/`):
//! - the consumer group is created once, at connect (and again only on a `NOGROUP` error, after
//!   Redis lost its data).
//! - `submit`: idempotency key, queue bounds, record + input (raw image bytes in a hash) +
//!   `XADD` + in-flight counts in one script, sent on a connection of its own so a client's
//!   answer does not wait behind workers' input reads.
//! - `claim`: a task from the local list of reclaimable entries (filled every lease/4 by one
//!   `XPENDING … IDLE` sweep per instance, taken one at a time with `XCLAIM`'s min-idle check),
//!   else `XREADGROUP … BLOCK` for new entries on a pooled connection (a blocking read would
//!   stall every other command multiplexed on the shared one). O(1) commands per task, however
//!   many tasks are in flight.
//! - `heartbeat`: `XCLAIM … JUSTID` by the current holder resets the entry's idle time.
//! - `complete`: status + outcome written, input deleted, entry `XACK`ed and `XDEL`ed, in-flight
//!   counts released at once.
//! - `delete`: record, input, entry, portraits, idempotency key and index entry of one task at once.
//! - `list`: one script pages the owner's task index (a sorted set `submit` adds to), reading
//!   at most [`TaskQuery::READ_BUDGET`] members and dropping those whose record expired.
//!
//! Every Redis failure is [`StoreError::Unavailable`]; the [`ConnectionManager`] reconnects on
//! the next call, so the same store object works again once Redis is back.

mod keys;
mod recent;
mod scripts;
mod upload;

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamReadReply;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, ErrorKind, RedisError};
use tokio::time::Instant;

use self::keys::{Keys, GROUP, TASK_FIELD};
use self::recent::RecentInputs;
use self::scripts::{Scripts, Verdict};
use self::upload::{Frame, Reply, UploadPool};
use super::{
    codec, Claimed, FullScope, Idempotency, ListCursor, QueueStats, StoreError, StoreOptions, Submitted, TaskPage,
    TaskMedia, TaskQuery, TaskStore, TaskSummary, Ttls,
};
use crate::tasks::{now_ms, FailureReason, ServiceKind, TaskId, TaskInput, TaskOutcome, TaskRecord, TaskStatus};

/// Connection tuning. The defaults keep every call bounded when Redis is down.
#[derive(Debug, Clone, Copy)]
pub struct RedisOptions {
    /// Bound on establishing one connection (TCP + handshake).
    pub connect_timeout: Duration,
    /// Bound on one command's reply; a hung server surfaces as `Unavailable` after this.
    pub response_timeout: Duration,
    /// Extra reconnect attempts (each after a 1–2 s back-off) a call makes before failing with
    /// `Unavailable`. Default 0: fail fast (an API answers 503 at once, a worker backs off)
    /// and let the next call reconnect.
    pub reconnect_retries: usize,
    /// Idle blocking-read connections kept for `claim` (one is busy per waiting worker): set it
    /// to the instance's worker concurrency so claims never open connections in steady state.
    pub max_idle_blocking: usize,
    /// Image bytes of just-queued inputs kept for this instance's idle workers, so a claim
    /// does not read back what the submit just sent (`recent`); 0 keeps none.
    pub recent_inputs_max_bytes: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            reconnect_retries: 0,
            max_idle_blocking: 16,
            recent_inputs_max_bytes: 32 << 20,
        }
    }
}

/// The production store: many gateway instances share one Redis namespace.
/// Cheap to clone (all state is shared).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// Shared, auto-reconnecting connection for every non-blocking command but submits.
    conn: ConnectionManager,
    /// Submits only: each carries a whole upload (hundreds of KB), and on the shared connection
    /// a client's submit answer would queue behind workers' input reads (and their small
    /// commands behind the upload), all in one ordered stream. The command is framed by
    /// [`upload`], so the images are written from the request's own bytes.
    uploads: UploadPool,
    /// Submits sending their upload to Redis at once. Redis runs one command at a time, so a
    /// few in the pipe keep it busy; more would only hold their uploads longer (at the
    /// 10,000-in-flight peak, docs/PERFORMANCE.md) and open more connections.
    upload_slots: tokio::sync::Semaphore,
    /// Idle connections for `XREADGROUP … BLOCK`, one per concurrently waiting `claim`.
    blocking: StdMutex<Vec<MultiplexedConnection>>,
    keys: Keys,
    scripts: Scripts,
    ttls: Ttls,
    opts: RedisOptions,
    store: StoreOptions,
    /// Entries the last sweep found idle past the lease, oldest first (candidates only:
    /// `reclaim.lua` re-checks each).
    reclaimable: StdMutex<VecDeque<String>>,
    /// Inputs just queued here, for this instance's waiting workers.
    recent: RecentInputs,
}

/// Maps a Redis failure to the store's error: undecodable replies are `Corrupt`, everything
/// else (refused, IO, timeouts, server errors such as `LOADING` or `OOM`) is retryable.
fn store_error(e: RedisError) -> StoreError {
    if e.kind() == ErrorKind::TypeError {
        StoreError::Corrupt(e.to_string())
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

/// A submit transaction's verdict from its five replies (`MULTI`, three `QUEUED`, `EXEC`);
/// `None` when Redis does not have the script (`NOSCRIPT`: load it and send again).
fn submit_verdict(replies: Vec<Reply>) -> Result<Option<Verdict>, StoreError> {
    let refused = |e: &str| StoreError::Unavailable(format!("Redis refused a submit: {e}"));
    let corrupt = |what: &str| StoreError::Corrupt(format!("unexpected Redis reply to a submit: {what}"));
    let error = |r: &Reply| match r {
        Reply::Error(e) => Some(e.clone()),
        _ => None,
    };
    let [multi, queued @ .., exec]: [Reply; 5] = replies.try_into().map_err(|_| corrupt("not five replies"))?;
    let results = match exec {
        Reply::Array(Some(results)) if results.len() == 3 => results,
        // EXECABORT: a command was refused when queued; its own reply says why.
        Reply::Error(e) => {
            let why = std::iter::once(&multi).chain(&queued).find_map(error).unwrap_or(e);
            return Err(refused(&why));
        }
        _ => return Err(corrupt("no EXEC result")),
    };
    let [hset, pexpire, eval]: [Reply; 3] = results.try_into().map_err(|_| corrupt("EXEC result"))?;
    if let Some(e) = error(&hset).or_else(|| error(&pexpire)) {
        return Err(refused(&e));
    }
    match eval {
        Reply::Error(e) if e.starts_with("NOSCRIPT") => Ok(None),
        Reply::Error(e) => Err(refused(&e)),
        Reply::Array(Some(items)) => {
            let parts = items
                .into_iter()
                .map(|item| match item {
                    Reply::Bulk(Some(b)) => String::from_utf8(b).map_err(|_| corrupt("verdict is not text")),
                    Reply::Status(s) => Ok(s),
                    Reply::Int(n) => Ok(n.to_string()),
                    _ => Err(corrupt("verdict element")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Verdict::from_parts(&parts).map(Some).ok_or_else(|| corrupt("unknown script verdict"))
        }
        _ => Err(corrupt("verdict is not an array")),
    }
}

fn parse_status(s: &str) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown task status {s:?}")))
}

/// Milliseconds for a Redis argument (at least 1: Redis reads 0 as "none" or "forever").
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

// === impl RedisStore ===

/// A connection to the store's Redis for a side ledger (spent tokens, webhook deliveries): fails
/// fast (2 s to connect, 5 s per answer, no retry inside a call), reconnects on the next call.
/// `Unavailable` if Redis cannot be reached now.
pub async fn side_connection(url: &str) -> Result<ConnectionManager, StoreError> {
    let client = Client::open(url).map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(5))
        .set_number_of_retries(0);
    ConnectionManager::new_with_config(client, config).await.map_err(|e| StoreError::Unavailable(e.to_string()))
}

impl RedisStore {
    /// Connects with default [`RedisOptions`]. Fails with `Unavailable` if Redis cannot be
    /// reached now; afterwards the store reconnects by itself.
    pub async fn connect(url: &str, namespace: &str, ttls: Ttls) -> Result<Self, StoreError> {
        Self::connect_with(url, namespace, ttls, RedisOptions::default()).await
    }

    /// Connects with explicit connection tuning (default bounds and retention).
    pub async fn connect_with(url: &str, namespace: &str, ttls: Ttls, opts: RedisOptions) -> Result<Self, StoreError> {
        Self::open(url, namespace, ttls, opts, StoreOptions::default()).await
    }

    /// Connects with connection tuning, queue bounds and retention; creates the consumer group
    /// and, inside a tokio runtime, starts the reclaim sweep (it ends with the last clone).
    pub async fn open(
        url: &str,
        namespace: &str,
        ttls: Ttls,
        opts: RedisOptions,
        store: StoreOptions,
    ) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(opts.connect_timeout)
            .set_response_timeout(opts.response_timeout)
            .set_number_of_retries(opts.reconnect_retries)
            .set_factor(2)
            .set_max_delay(1000);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await.map_err(store_error)?;
        let uploads =
            UploadPool::new(client.get_connection_info().clone(), UPLOAD_SLOTS, opts.connect_timeout, opts.response_timeout);
        let inner = Inner {
            client,
            conn,
            uploads,
            upload_slots: tokio::sync::Semaphore::new(UPLOAD_SLOTS),
            blocking: StdMutex::new(Vec::new()),
            keys: Keys::new(namespace),
            scripts: Scripts::load(),
            ttls,
            opts,
            store,
            reclaimable: StdMutex::new(VecDeque::new()),
            recent: RecentInputs::new(opts.recent_inputs_max_bytes),
        };
        let this = Self { inner: Arc::new(inner) };
        this.ensure_group().await?;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(reclaim_sweep(Arc::downgrade(&this.inner)));
        }
        Ok(this)
    }

    /// Creates the consumer group (and the stream) if missing. Starting at 0 delivers every
    /// entry still in the stream: acknowledged entries are always deleted, so none twice.
    async fn ensure_group(&self) -> Result<(), StoreError> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.inner.keys.queue())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(store_error(e)),
            _ => Ok(()),
        }
    }

    /// Finds deliveries idle past the lease (one `XPENDING … IDLE` for the whole instance) and
    /// replaces the local candidate list with them.
    async fn sweep_reclaimable(&self) -> Result<(), StoreError> {
        let pending: Result<Vec<(String, String, u64, u64)>, RedisError> = redis::cmd("XPENDING")
            .arg(self.inner.keys.queue())
            .arg(GROUP)
            .arg("IDLE")
            .arg(millis(self.inner.ttls.lease))
            .arg("-")
            .arg("+")
            .arg(RECLAIM_BATCH)
            .query_async(&mut self.conn())
            .await;
        let pending = match pending {
            Ok(p) => p,
            Err(e) if e.code() == Some("NOGROUP") => return self.ensure_group().await,
            Err(e) => return Err(store_error(e)),
        };
        let mut list = self.inner.reclaimable.lock().unwrap_or_else(|p| p.into_inner());
        *list = pending.into_iter().map(|(entry, ..)| entry).collect();
        Ok(())
    }

    fn next_reclaimable(&self) -> Option<String> {
        self.inner.reclaimable.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// How long one blocking read waits before `claim` looks for reclaimable work again.
    fn poll_interval(&self) -> Duration {
        sweep_interval(&self.inner.ttls)
    }

    /// An idle blocking-read connection, or a new one.
    async fn take_blocking(&self) -> Result<(MultiplexedConnection, bool), StoreError> {
        let idle = self.inner.blocking.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(conn) = idle {
            return Ok((conn, true));
        }
        let config = AsyncConnectionConfig::new().set_connection_timeout(self.inner.opts.connect_timeout);
        let connecting = self.inner.client.get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.inner.opts.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok((conn, false)),
            Ok(Err(e)) => Err(store_error(e)),
            Err(_) => Err(StoreError::Unavailable("timed out connecting to Redis".into())),
        }
    }

    fn return_blocking(&self, conn: MultiplexedConnection) {
        let mut idle = self.inner.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.inner.opts.max_idle_blocking {
            idle.push(conn);
        }
    }

    /// Reads one new entry for `worker`, blocking up to `block` (not at all if zero).
    /// Returns the entry id and its task id field.
    async fn read_new(&self, worker: &str, block: Duration) -> Result<Option<(String, Option<String>)>, StoreError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(GROUP).arg(worker).arg("COUNT").arg(1);
        if !block.is_zero() {
            cmd.arg("BLOCK").arg(millis(block));
        }
        cmd.arg("STREAMS").arg(self.inner.keys.queue()).arg(">");

        // A worker blocked here can take an input this instance queues meanwhile (`recent`).
        let _waiting = (!block.is_zero()).then(|| self.inner.recent.waiting());
        let mut attempt = 0;
        let reply = loop {
            attempt += 1;
            let (mut conn, reused) = self.take_blocking().await?;
            let read = cmd.query_async::<Option<StreamReadReply>>(&mut conn);
            match tokio::time::timeout(block + self.inner.opts.response_timeout, read).await {
                Ok(Ok(reply)) => {
                    self.return_blocking(conn);
                    break reply;
                }
                // The group vanished (Redis restarted empty): recreate it, read again next time.
                Ok(Err(e)) if e.code() == Some("NOGROUP") => {
                    self.return_blocking(conn);
                    self.ensure_group().await?;
                    return Ok(None);
                }
                // An idle pooled connection may have died with a previous server: retry once
                // on a fresh one before reporting the outage.
                Ok(Err(e)) if reused && attempt == 1 && e.is_unrecoverable_error() => continue,
                Ok(Err(e)) => return Err(store_error(e)),
                Err(_) => return Err(StoreError::Unavailable("timed out waiting for Redis".into())),
            }
        };
        let Some(entry) = reply.and_then(|r| r.keys.into_iter().next()).and_then(|k| k.ids.into_iter().next()) else {
            return Ok(None);
        };
        let task = entry.get::<String>(TASK_FIELD);
        Ok(Some((entry.id, task)))
    }

    /// Drops an entry that can never run (no or malformed task id).
    async fn drop_entry(&self, entry: &str) -> Result<(), StoreError> {
        let queue = self.inner.keys.queue();
        redis::pipe()
            .atomic()
            .xack(&queue, GROUP, &[entry])
            .xdel(&queue, &[entry])
            .exec_async(&mut self.conn())
            .await
            .map_err(store_error)
    }

    /// Turns a freshly held entry into a `Claimed`, or fails the task (input expired or
    /// undecodable) and returns `None` so `claim` moves on.
    async fn hand_out(
        &self,
        worker: &str,
        entry: String,
        task: Option<String>,
        deliveries: u32,
    ) -> Result<Option<Claimed>, StoreError> {
        let Some(id) = task.as_deref().and_then(|t| TaskId::from_str(t).ok()) else {
            tracing::warn!(entry = %entry, "Dropping a work stream entry without a valid task id");
            self.drop_entry(&entry).await?;
            return Ok(None);
        };
        // Queued by this instance a moment ago: the input is still here, not only in Redis.
        let metrics = crate::telemetry::metrics();
        let read = match self.inner.recent.take(id) {
            Some(input) => {
                metrics.input_read("kept");
                Some(Ok((input, false)))
            }
            None => {
                metrics.input_read("redis");
                self.read_input(id).await?
            }
        };
        let failure = match read {
            Some(Ok((input, late_selfie))) => {
                // `XADD *` ids are `<ms>-<seq>`: the submit time.
                let submitted_ms = entry.split('-').next().and_then(|ms| ms.parse().ok());
                return Ok(Some(Claimed { id, input, deliveries, receipt: entry, submitted_ms, late_selfie }));
            }
            Some(Err(e)) => {
                tracing::warn!(task = %id, error = %e, "Stored task input is undecodable; failing the task");
                FailureReason::InputCorrupt
            }
            None => FailureReason::InputExpired,
        };
        match self.finish(worker, id, &entry, &failure.into(), None, &[]).await {
            Ok(()) | Err(StoreError::NotFound | StoreError::LeaseLost | StoreError::IllegalTransition { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The stored input of `id`: `None` when gone, `Some(Err)` when undecodable (an input in
    /// the pre-hash format, a JSON string with base64 images, is such a case: `WRONGTYPE`).
    async fn read_input(&self, id: TaskId) -> Result<Option<Result<(TaskInput, bool), StoreError>>, StoreError> {
        // Every field but the images read late (`codec::reads_late`): one `HMGET`, whatever the
        // service. An input queued by an older version has its selfie among the `img:` fields,
        // so it comes whole.
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.inner.keys.input(id)).arg(codec::HEADER_FIELD);
        for role in codec::ROLES {
            cmd.arg(format!("{}{role}", codec::IMAGE_FIELD_PREFIX));
        }
        let fields: Result<Vec<Option<Vec<u8>>>, RedisError> = cmd.query_async(&mut self.conn()).await;
        let mut fields = match fields {
            Ok(f) => f.into_iter(),
            Err(e) if e.code() == Some("WRONGTYPE") => {
                return Ok(Some(Err(StoreError::Corrupt("input stored in an older format".into()))))
            }
            Err(e) => return Err(store_error(e)),
        };
        // A missing key reads as all nil: expired (or deleted) input. Images without a header
        // are a damaged input, not a gone one.
        let header = match fields.next() {
            Some(Some(header)) => header,
            _ if fields.any(|f| f.is_some()) => return Ok(Some(Err(StoreError::Corrupt("input without header".into())))),
            _ => return Ok(None),
        };
        let mut images: Vec<(&str, Bytes)> =
            codec::ROLES.into_iter().zip(fields).filter_map(|(role, f)| Some((role, Bytes::from(f?)))).collect();
        let take = |role: &'static str| images.iter().position(|(r, _)| *r == role).map(|i| images.swap_remove(i).1);
        Ok(Some(codec::join_early(&header, take)))
    }

    /// The owner's in-flight set prefix for scripts.
    fn owner_prefix(&self) -> String {
        self.inner.keys.owner_inflight_prefix()
    }

    /// Runs `complete.lua` for the delivery `receipt` of task `id` (of `owner`, when known: it
    /// saves the script reading it from the record), storing `media` with the outcome.
    async fn finish(
        &self,
        worker: &str,
        id: TaskId,
        receipt: &str,
        outcome: &TaskOutcome,
        owner: Option<&str>,
        media: &[TaskMedia],
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let status = outcome.status();
        let outcome = serde_json::to_string(outcome).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut invocation = self.inner.scripts.complete.prepare_invoke();
        invocation
            .key(keys.record(id))
            .key(keys.input(id))
            .key(keys.queue())
            .key(keys.inflight())
            .key(keys.inflight_bytes());
        for m in media {
            invocation.key(keys.media(&m.key));
        }
        invocation
            .arg(GROUP)
            .arg(receipt)
            .arg(worker)
            .arg(status.as_str())
            .arg(outcome)
            .arg(now_ms())
            .arg(id.to_string())
            .arg(self.owner_prefix())
            .arg(owner.map(|o| keys.owner_inflight(o)).unwrap_or_default());
        for m in media {
            invocation.arg(m.bytes.as_ref());
        }
        let verdict: Verdict = invocation.invoke_async(&mut self.conn()).await.map_err(store_error)?;
        verdict_to_result(verdict, status)
    }
}

/// Maps a transition script's verdict; `to` is the status the caller asked for.
fn verdict_to_result(verdict: Verdict, to: TaskStatus) -> Result<(), StoreError> {
    match verdict {
        Verdict::Ok(_) => Ok(()),
        Verdict::NotFound => Err(StoreError::NotFound),
        Verdict::LeaseLost => Err(StoreError::LeaseLost),
        Verdict::Illegal(from) => Err(StoreError::IllegalTransition { from: parse_status(&from)?, to }),
        other => Err(StoreError::Corrupt(format!("unexpected script verdict {other:?}"))),
    }
}

/// Lifetime of a submit's staging key: only ever seen if the submit's transaction is cut off
/// after it (`submit.lua` renames or deletes it in the same transaction).
const STAGING_TTL: Duration = Duration::from_secs(60);

/// Submits encoding and sending their upload at once (see `Inner::upload_slots`).
const UPLOAD_SLOTS: usize = 4;

/// Parses `list.lua`'s reply: the next member, then (member, service, status, updated_ms) per task.
fn parse_page(reply: Vec<String>) -> Result<TaskPage, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("task index: {what}"));
    let mut parts = reply.into_iter();
    let next = parts.next().ok_or_else(|| corrupt("empty reply"))?;
    let next = if next.is_empty() { None } else { Some(next.parse::<ListCursor>().map_err(|_| corrupt("bad member"))?) };
    let rest: Vec<String> = parts.collect();
    let mut tasks = Vec::with_capacity(rest.len() / 4);
    for chunk in rest.chunks(4) {
        let [member, service, status, updated] = chunk else { return Err(corrupt("short reply")) };
        let pos: ListCursor = member.parse().map_err(|_| corrupt("bad member"))?;
        let service = ServiceKind::from_path(service).ok_or_else(|| corrupt("unknown service"))?;
        let status = parse_status(status)?;
        let updated: i64 = updated.parse().map_err(|_| corrupt("bad updated_ms"))?;
        tasks.push(TaskSummary {
            id: pos.id,
            service,
            status,
            created_ms: pos.created_ms,
            finished_ms: status.is_finished().then_some(updated),
        });
    }
    Ok(TaskPage { tasks, next })
}

/// How many reclaimable entries one sweep lists (the rest wait for the next sweep).
const RECLAIM_BATCH: usize = 256;

/// How often an instance looks for reclaimable deliveries (and how long a claim blocks on new
/// work before it looks at what the sweep found): a quarter lease, within 50 ms..1 s.
fn sweep_interval(ttls: &Ttls) -> Duration {
    (ttls.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// The per-instance reclaim sweep; exits once the store is dropped.
async fn reclaim_sweep(inner: Weak<Inner>) {
    let Some(every) = inner.upgrade().map(|i| sweep_interval(&i.ttls)) else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = RedisStore { inner };
        if let Err(e) = store.sweep_reclaimable().await {
            tracing::debug!(error = %e, "Reclaim sweep failed; trying again next tick");
        }
    }
}

/// Milliseconds part of a stream entry id (`<ms>-<seq>`).
fn entry_ms(entry: &str) -> Option<i64> {
    entry.split('-').next()?.parse().ok()
}

// === impl TaskStore for RedisStore ===

#[async_trait::async_trait]
impl TaskStore for RedisStore {
    async fn submit_with(
        &self,
        record: TaskRecord,
        input: TaskInput,
        idempotency: Option<&Idempotency>,
    ) -> Result<Submitted, StoreError> {
        let keys = &self.inner.keys;
        let opts = &self.inner.store;
        let meta = serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let split = codec::split(&input);
        let owner = &input.owner;
        let ttl = millis(opts.task_ttl(&self.inner.ttls, owner));
        // Waiting for a slot is bounded like the answer itself: with Redis hung, queued submits
        // fail after at most `response_timeout` of waiting, not one `response_timeout` after
        // another.
        let _slot = match tokio::time::timeout(self.inner.opts.response_timeout, self.inner.upload_slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_closed)) => return Err(StoreError::Unavailable("upload slots closed".into())),
            Err(_) => return Err(StoreError::Unavailable("timed out waiting to send an upload to Redis".into())),
        };
        let staging = keys.upload(record.id);
        let position = ListCursor::of(&record).to_string();
        // Index members older than the TTL name expired tasks: `submit.lua` drops them.
        let ttl_ms = i64::try_from(ttl).unwrap_or(i64::MAX);
        let stale_below = format!("({:013}", record.created_ms.saturating_sub(ttl_ms).max(0));
        // The images go in with a plain HSET (Redis keeps the received bytes; through the
        // script they would be copied twice more) to a staging key that `submit.lua` renames
        // to the input or deletes, all in one MULTI: still one atomic step.
        let mut frame = Frame::default();
        frame.command(1).arg("MULTI");
        frame.command(4 + 2 * split.images.len()).arg("HSET").arg(&staging).arg(codec::HEADER_FIELD).arg(&split.header);
        for (role, bytes) in &split.images {
            frame.arg(codec::image_field(input.service(), role)).image(bytes);
        }
        frame.command(3).arg("PEXPIRE").arg(&staging).arg(millis(STAGING_TTL).to_string());
        let eval = [
            self.inner.scripts.submit.get_hash().to_string(),
            "9".to_string(),
            keys.record(record.id),
            keys.input(record.id),
            keys.queue(),
            keys.inflight(),
            keys.inflight_bytes(),
            keys.owner_inflight(owner),
            idempotency.map_or_else(|| keys.idempotency(owner, ""), |i| keys.idempotency(owner, &i.key)),
            staging.clone(),
            keys.owner_tasks(owner),
            record.id.to_string(),
            meta,
            owner.to_string(),
            record.updated_ms.to_string(),
            ttl.to_string(),
            input.upload.image_bytes().to_string(),
            opts.limits.max_tasks.to_string(),
            opts.limits.max_bytes.to_string(),
            opts.limits.max_per_owner.to_string(),
            idempotency.map_or("", |i| i.fingerprint.as_str()).to_string(),
            millis(opts.idempotency_ttl).to_string(),
            position,
            stale_below,
            record.service.as_str().to_string(),
        ];
        frame.command(1 + eval.len()).arg("EVALSHA");
        for arg in &eval {
            frame.arg(arg);
        }
        frame.command(1).arg("EXEC");
        // Kept before it is sent: the worker Redis hands the entry to may read its reply before
        // this submit reads the verdict. Forgotten again unless the task was created.
        self.inner.recent.keep(record.id, &input);
        let submitted = async {
            let verdict = match submit_verdict(self.inner.uploads.exchange(&frame).await?)? {
                Some(verdict) => verdict,
                None => {
                    // First use on this server (or after a restart): load the script, then once more.
                    self.inner.scripts.submit.prepare_invoke().load_async(&mut self.conn()).await.map_err(store_error)?;
                    submit_verdict(self.inner.uploads.exchange(&frame).await?)?
                        .ok_or_else(|| StoreError::Unavailable("Redis lost the submit script again".into()))?
                }
            };
            let retry_after = opts.limits.retry_after;
            match verdict {
                Verdict::Ok(_) => Ok(Submitted::Created),
                Verdict::Existing(id) => {
                    TaskId::from_str(&id).map(Submitted::Existing).map_err(|e| StoreError::Corrupt(e.to_string()))
                }
                Verdict::Conflict => Err(StoreError::IdempotencyConflict),
                Verdict::Full(scope) if scope == "owner" => Err(StoreError::Full { scope: FullScope::Owner, retry_after }),
                Verdict::Full(_) => Err(StoreError::Full { scope: FullScope::Queue, retry_after }),
                other => verdict_to_result(other, TaskStatus::Pending).map(|()| Submitted::Created),
            }
        }
        .await;
        if !matches!(submitted, Ok(Submitted::Created)) {
            self.inner.recent.forget(record.id);
        }
        submitted
    }

    async fn delete(&self, owner: &str, id: TaskId) -> Result<bool, StoreError> {
        self.inner.recent.forget(id);
        let keys = &self.inner.keys;
        let verdict: Verdict = self
            .inner
            .scripts
            .delete
            .key(keys.record(id))
            .key(keys.input(id))
            .key(keys.queue())
            .key(keys.inflight())
            .key(keys.inflight_bytes())
            .key(keys.owner_tasks(owner))
            .arg(GROUP)
            .arg(owner)
            .arg(id.to_string())
            .arg(self.owner_prefix())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        match verdict {
            Verdict::Ok(_) => Ok(true),
            Verdict::NotFound => Ok(false),
            other => Err(StoreError::Corrupt(format!("unexpected script verdict {other:?}"))),
        }
    }

    async fn erase_faces(&self, owner: &str) -> Result<u64, StoreError> {
        // Faces are independent keys: a SCAN over the owner's names, deleted in batches.
        let pattern = self.inner.keys.faces_of(owner);
        let mut conn = self.conn();
        let mut cursor: u64 = 0;
        let mut erased = 0;
        loop {
            let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(store_error)?;
            if !found.is_empty() {
                let n: u64 = redis::cmd("UNLINK").arg(&found).query_async(&mut conn).await.map_err(store_error)?;
                erased += n;
            }
            if next == 0 {
                return Ok(erased);
            }
            cursor = next;
        }
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let (meta, status, updated, outcome): (Option<String>, Option<String>, Option<i64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.inner.keys.record(id))
                .arg(&["meta", "status", "updated_ms", "result"])
                .query_async(&mut self.conn())
                .await
                .map_err(store_error)?;
        let Some(meta) = meta else { return Ok(None) };
        let mut record: TaskRecord = serde_json::from_str(&meta).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if let Some(status) = status {
            record.status = parse_status(&status)?;
        }
        if let Some(updated) = updated {
            record.updated_ms = updated;
        }
        if let Some(outcome) = outcome {
            record.outcome = Some(serde_json::from_str(&outcome).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(Some(record))
    }

    async fn list(&self, owner: &str, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let reply: Vec<String> = self
            .inner
            .scripts
            .list
            .key(self.inner.keys.owner_tasks(owner))
            .arg(self.inner.keys.record_prefix())
            .arg(query.after.map(|c| c.to_string()).unwrap_or_default())
            .arg(query.limit.clamp(1, TaskQuery::MAX_LIMIT))
            .arg(query.status.map_or("", TaskStatus::as_str))
            .arg(query.service.map_or("", ServiceKind::as_str))
            .arg(TaskQuery::READ_BUDGET)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        parse_page(reply)
    }

    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claimed>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            // Reclaim before reading new work: a dead worker's task is the oldest in line.
            while let Some(candidate) = self.next_reclaimable() {
                let reclaimed: Option<(String, String, u32)> = self
                    .inner
                    .scripts
                    .reclaim
                    .key(self.inner.keys.queue())
                    .arg(GROUP)
                    .arg(worker)
                    .arg(millis(self.inner.ttls.lease))
                    .arg(&candidate)
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(store_error)?;
                if let Some((entry, task, deliveries)) = reclaimed {
                    if let Some(claimed) = self.hand_out(worker, entry, Some(task), deliveries).await? {
                        return Ok(Some(claimed));
                    }
                }
            }
            // Block for new work, but not past the next look for reclaimable leases.
            let block = deadline.saturating_duration_since(Instant::now()).min(self.poll_interval());
            match self.read_new(worker, block).await? {
                Some((entry, task)) => {
                    if let Some(claimed) = self.hand_out(worker, entry, task, 1).await? {
                        return Ok(Some(claimed));
                    }
                }
                None if Instant::now() >= deadline => return Ok(None),
                None => {}
            }
        }
    }

    async fn start(&self, worker: &str, claimed: &Claimed) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let verdict: Verdict = self
            .inner
            .scripts
            .start
            .key(keys.record(claimed.id))
            .key(keys.queue())
            .arg(GROUP)
            .arg(&claimed.receipt)
            .arg(worker)
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        verdict_to_result(verdict, TaskStatus::Started)
    }

    async fn heartbeat(&self, worker: &str, claimed: &Claimed) -> Result<(), StoreError> {
        let verdict: Verdict = self
            .inner
            .scripts
            .heartbeat
            .key(self.inner.keys.queue())
            .arg(GROUP)
            .arg(&claimed.receipt)
            .arg(worker)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        match verdict {
            Verdict::Ok(_) => Ok(()),
            _ => Err(StoreError::LeaseLost),
        }
    }

    async fn complete_with(
        &self,
        worker: &str,
        claimed: &Claimed,
        outcome: TaskOutcome,
        media: &[TaskMedia],
    ) -> Result<(), StoreError> {
        self.finish(worker, claimed.id, &claimed.receipt, &outcome, Some(&claimed.input.owner), media).await
    }

    async fn put_media(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let opts = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(millis(self.inner.ttls.task)));
        self.conn().set_options::<_, _, ()>(self.inner.keys.media(key), bytes.as_ref(), opts).await.map_err(store_error)
    }

    async fn get_media(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let bytes: Option<Vec<u8>> = self.conn().get(self.inner.keys.media(key)).await.map_err(store_error)?;
        Ok(bytes.map(Bytes::from))
    }

    async fn put_face(&self, owner: &str, uuid: &str, image: Bytes) -> Result<(), StoreError> {
        let opts = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(millis(self.inner.ttls.face)));
        self.conn()
            .set_options::<_, _, ()>(self.inner.keys.face(owner, uuid), image.as_ref(), opts)
            .await
            .map_err(store_error)
    }

    async fn get_face(&self, owner: &str, uuid: &str) -> Result<Option<Bytes>, StoreError> {
        let bytes: Option<Vec<u8>> = self.conn().get(self.inner.keys.face(owner, uuid)).await.map_err(store_error)?;
        Ok(bytes.map(Bytes::from))
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let (pending, oldest, server_now_ms): (u64, String, i64) = self
            .inner
            .scripts
            .queue_stats
            .key(self.inner.keys.queue())
            .arg(GROUP)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let oldest_pending_age = entry_ms(&oldest)
            .map(|ms| Duration::from_millis(u64::try_from(server_now_ms.saturating_sub(ms)).unwrap_or(0)));
        Ok(QueueStats { pending, oldest_pending_age })
    }

    async fn late_image(&self, id: TaskId, role: &'static str) -> Result<Option<Bytes>, StoreError> {
        let field = format!("{}{role}", codec::LATE_FIELD_PREFIX);
        let bytes: Option<Vec<u8>> = self.conn().hget(self.inner.keys.input(id), field).await.map_err(store_error)?;
        Ok(bytes.map(Bytes::from))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING").query_async::<()>(&mut self.conn()).await.map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_carry_their_timestamp() {
        assert_eq!(entry_ms("1700000000123-4"), Some(1_700_000_000_123));
        assert_eq!(entry_ms(""), None);
    }

    #[test]
    fn redis_arguments_never_read_as_forever() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn verdicts_map_to_store_errors() {
        assert!(verdict_to_result(Verdict::Ok(None), TaskStatus::Success).is_ok());
        assert!(matches!(verdict_to_result(Verdict::LeaseLost, TaskStatus::Success), Err(StoreError::LeaseLost)));
        assert!(matches!(
            verdict_to_result(Verdict::Illegal("SUCCESS".into()), TaskStatus::Failure),
            Err(StoreError::IllegalTransition { from: TaskStatus::Success, to: TaskStatus::Failure })
        ));
        assert!(matches!(
            verdict_to_result(Verdict::Illegal("??".into()), TaskStatus::Failure),
            Err(StoreError::Corrupt(_))
        ));
    }
}
