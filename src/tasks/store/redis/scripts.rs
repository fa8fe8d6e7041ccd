//! The Lua scripts: one per queue transition, each atomic on the server (see `lua/*.lua`).

use redis::Script;

/// Helpers shared by every script, prepended at load time.
const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The compiled scripts (hashes computed once; `EVALSHA` falls back to `EVAL` after a restart).
pub(super) struct Scripts {
    pub(super) submit: Script,
    pub(super) reclaim: Script,
    pub(super) start: Script,
    pub(super) heartbeat: Script,
    pub(super) complete: Script,
    pub(super) queue_stats: Script,
    pub(super) delete: Script,
    pub(super) list: Script,
}

impl Scripts {
    pub(super) fn load() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            submit: with_prelude(include_str!("lua/submit.lua")),
            reclaim: with_prelude(include_str!("lua/reclaim.lua")),
            start: with_prelude(include_str!("lua/start.lua")),
            heartbeat: with_prelude(include_str!("lua/heartbeat.lua")),
            complete: with_prelude(include_str!("lua/complete.lua")),
            queue_stats: with_prelude(include_str!("lua/queue_stats.lua")),
            delete: with_prelude(include_str!("lua/delete.lua")),
            list: with_prelude(include_str!("lua/list.lua")),
        }
    }
}

/// A script's verdict: the first element of the reply array, plus an optional detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Ok(Option<String>),
    NotFound,
    Illegal(String),
    LeaseLost,
    /// `submit`: the idempotency key names this task already.
    Existing(String),
    /// `submit`: the idempotency key was used with another request.
    Conflict,
    /// `submit`: a queue bound (`owner` or `queue`) is reached.
    Full(String),
}

impl redis::FromRedisValue for Verdict {
    fn from_redis_value(v: &redis::Value) -> redis::RedisResult<Self> {
        let parts: Vec<String> = redis::from_redis_value(v)?;
        Self::from_parts(&parts)
            .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::TypeError, "unexpected script verdict")))
    }
}

impl Verdict {
    /// The verdict a script's reply array names (`["OK", detail]`, `["FULL", "owner"]`, …).
    pub(super) fn from_parts(parts: &[String]) -> Option<Self> {
        let detail = parts.get(1).cloned();
        Some(match parts.first().map(String::as_str)? {
            "OK" => Self::Ok(detail),
            "NOT_FOUND" => Self::NotFound,
            "LEASE_LOST" => Self::LeaseLost,
            "ILLEGAL" => Self::Illegal(detail.unwrap_or_default()),
            "EXISTING" => Self::Existing(detail.unwrap_or_default()),
            "CONFLICT" => Self::Conflict,
            "FULL" => Self::Full(detail.unwrap_or_default()),
            _ => return None,
        })
    }
}
