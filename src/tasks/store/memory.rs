//! In-process task store: the embedded single-node default, with the Redis store's lease semantics.
//!
//! Everything lives behind one tokio `Mutex`; every trait method is one critical section, so
//! each transition is atomic exactly like a Redis Lua script. Waiting workers park on a
//! `Notify` that `submit` wakes. Expiry is checked lazily on access and swept every
//! [`SWEEP_EVERY`] (on access, and by a background task when a tokio runtime is present), so
//! KYC images do not linger in memory after their TTL even on an idle gateway.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::{Claimed, QueueStats, StoreError, TaskStore, Ttls};
use crate::tasks::{now_ms, FailureReason, TaskId, TaskInput, TaskOutcome, TaskRecord, TaskStatus};

/// How often expired entries are swept out (lazy expiry covers reads in between).
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The embedded store: one process, no persistence. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

/// State shared by clones and by the sweeper task.
struct Shared {
    state: Mutex<State>,
    /// Woken on every submit so parked `claim` calls look again.
    submitted: Notify,
    ttls: Ttls,
}

/// A value with its expiry deadline.
struct Expiring<T> {
    value: T,
    expires: Instant,
}

impl<T> Expiring<T> {
    fn live(&self, now: Instant) -> bool {
        self.expires > now
    }
}

/// A submitted task no worker has taken yet.
struct Queued {
    seq: u64,
    id: TaskId,
    enqueued: Instant,
}

/// A delivered task: who holds it and until when (the Redis pending-entries list).
struct Lease {
    id: TaskId,
    worker: String,
    until: Instant,
    deliveries: u32,
}

#[derive(Default)]
struct State {
    records: HashMap<TaskId, Expiring<TaskRecord>>,
    inputs: HashMap<TaskId, Expiring<TaskInput>>,
    media: HashMap<String, Expiring<Bytes>>,
    faces: HashMap<(String, String), Expiring<Bytes>>,
    /// Undelivered tasks, oldest first.
    queue: VecDeque<Queued>,
    /// Delivered, unfinished tasks by delivery sequence number (the receipt), oldest first.
    leases: BTreeMap<u64, Lease>,
    next_seq: u64,
    last_sweep: Option<Instant>,
}

// === impl MemoryStore ===

impl MemoryStore {
    /// A new empty store. When called inside a tokio runtime it also spawns a sweeper task
    /// that ends when the last clone of the store is dropped.
    pub fn new(ttls: Ttls) -> Self {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), submitted: Notify::new(), ttls });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(sweeper(Arc::downgrade(&shared)));
        }
        Self { shared }
    }

    fn lease_for(ttls: &Ttls, now: Instant) -> Instant {
        now + ttls.lease
    }
}

/// Periodically drops expired entries; exits once the store is gone.
async fn sweeper(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let mut st = shared.state.lock().await;
        st.sweep(Instant::now());
    }
}

/// Parses a receipt back into the delivery sequence number it names.
fn receipt_seq(claimed: &Claimed) -> Result<u64, StoreError> {
    // A receipt we never issued cannot name a lease this worker holds.
    claimed.receipt.parse().map_err(|_| StoreError::LeaseLost)
}

// === impl State ===

impl State {
    fn sweep_if_due(&mut self, now: Instant) {
        if self.last_sweep.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.last_sweep = Some(now);
        self.records.retain(|_, r| r.live(now));
        self.inputs.retain(|_, i| i.live(now));
        self.media.retain(|_, m| m.live(now));
        self.faces.retain(|_, f| f.live(now));
        // A queued or leased task whose record expired can never be reported: forget it.
        let records = &self.records;
        self.queue.retain(|q| records.contains_key(&q.id));
        self.leases.retain(|_, l| records.contains_key(&l.id));
    }

    /// The live record, dropping it if it has expired.
    fn record_mut(&mut self, id: TaskId, now: Instant) -> Option<&mut TaskRecord> {
        if self.records.get(&id).is_some_and(|r| !r.live(now)) {
            self.records.remove(&id);
            self.inputs.remove(&id);
        }
        self.records.get_mut(&id).map(|r| &mut r.value)
    }

    /// The live input, dropping it if it has expired.
    fn input(&mut self, id: TaskId, now: Instant) -> Option<TaskInput> {
        if self.inputs.get(&id).is_some_and(|i| !i.live(now)) {
            self.inputs.remove(&id);
        }
        self.inputs.get(&id).map(|i| i.value.clone())
    }

    /// Checks that `worker` holds the delivery named by `seq` for task `id`.
    fn check_lease(&self, seq: u64, id: TaskId, worker: &str) -> Result<(), StoreError> {
        match self.leases.get(&seq) {
            Some(l) if l.id == id && l.worker == worker => Ok(()),
            _ => Err(StoreError::LeaseLost),
        }
    }

    /// Fails a task whose input expired before it could run (it is never handed out).
    fn fail_expired(&mut self, id: TaskId, now: Instant) {
        self.inputs.remove(&id);
        if let Some(rec) = self.record_mut(id, now) {
            if rec.status.can_become(TaskStatus::Failure) {
                rec.status = TaskStatus::Failure;
                rec.outcome = Some(FailureReason::InputExpired.into());
                rec.updated_ms = now_ms();
            }
        }
    }

    /// Hands the next task to `worker`: first a delivery whose lease expired (reclaim), then
    /// the oldest undelivered task. Tasks whose input expired are failed and skipped.
    fn take_next(&mut self, worker: &str, now: Instant, ttls: &Ttls) -> Option<Claimed> {
        // Reclaim: the oldest delivery whose holder stopped heartbeating.
        while let Some(seq) = self.leases.iter().find(|(_, l)| l.until <= now).map(|(s, _)| *s) {
            let id = self.leases[&seq].id;
            match self.input(id, now) {
                Some(input) if self.record_mut(id, now).is_some() => {
                    let lease = self.leases.get_mut(&seq)?;
                    lease.worker = worker.to_owned();
                    lease.until = MemoryStore::lease_for(ttls, now);
                    lease.deliveries += 1;
                    return Some(Claimed { id, input, deliveries: lease.deliveries, receipt: seq.to_string() });
                }
                _ => {
                    self.fail_expired(id, now);
                    self.leases.remove(&seq);
                }
            }
        }
        // New work, oldest first.
        while let Some(q) = self.queue.pop_front() {
            if self.record_mut(q.id, now).is_none() {
                continue;
            }
            let Some(input) = self.input(q.id, now) else {
                self.fail_expired(q.id, now);
                continue;
            };
            let lease =
                Lease { id: q.id, worker: worker.to_owned(), until: MemoryStore::lease_for(ttls, now), deliveries: 1 };
            self.leases.insert(q.seq, lease);
            return Some(Claimed { id: q.id, input, deliveries: 1, receipt: q.seq.to_string() });
        }
        None
    }

    fn earliest_lease_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.until).min()
    }
}

// === impl TaskStore for MemoryStore ===

#[async_trait::async_trait]
impl TaskStore for MemoryStore {
    async fn submit(&self, record: TaskRecord, input: TaskInput) -> Result<(), StoreError> {
        let now = Instant::now();
        let expires = now + self.shared.ttls.task;
        let id = record.id;
        {
            let mut st = self.shared.state.lock().await;
            st.sweep_if_due(now);
            if let Some(existing) = st.record_mut(id, now) {
                return Err(StoreError::IllegalTransition { from: existing.status, to: TaskStatus::Pending });
            }
            st.records.insert(id, Expiring { value: record, expires });
            st.inputs.insert(id, Expiring { value: input, expires });
            let seq = st.next_seq;
            st.next_seq += 1;
            st.queue.push_back(Queued { seq, id, enqueued: now });
        }
        self.shared.submitted.notify_waiters();
        Ok(())
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        st.sweep_if_due(now);
        Ok(st.record_mut(id, now).map(|r| r.clone()))
    }

    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claimed>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a submit in between is not missed.
            let notified = self.shared.submitted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let next_lease_expiry = {
                let now = Instant::now();
                let mut st = self.shared.state.lock().await;
                st.sweep_if_due(now);
                if let Some(claimed) = st.take_next(worker, now, &self.shared.ttls) {
                    return Ok(Some(claimed));
                }
                st.earliest_lease_expiry()
            };
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // Wake for a submit, for a lease that may become reclaimable, or at the deadline.
            let until = next_lease_expiry.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn start(&self, worker: &str, claimed: &Claimed) -> Result<(), StoreError> {
        let seq = receipt_seq(claimed)?;
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        let status = st.record_mut(claimed.id, now).map(|r| r.status).ok_or(StoreError::NotFound)?;
        if !status.can_become(TaskStatus::Started) {
            return Err(StoreError::IllegalTransition { from: status, to: TaskStatus::Started });
        }
        st.check_lease(seq, claimed.id, worker)?;
        let rec = st.record_mut(claimed.id, now).ok_or(StoreError::NotFound)?;
        rec.status = TaskStatus::Started;
        rec.updated_ms = now_ms();
        Ok(())
    }

    async fn heartbeat(&self, worker: &str, claimed: &Claimed) -> Result<(), StoreError> {
        let seq = receipt_seq(claimed)?;
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        st.check_lease(seq, claimed.id, worker)?;
        let lease = st.leases.get_mut(&seq).ok_or(StoreError::LeaseLost)?;
        lease.until = MemoryStore::lease_for(&self.shared.ttls, now);
        Ok(())
    }

    async fn complete(&self, worker: &str, claimed: &Claimed, outcome: TaskOutcome) -> Result<(), StoreError> {
        let status = outcome.status();
        let seq = receipt_seq(claimed)?;
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        let Some(current) = st.record_mut(claimed.id, now).map(|r| r.status) else {
            // The record expired: nothing to write, but drop the delivery if we hold it.
            if st.check_lease(seq, claimed.id, worker).is_ok() {
                st.leases.remove(&seq);
                st.inputs.remove(&claimed.id);
            }
            return Err(StoreError::NotFound);
        };
        if !current.can_become(status) {
            return Err(StoreError::IllegalTransition { from: current, to: status });
        }
        st.check_lease(seq, claimed.id, worker)?;
        let rec = st.record_mut(claimed.id, now).ok_or(StoreError::NotFound)?;
        rec.status = status;
        rec.outcome = Some(outcome);
        rec.updated_ms = now_ms();
        st.inputs.remove(&claimed.id);
        st.leases.remove(&seq);
        Ok(())
    }

    async fn put_media(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        st.sweep_if_due(now);
        st.media.insert(key.to_owned(), Expiring { value: bytes, expires: now + self.shared.ttls.task });
        Ok(())
    }

    async fn get_media(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        if st.media.get(key).is_some_and(|m| !m.live(now)) {
            st.media.remove(key);
        }
        Ok(st.media.get(key).map(|m| m.value.clone()))
    }

    async fn put_face(&self, owner: &str, uuid: &str, image: Bytes) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        st.sweep_if_due(now);
        let entry = Expiring { value: image, expires: now + self.shared.ttls.face };
        st.faces.insert((owner.to_owned(), uuid.to_owned()), entry);
        Ok(())
    }

    async fn get_face(&self, owner: &str, uuid: &str) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let key = (owner.to_owned(), uuid.to_owned());
        let mut st = self.shared.state.lock().await;
        if st.faces.get(&key).is_some_and(|f| !f.live(now)) {
            st.faces.remove(&key);
        }
        Ok(st.faces.get(&key).map(|f| f.value.clone()))
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.state.lock().await;
        st.sweep(now);
        Ok(QueueStats {
            pending: st.queue.len() as u64,
            oldest_pending_age: st.queue.front().map(|q| now.duration_since(q.enqueued)),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Private-state checks; the behaviour shared with Redis is tested by
    //! `tests/gateway/store_conformance.rs`.
    use super::*;
    use crate::tasks::ServiceInput;

    fn input() -> TaskInput {
        TaskInput {
            upload: ServiceInput::FaceLiveness { selfie: Bytes::from_static(b"jpeg") },
            owner: "alice".into(),
            extend_data: false,
            trace_context: None,
            base_url: None,
        }
    }

    fn ttls(task_ms: u64, lease_ms: u64) -> Ttls {
        let task = Duration::from_millis(task_ms);
        Ttls { task, face: task, lease: Duration::from_millis(lease_ms) }
    }

    #[tokio::test]
    async fn expired_input_fails_the_task_instead_of_running_it() {
        let store = MemoryStore::new(ttls(3_600_000, 60_000));
        let inp = input();
        let id = TaskId::new();
        store.submit(TaskRecord::new(id, &inp, now_ms()), inp).await.unwrap();
        // Simulate the input expiring before the record (e.g. a shorter input TTL).
        store.shared.state.lock().await.inputs.get_mut(&id).unwrap().expires = Instant::now();
        assert!(store.claim("w1", Duration::ZERO).await.unwrap().is_none());
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.status, TaskStatus::Failure);
        assert_eq!(rec.outcome, Some(TaskOutcome::Failed { reason: FailureReason::InputExpired }));
    }

    #[tokio::test]
    async fn complete_deletes_the_input_and_the_lease() {
        let store = MemoryStore::new(ttls(3_600_000, 60_000));
        let inp = input();
        let id = TaskId::new();
        store.submit(TaskRecord::new(id, &inp, now_ms()), inp).await.unwrap();
        let claimed = store.claim("w1", Duration::ZERO).await.unwrap().unwrap();
        assert!(store.shared.state.lock().await.inputs.contains_key(&id));
        store.complete("w1", &claimed, TaskOutcome::Passed { data: Default::default() }).await.unwrap();
        let st = store.shared.state.lock().await;
        assert!(!st.inputs.contains_key(&id));
        assert!(st.leases.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_drops_expired_images_without_access() {
        let store = MemoryStore::new(ttls(200, 60_000));
        store.put_media("k", Bytes::from_static(b"jpeg")).await.unwrap();
        store.put_face("alice", "u", Bytes::from_static(b"jpeg")).await.unwrap();
        // Nothing reads the store: only the sweeper task can empty it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            {
                let st = store.shared.state.lock().await;
                if st.media.is_empty() && st.faces.is_empty() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "sweeper never dropped expired images");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
