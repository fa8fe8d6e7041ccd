//! Pending webhook deliveries, in the store's backend so any instance can make (or retry) one:
//! Redis (a sorted set of ids by due time plus a hash of records) with the Redis task store, a
//! map with the memory store. A claim moves an entry's due time past a lease, so a delivery an
//! instance dies in the middle of is made again by another one (at least once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::tasks::store::StoreError;
use crate::tasks::TaskId;

/// One webhook to send once its task has finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique per delivery (a task has at most one).
    pub id: String,
    pub task: TaskId,
    pub url: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// Where pending deliveries live.
#[async_trait::async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Adds (or replaces) `d`, due at `due`.
    async fn schedule(&self, d: &Delivery, due: SystemTime) -> Result<(), StoreError>;
    /// Takes up to `max` deliveries due by now, hiding each for `lease` (then it is due again).
    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, StoreError>;
    /// Removes a delivery (sent, or given up).
    async fn remove(&self, id: &str) -> Result<(), StoreError>;
    /// Deliveries pending (for tests and the queue bound).
    async fn pending(&self) -> Result<usize, StoreError>;
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The one-node queue.
#[derive(Default)]
pub struct MemoryQueue {
    entries: Mutex<HashMap<String, (u64, Delivery)>>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("webhook queue lock poisoned".into())
}

#[async_trait::async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn schedule(&self, d: &Delivery, due: SystemTime) -> Result<(), StoreError> {
        self.entries.lock().map_err(poisoned)?.insert(d.id.clone(), (ms(due), d.clone()));
        Ok(())
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = SystemTime::now();
        let mut entries = self.entries.lock().map_err(poisoned)?;
        let mut due: Vec<(u64, String)> =
            entries.iter().filter(|(_, (at, _))| *at <= ms(now)).map(|(id, (at, _))| (*at, id.clone())).collect();
        due.sort();
        due.truncate(max);
        let mut out = Vec::with_capacity(due.len());
        for (_, id) in due {
            if let Some((at, d)) = entries.get_mut(&id) {
                *at = ms(now + lease);
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        self.entries.lock().map_err(poisoned)?.remove(id);
        Ok(())
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        Ok(self.entries.lock().map_err(poisoned)?.len())
    }
}

/// The shared queue: `{ns}:webhooks:due` (ids by due time, ms) and `{ns}:webhooks:rec` (JSON).
pub struct RedisQueue {
    conn: ConnectionManager,
    due: String,
    records: String,
}

/// Takes the due ids (score ≤ now), re-scores them to now + lease, returns their records.
const CLAIM: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  local rec = redis.call('HGET', KEYS[2], id)
  if rec then table.insert(out, rec) else redis.call('ZREM', KEYS[1], id) end
end
return out
";

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisQueue {
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, StoreError> {
        let conn = crate::tasks::store::redis::side_connection(url).await?;
        Ok(Self { conn, due: format!("{namespace}:webhooks:due"), records: format!("{namespace}:webhooks:rec") })
    }
}

#[async_trait::async_trait]
impl DeliveryQueue for RedisQueue {
    async fn schedule(&self, d: &Delivery, due: SystemTime) -> Result<(), StoreError> {
        let json = serde_json::to_string(d).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        redis::pipe()
            .atomic()
            .hset(&self.records, &d.id, json)
            .ignore()
            .zadd(&self.due, &d.id, ms(due))
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn claim(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = SystemTime::now();
        let raw: Vec<String> = redis::Script::new(CLAIM)
            .key(&self.due)
            .key(&self.records)
            .arg(ms(now))
            .arg(ms(now + lease))
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        raw.iter().map(|r| serde_json::from_str(r).map_err(|e| StoreError::Corrupt(e.to_string()))).collect()
    }

    async fn remove(&self, id: &str) -> Result<(), StoreError> {
        redis::pipe()
            .atomic()
            .zrem(&self.due, id)
            .ignore()
            .hdel(&self.records, id)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn pending(&self) -> Result<usize, StoreError> {
        redis::cmd("ZCARD").arg(&self.due).query_async(&mut self.conn.clone()).await.map_err(unavailable)
    }
}
