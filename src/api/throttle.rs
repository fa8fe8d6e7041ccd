//! Failed-login limits for `token/obtain/`: per user name and per client address, in a bounded
//! map, so a password cannot be guessed at the rate argon2 allows (and a sprayer cannot try many
//! names from one address). Per process: each instance counts its own attempts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// The `[auth]` login limits.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed attempts per user name within `window` before it is refused.
    pub per_user: u32,
    /// Failed attempts per client address within `window` before it is refused.
    pub per_address: u32,
    pub window: Duration,
    /// Most user names plus addresses tracked at once.
    pub max_tracked: usize,
}

/// A tracked name or address, by digest: user names are not kept in memory in clear, and every
/// key has the same size however long the name is.
type Key = [u8; 32];

struct Window {
    failures: u32,
    ends: Instant,
}

/// Counts failed logins. An attempt is counted when admitted (so concurrent guesses cannot pass
/// the limit together) and taken back when it succeeds.
pub struct LoginThrottle {
    limits: LoginLimits,
    windows: Mutex<HashMap<Key, Window>>,
}

/// What an admitted attempt counted, to give back on success.
pub struct Admitted {
    user: Key,
    address: Option<Key>,
}

fn key(kind: &[u8], value: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(kind);
    h.update([0]);
    h.update(value);
    h.finalize().into()
}

impl LoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self { limits, windows: Mutex::new(HashMap::new()) }
    }

    /// Admits an attempt for `user` from `address`, counting it as a failure until
    /// [`LoginThrottle::succeeded`]; or the time until the caller may try again.
    pub fn admit(&self, user: &str, address: Option<IpAddr>) -> Result<Admitted, Duration> {
        let now = Instant::now();
        let user_key = key(b"user", user.as_bytes());
        let address_key = address.map(|a| key(b"address", a.to_string().as_bytes()));
        let wanted = [(user_key, self.limits.per_user)]
            .into_iter()
            .chain(address_key.map(|k| (k, self.limits.per_address)));
        let mut windows = self.windows.lock().map_err(|_| self.limits.window)?;
        let mut checks = Vec::with_capacity(2);
        for (k, limit) in wanted {
            match windows.get(&k) {
                Some(w) if w.ends > now && w.failures >= limit => return Err(w.ends - now),
                Some(w) if w.ends > now => checks.push((k, false)),
                _ => checks.push((k, true)),
            }
        }
        let fresh = checks.iter().filter(|(_, fresh)| *fresh).count();
        if windows.len() + fresh > self.limits.max_tracked {
            windows.retain(|_, w| w.ends > now);
            if windows.len() + fresh > self.limits.max_tracked {
                // Full of live windows (a spray from many addresses): refuse untracked callers
                // rather than forget the counts of tracked ones.
                let soonest = windows.values().map(|w| w.ends).min().unwrap_or(now + self.limits.window);
                return Err(soonest.saturating_duration_since(now).max(Duration::from_secs(1)));
            }
        }
        for (k, fresh) in checks {
            let w = windows.entry(k).or_insert(Window { failures: 0, ends: now + self.limits.window });
            if fresh {
                *w = Window { failures: 0, ends: now + self.limits.window };
            }
            w.failures += 1;
        }
        Ok(Admitted { user: user_key, address: address_key })
    }

    /// The attempt was right: the user name's count is cleared, the address's attempt given back.
    pub fn succeeded(&self, admitted: Admitted) {
        let Ok(mut windows) = self.windows.lock() else { return };
        windows.remove(&admitted.user);
        if let Some(w) = admitted.address.and_then(|a| windows.get_mut(&a)) {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    /// Names and addresses tracked now (for tests of the bound).
    pub fn tracked(&self) -> usize {
        self.windows.lock().map(|w| w.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_user: u32, per_address: u32, max_tracked: usize) -> LoginThrottle {
        LoginThrottle::new(LoginLimits { per_user, per_address, window: Duration::from_secs(60), max_tracked })
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[tokio::test(start_paused = true)]
    async fn the_attempt_after_the_limit_is_refused_until_the_window_ends() {
        let t = throttle(3, 100, 100);
        for _ in 0..3 {
            assert!(t.admit("alice", IP).is_ok());
        }
        let wait = t.admit("alice", IP).err().expect("4th refused");
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(59), "{wait:?}");
        assert!(t.admit("bob", IP).is_ok(), "another name is counted apart");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(t.admit("alice", IP).is_ok(), "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_name_and_an_address_is_limited_across_names() {
        let t = throttle(2, 3, 100);
        let a = t.admit("alice", IP).expect("admitted");
        t.succeeded(a);
        for name in ["a", "b", "c"] {
            assert!(t.admit(name, IP).is_ok());
        }
        assert!(t.admit("d", IP).is_err(), "the address sprayed 3 names");
        assert!(t.admit("d", None).is_ok(), "no address: only the name counts");
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_is_bounded() {
        let t = throttle(5, 5, 10);
        let mut refused = 0;
        for i in 0..50 {
            refused += usize::from(t.admit(&format!("u{i}"), None).is_err());
        }
        assert!(t.tracked() <= 10, "{}", t.tracked());
        assert_eq!(refused, 40);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(t.admit("late", None).is_ok(), "expired windows make room");
    }
}
