//! Redis task store: TTL'd keys for records, inputs, media and faces; work handed out at least
//! once through a Redis Stream consumer group, one Lua script per transition.
//!
//! The queue protocol (all keys from [`keys`], all scripts in `lua/`):
//! - `submit`: record + input + `XADD` in one script.
//! - `claim`: first `reclaim.lua` (`XAUTOCLAIM` entries idle longer than the lease), then
//!   `XREADGROUP … BLOCK` for new entries on a dedicated connection (a blocking read would
//!   stall every other command multiplexed on the shared one).
//! - `heartbeat`: `XCLAIM … JUSTID` by the current holder resets the entry's idle time.
//! - `complete`: status + outcome written, input deleted, entry `XACK`ed and `XDEL`ed at once.
//!
//! Every Redis failure is [`StoreError::Unavailable`]; the [`ConnectionManager`] reconnects on
//! the next call, so the same store object works again once Redis is back.

mod keys;
mod scripts;

use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::streams::StreamReadReply;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, ErrorKind, RedisError};
use tokio::time::Instant;

use self::keys::{Keys, GROUP, TASK_FIELD};
use self::scripts::{Scripts, Verdict};
use super::{Claimed, QueueStats, StoreError, TaskStore, Ttls};
use crate::tasks::{now_ms, FailureReason, TaskId, TaskInput, TaskOutcome, TaskRecord, TaskStatus};

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
    /// Idle blocking-read connections kept for `claim` (one is busy per waiting worker).
    pub max_idle_blocking: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
            reconnect_retries: 0,
            max_idle_blocking: 16,
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
    /// Shared, auto-reconnecting connection for every non-blocking command.
    conn: ConnectionManager,
    /// Idle connections for `XREADGROUP … BLOCK`, one per concurrently waiting `claim`.
    blocking: StdMutex<Vec<MultiplexedConnection>>,
    keys: Keys,
    scripts: Scripts,
    ttls: Ttls,
    opts: RedisOptions,
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

fn parse_status(s: &str) -> Result<TaskStatus, StoreError> {
    TaskStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown task status {s:?}")))
}

/// Milliseconds for a Redis argument (at least 1: Redis reads 0 as "none" or "forever").
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

// === impl RedisStore ===

impl RedisStore {
    /// Connects with default [`RedisOptions`]. Fails with `Unavailable` if Redis cannot be
    /// reached now; afterwards the store reconnects by itself.
    pub async fn connect(url: &str, namespace: &str, ttls: Ttls) -> Result<Self, StoreError> {
        Self::connect_with(url, namespace, ttls, RedisOptions::default()).await
    }

    /// Connects with explicit connection tuning.
    pub async fn connect_with(url: &str, namespace: &str, ttls: Ttls, opts: RedisOptions) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(opts.connect_timeout)
            .set_response_timeout(opts.response_timeout)
            .set_number_of_retries(opts.reconnect_retries)
            .set_factor(2)
            .set_max_delay(1000);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await.map_err(store_error)?;
        let inner = Inner {
            client,
            conn,
            blocking: StdMutex::new(Vec::new()),
            keys: Keys::new(namespace),
            scripts: Scripts::load(),
            ttls,
            opts,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// How long one blocking read waits before `claim` looks for reclaimable work again.
    fn poll_interval(&self) -> Duration {
        (self.inner.ttls.lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
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
                // The group vanished (Redis restarted empty): the next reclaim recreates it.
                Ok(Err(e)) if e.code() == Some("NOGROUP") => {
                    self.return_blocking(conn);
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
        let stored: Option<String> = self.conn().get(self.inner.keys.input(id)).await.map_err(store_error)?;
        let failure = match stored.map(|json| serde_json::from_str::<TaskInput>(&json)) {
            Some(Ok(input)) => return Ok(Some(Claimed { id, input, deliveries, receipt: entry })),
            Some(Err(_)) => {
                tracing::warn!(task = %id, "Stored task input is undecodable; failing the task");
                FailureReason::InputCorrupt
            }
            None => FailureReason::InputExpired,
        };
        match self.finish(worker, id, &entry, &failure.into()).await {
            Ok(()) | Err(StoreError::NotFound | StoreError::LeaseLost | StoreError::IllegalTransition { .. }) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `complete.lua` for the delivery `receipt` of task `id`.
    async fn finish(&self, worker: &str, id: TaskId, receipt: &str, outcome: &TaskOutcome) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let status = outcome.status();
        let outcome = serde_json::to_string(outcome).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let verdict: Verdict = self
            .inner
            .scripts
            .complete
            .key(keys.record(id))
            .key(keys.input(id))
            .key(keys.queue())
            .arg(GROUP)
            .arg(receipt)
            .arg(worker)
            .arg(status.as_str())
            .arg(outcome)
            .arg(now_ms())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
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
    }
}

/// Milliseconds part of a stream entry id (`<ms>-<seq>`).
fn entry_ms(entry: &str) -> Option<i64> {
    entry.split('-').next()?.parse().ok()
}

// === impl TaskStore for RedisStore ===

#[async_trait::async_trait]
impl TaskStore for RedisStore {
    async fn submit(&self, record: TaskRecord, input: TaskInput) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let meta = serde_json::to_string(&record).map_err(corrupt)?;
        let input = serde_json::to_string(&input).map_err(corrupt)?;
        let verdict: Verdict = self
            .inner
            .scripts
            .submit
            .key(keys.record(record.id))
            .key(keys.input(record.id))
            .key(keys.queue())
            .arg(GROUP)
            .arg(record.id.to_string())
            .arg(meta)
            .arg(record.updated_ms)
            .arg(input)
            .arg(millis(self.inner.ttls.task))
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        verdict_to_result(verdict, TaskStatus::Pending)
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

    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claimed>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            // Reclaim before reading new work: a dead worker's task is the oldest in line.
            let reclaimed: Option<(String, String, u32)> = self
                .inner
                .scripts
                .reclaim
                .key(self.inner.keys.queue())
                .arg(GROUP)
                .arg(worker)
                .arg(millis(self.inner.ttls.lease))
                .invoke_async(&mut self.conn())
                .await
                .map_err(store_error)?;
            if let Some((entry, task, deliveries)) = reclaimed {
                match self.hand_out(worker, entry, Some(task), deliveries).await? {
                    Some(claimed) => return Ok(Some(claimed)),
                    None => continue,
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

    async fn complete(&self, worker: &str, claimed: &Claimed, outcome: TaskOutcome) -> Result<(), StoreError> {
        self.finish(worker, claimed.id, &claimed.receipt, &outcome).await
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
