//! Signed webhooks: a task submitted with a `callback_url` (or by an API key that has a default
//! one) is POSTed there once it has finished: the task as `GET task/` shows it, signed with
//! HMAC-SHA256 over `"{timestamp}.{body}"` (`Kycgate-Signature: t=…,v1=…`, as Stripe does), retried
//! with exponential backoff, at least once. Pending deliveries live in the store's backend
//! ([`queue`]), so any instance makes them.
//!
//! A callback URL is an outbound request the client chooses: it must resolve to public addresses
//! only (checked at submit and again at each delivery, and the connection pinned to the checked
//! address, so DNS rebinding cannot reach the internal network), unless the operator allows
//! private ones (`webhooks.allow_private`). Redirects are not followed.

pub mod queue;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::watch;

use crate::tasks::store::{SharedStore, StoreError};
use crate::tasks::{TaskId, TaskRecord};
use queue::{Delivery, DeliveryQueue};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "kycgate-signature";
/// The delivery id header (the same on every retry of one delivery: receivers deduplicate on it).
pub const DELIVERY_HEADER: &str = "kycgate-delivery";

/// The `[webhooks]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// HMAC-SHA256 key of the signatures. Empty: webhooks are off and a `callback_url` is refused.
    pub secret: String,
    /// Allow callback URLs on loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
    /// Attempts per delivery before it is dropped.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles per attempt up to `max_delay_ms`.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// One attempt, connecting included.
    pub timeout_ms: u64,
    /// How often a delivery whose task is still running is looked at again.
    pub poll_ms: u64,
    /// Longest callback URL accepted.
    pub max_url_bytes: usize,
    /// Deliveries pending at once (all instances); past it a `callback_url` is refused (503).
    pub max_pending: usize,
}

/// Why a callback URL is refused (the field error's wording).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallbackError {
    #[error("Webhooks are not enabled on this gateway.")]
    Disabled,
    #[error("Enter a valid URL.")]
    Invalid,
    #[error("The callback URL's host could not be resolved.")]
    Unresolved,
    #[error("Callback URLs may not point to loopback, private or link-local addresses.")]
    Private,
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("t={timestamp},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Whether `ip` is a public unicast address (not loopback, private, link-local, CGNAT,
/// documentation, benchmarking, multicast, unspecified or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || (seg[0] == 0x0064 && seg[1] == 0xff9b))
        }
    }
}

/// How long a DNS lookup of a callback host may take.
const RESOLVE_WITHIN: Duration = Duration::from_secs(5);
/// Deliveries made at once by one instance.
const BATCH: usize = 16;

/// The webhook sender of one instance.
pub struct Webhooks {
    config: WebhookConfig,
    queue: Arc<dyn DeliveryQueue>,
}

impl Webhooks {
    pub fn new(config: WebhookConfig, queue: Arc<dyn DeliveryQueue>) -> Self {
        Self { config, queue }
    }

    /// Checks a callback URL as given by a client: well-formed `http(s)`, no user info, and
    /// (unless allowed) resolving to public addresses only. The addresses it resolved to.
    pub async fn check(&self, raw: &str) -> Result<(Url, Vec<SocketAddr>), CallbackError> {
        if self.config.secret.is_empty() {
            return Err(CallbackError::Disabled);
        }
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > self.config.max_url_bytes {
            return Err(CallbackError::Invalid);
        }
        let url = Url::parse(raw).map_err(|_| CallbackError::Invalid)?;
        if !matches!(url.scheme(), "http" | "https") || !url.username().is_empty() || url.password().is_some() {
            return Err(CallbackError::Invalid);
        }
        let host = url.host_str().ok_or(CallbackError::Invalid)?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port_or_known_default().ok_or(CallbackError::Invalid)?;
        let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_WITHIN, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| CallbackError::Unresolved)?
            .map_err(|_| CallbackError::Unresolved)?
            .collect();
        if addrs.is_empty() {
            return Err(CallbackError::Unresolved);
        }
        if !self.config.allow_private && !addrs.iter().all(|a| is_public(a.ip())) {
            return Err(CallbackError::Private);
        }
        Ok((url, addrs))
    }

    /// Whether fewer than `max_pending` deliveries are queued.
    pub async fn has_room(&self) -> Result<bool, StoreError> {
        Ok(self.queue.pending().await? < self.config.max_pending)
    }

    /// Queues the delivery of `task` to `url` (already checked).
    pub async fn enqueue(&self, task: TaskId, url: &Url) -> Result<(), StoreError> {
        let d = Delivery { id: crate::ids::new_v4().simple().to_string(), task, url: url.to_string(), attempts: 0 };
        self.queue.schedule(&d, SystemTime::now()).await
    }

    /// Delivers until `stop` turns true. `render` is the task as `GET task/` shows it.
    pub async fn run(self: Arc<Self>, store: SharedStore, render: fn(&TaskRecord) -> serde_json::Value, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(self.config.poll_ms.clamp(20, 1000));
        let lease = Duration::from_millis(self.config.timeout_ms) + Duration::from_secs(10);
        loop {
            match self.queue.claim(BATCH, lease).await {
                Ok(batch) if !batch.is_empty() => {
                    let sends = batch.into_iter().map(|d| self.deliver(&store, render, d));
                    futures::future::join_all(sends).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "Webhook queue unavailable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One delivery attempt (or a look at a task still running).
    async fn deliver(&self, store: &SharedStore, render: fn(&TaskRecord) -> serde_json::Value, mut d: Delivery) {
        let metrics = crate::telemetry::metrics();
        let later = |ms: u64| SystemTime::now() + Duration::from_millis(ms);
        let record = match store.get(d.task).await {
            Ok(Some(r)) if r.outcome.is_some() => r,
            Ok(Some(_)) | Err(_) => {
                let _ = self.queue.schedule(&d, later(self.config.poll_ms)).await;
                return;
            }
            // Expired or deleted: nothing to say any more.
            Ok(None) => {
                let _ = self.queue.remove(&d.id).await;
                return;
            }
        };
        // Checked again: the name may resolve elsewhere now (DNS rebinding).
        let target = match self.check(&d.url).await {
            Ok(t) => Some(t),
            Err(CallbackError::Unresolved) => None,
            Err(_) => {
                tracing::warn!(task = %d.task, "Webhook dropped: its URL is no longer allowed");
                metrics.webhook_delivery("refused");
                let _ = self.queue.remove(&d.id).await;
                return;
            }
        };
        let body = serde_json::to_vec(&render(&record)).unwrap_or_default();
        let delivered = match target {
            Some((url, addrs)) => self.post(&url, addrs[0], &d.id, &body).await,
            None => false,
        };
        d.attempts += 1;
        if delivered {
            metrics.webhook_delivery("delivered");
            let _ = self.queue.remove(&d.id).await;
        } else if d.attempts >= self.config.max_attempts {
            tracing::warn!(task = %d.task, attempts = d.attempts, "Webhook given up");
            metrics.webhook_delivery("failed");
            let _ = self.queue.remove(&d.id).await;
        } else {
            metrics.webhook_delivery("retry");
            let _ = self.queue.schedule(&d, later(self.backoff(d.attempts))).await;
        }
    }

    /// Delay after `attempts` failed attempts: base × 2^(attempts − 1), capped, with "equal
    /// jitter" (uniform in its upper half) so receivers coming back up are not hit in lockstep.
    fn backoff(&self, attempts: u32) -> u64 {
        let factor = 1u64.checked_shl(attempts.saturating_sub(1)).unwrap_or(u64::MAX);
        let cap = self.config.base_delay_ms.saturating_mul(factor).min(self.config.max_delay_ms);
        rand::random_range(cap / 2..=cap)
    }

    /// POSTs `body` to `url`, connecting to `addr` only; true on a 2xx answer.
    async fn post(&self, url: &Url, addr: SocketAddr, id: &str, body: &[u8]) -> bool {
        let Some(host) = url.host_str() else { return false };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .resolve(host.trim_start_matches('[').trim_end_matches(']'), addr)
            .user_agent(concat!("kycgate-webhooks/", env!("CARGO_PKG_VERSION")))
            .build();
        let Ok(client) = client else { return false };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let sent = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(self.config.secret.as_bytes(), now, body))
            .header(DELIVERY_HEADER, id)
            .body(body.to_vec())
            .send()
            .await;
        sent.is_ok_and(|r| r.status().is_success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231-style check against ring's own HMAC, and the header shape.
        let sig = signature(b"whsec", 1_700_000_000, b"{\"id\":1}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"whsec");
        let want = hex::encode(ring::hmac::sign(&key, b"1700000000.{\"id\":1}").as_ref());
        assert_eq!(sig, format!("t=1700000000,v1={want}"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let config = WebhookConfig {
            secret: "s".into(),
            allow_private: false,
            max_attempts: 8,
            base_delay_ms: 1000,
            max_delay_ms: 5000,
            timeout_ms: 1000,
            poll_ms: 1000,
            max_url_bytes: 2048,
            max_pending: 10,
        };
        let hooks = Webhooks::new(config, Arc::new(queue::MemoryQueue::default()));
        for (attempts, cap) in [(1, 1000), (2, 2000), (3, 4000), (4, 5000), (40, 5000), (u32::MAX, 5000)] {
            for _ in 0..20 {
                let d = hooks.backoff(attempts);
                assert!((cap / 2..=cap).contains(&d), "attempt {attempts}: {d} outside {}..={cap}", cap / 2);
            }
        }
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "224.0.0.1", "198.18.0.1"] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
