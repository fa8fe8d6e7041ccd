//! Keys that can be spent once across every gateway instance: a refresh token's id (`jti`) is
//! spent when the token is exchanged, so a replayed token is refused on any instance and after
//! a restart. Redis when the task store is Redis (`SET NX` with the token's remaining lifetime),
//! an in-process map for the memory store (one node: the process is the whole deployment).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::StoreError;

/// A set of keys each of which can be spent once, until its TTL passes.
#[async_trait::async_trait]
pub trait SpendOnce: Send + Sync + 'static {
    /// Marks `key` spent for `ttl`. `true` the first time, `false` if it was already spent.
    async fn spend_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;
}

/// The one-node ledger: spent keys in memory, dropped once expired.
#[derive(Default)]
pub struct MemoryOnce {
    spent: Mutex<HashMap<String, Instant>>,
}

/// Above this many entries, expired ones are swept on insert (amortised; the map holds at most
/// the keys spent within one TTL).
const SWEEP_ABOVE: usize = 1024;

#[async_trait::async_trait]
impl SpendOnce for MemoryOnce {
    async fn spend_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut spent = self.spent.lock().map_err(|_| StoreError::Unavailable("spent-key map poisoned".into()))?;
        if spent.len() > SWEEP_ABOVE {
            spent.retain(|_, until| *until > now);
        }
        match spent.get(key) {
            Some(until) if *until > now => Ok(false),
            _ => {
                spent.insert(key.to_string(), now + ttl);
                Ok(true)
            }
        }
    }
}

/// The shared ledger: `{namespace}:spent:{key}` in Redis, set with `NX` and the key's TTL.
pub struct RedisOnce {
    conn: ConnectionManager,
    namespace: String,
}

impl RedisOnce {
    /// Connects to the store's Redis. Fails with `Unavailable` if it cannot be reached now.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, StoreError> {
        let conn = super::redis::side_connection(url).await?;
        Ok(Self { conn, namespace: namespace.to_string() })
    }
}

#[async_trait::async_trait]
impl SpendOnce for RedisOnce {
    async fn spend_once(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}:spent:{key}", self.namespace))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(set.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_spent_once_until_its_ttl() {
        let once = MemoryOnce::default();
        assert!(once.spend_once("a", Duration::from_secs(10)).await.unwrap());
        assert!(!once.spend_once("a", Duration::from_secs(10)).await.unwrap());
        assert!(once.spend_once("b", Duration::from_secs(10)).await.unwrap());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(once.spend_once("a", Duration::from_secs(10)).await.unwrap(), "expired keys may be spent again");
    }
}
