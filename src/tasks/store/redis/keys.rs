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
    /// `TaskOutcome` as JSON).
    pub(super) fn record(&self, id: TaskId) -> String {
        format!("{}:task:{id}", self.ns)
    }

    /// Task input (JSON, images base64), deleted on completion.
    pub(super) fn input(&self, id: TaskId) -> String {
        format!("{}:input:{id}", self.ns)
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

/// Escapes the key separator (and the escape character itself).
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
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
    fn every_key_is_namespaced() {
        let k = Keys::new("ns");
        let id = TaskId::new();
        for key in [k.record(id), k.input(id), k.queue(), k.media("m"), k.face("o", "u")] {
            assert!(key.starts_with("ns:"), "{key}");
        }
    }
}
