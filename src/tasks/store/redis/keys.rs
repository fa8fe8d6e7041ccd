//! Redis key names: the one place they are built. Everything lives under `{namespace}:`.

use crate::tasks::TaskId;

/// The consumer group all gateway workers read the work stream through.
pub(super) const GROUP: &str = "workers";

/// The stream entry field holding the task id.
pub(super) const TASK_FIELD: &str = "task";

/// Key builder for one namespace (so several deployments or tests can share a Redis).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    ns: String,
}

impl Keys {
    pub(super) fn new(namespace: &str) -> Self {
        Self { ns: namespace.to_owned() }
    }

    /// Task record hash: `meta` (submit-time JSON), `status`, `updated_ms`, `result` (the
    /// `TaskOutcome` as JSON), `owner`, `entry` (its work stream entry id), `media` (its media
    /// keys, one per line), `idem` (its idempotency key), `pos` (its member in the owner's
    /// task index), `service` (for `list`'s filter, without decoding `meta`).
    pub(super) fn record(&self, id: TaskId) -> String {
        format!("{}:task:{id}", self.ns)
    }

    /// What every task record key starts with (`list.lua` builds record keys from ids).
    pub(super) fn record_prefix(&self) -> String {
        format!("{}:task:", self.ns)
    }

    /// One owner's task index for `list`: a sorted set, every score 0, members the tasks'
    /// list positions (`ListCursor` text, which sorts by creation time then id), so a page is
    /// one `ZREVRANGEBYLEX`. Kept by `submit.lua` and `delete.lua`; `list.lua` drops members
    /// whose record expired, and `submit.lua` those older than the owner's task TTL.
    pub(super) fn owner_tasks(&self, owner: &str) -> String {
        format!("{}:tasks:owner:{}", self.ns, escape(owner))
    }

    /// Task input hash, deleted on completion: `header` (JSON without images) and one field
    /// `img:<role>` per image, raw bytes.
    pub(super) fn input(&self, id: TaskId) -> String {
        format!("{}:input:{id}", self.ns)
    }

    /// A submit's images on their way in (a hash like [`Self::input`]), renamed to the input by
    /// `submit.lua` in the same transaction, or deleted when the submit is refused.
    pub(super) fn upload(&self, id: TaskId) -> String {
        format!("{}:upload:{id}", self.ns)
    }

    /// Unfinished tasks, scored by their expiry (ms): the queue bound, robust to a crashed
    /// instance (an entry past its score no longer counts).
    pub(super) fn inflight(&self) -> String {
        format!("{}:inflight", self.ns)
    }

    /// Image bytes of each unfinished task, and their total in field `#total`.
    pub(super) fn inflight_bytes(&self) -> String {
        format!("{}:inflight:bytes", self.ns)
    }

    /// Prefix of the per-owner unfinished-task sets (`<prefix><escaped owner>`); Lua scripts
    /// build the same names from a record's owner.
    pub(super) fn owner_inflight_prefix(&self) -> String {
        format!("{}:inflight:owner:", self.ns)
    }

    /// One owner's unfinished tasks, scored by expiry.
    pub(super) fn owner_inflight(&self, owner: &str) -> String {
        format!("{}{}", self.owner_inflight_prefix(), escape(owner))
    }

    /// An idempotency key of `owner` (hashed: clients choose its text). Value: `<fingerprint>
    /// <task id>`.
    pub(super) fn idempotency(&self, owner: &str, key: &str) -> String {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
        let digest = hex::encode(digest);
        format!("{}:idem:{}:{digest}", self.ns, escape(owner))
    }

    /// The glob matching every face of `owner` (glob characters in the owner escaped).
    pub(super) fn faces_of(&self, owner: &str) -> String {
        let mut pattern = format!("{}:face:", glob_escape(&self.ns));
        pattern.push_str(&glob_escape(&escape(owner)));
        pattern.push_str(":*");
        pattern
    }

    /// The work stream read by the [`GROUP`] consumer group.
    pub(super) fn queue(&self) -> String {
        format!("{}:queue", self.ns)
    }

    /// A media object (portrait JPEG).
    pub(super) fn media(&self, key: &str) -> String {
        format!("{}:media:{key}", self.ns)
    }

    /// A registered face. The owner is escaped so `owner:uuid` pairs cannot collide
    /// (owner `a:b` + uuid `c` vs owner `a` + uuid `b:c`).
    pub(super) fn face(&self, owner: &str, uuid: &str) -> String {
        format!("{}:face:{}:{uuid}", self.ns, escape(owner))
    }
}

/// Escapes the key separator (and the escape character itself). `prelude.lua`'s `escape`
/// does the same.
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

/// Escapes Redis glob metacharacters (`SCAN MATCH`).
fn glob_escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_keys_are_owner_scoped_without_collisions() {
        let k = Keys::new("ns");
        assert_eq!(k.face("alice", "u1"), "ns:face:alice:u1");
        assert_ne!(k.face("a:b", "c"), k.face("a", "b:c"));
        assert_ne!(k.face("a%3Ab", "c"), k.face("a:b", "c"));
    }

    #[test]
    fn face_globs_match_only_that_owner() {
        let k = Keys::new("ns");
        assert_eq!(k.faces_of("alice"), "ns:face:alice:*");
        assert_eq!(k.faces_of("a*:b"), "ns:face:a\\*%3Ab:*");
        assert_ne!(k.idempotency("a", "k"), k.idempotency("b", "k"), "keys are per owner");
    }

    #[test]
    fn every_key_is_namespaced() {
        let k = Keys::new("ns");
        let id = TaskId::new();
        for key in [
            k.record(id),
            k.input(id),
            k.upload(id),
            k.queue(),
            k.media("m"),
            k.face("o", "u"),
            k.inflight(),
            k.inflight_bytes(),
            k.owner_inflight("o"),
            k.owner_tasks("o"),
            k.record_prefix(),
            k.idempotency("o", "key"),
        ] {
            assert!(key.starts_with("ns:"), "{key}");
        }
    }
}
