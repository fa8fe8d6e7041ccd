//! In-process task store: the embedded single-node default, with the Redis store's lease semantics.
//!
//! Everything lives behind one `Mutex`; every trait method is one critical section, so each
//! transition is atomic exactly like a Redis Lua script. The mutex is std's, not tokio's: no
//! section awaits, and a fair async lock hands itself to the next waiter in line, so a client's
//! submit waited until every worker queued before it had been scheduled and had its turn
//! (docs/PERFORMANCE.md, "The store's lock"). Waiting workers park on a
//! `Notify` that `submit` wakes, one worker per task. Expiry is checked lazily on access and
//! swept every [`SWEEP_EVERY`] (on access, and by a background task when a tokio runtime is
//! present), so KYC images do not linger in memory after their TTL even on an idle gateway.
//!
//! Bounded: unfinished tasks count against [`QueueLimits`] (per owner and in total, tasks and
//! image bytes). Queued images beyond `memory_max_bytes` of RAM spill to `spill_dir` (one file
//! per task, named by its id, deleted when the task finishes, expires or is deleted); without a
//! spill directory that RAM bound refuses submits like the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    codec, Claimed, FullScope, Idempotency, ListCursor, QueueStats, StoreError, StoreOptions, Submitted, TaskPage,
    TaskMedia, TaskQuery, TaskStore, TaskSummary, Ttls,
};
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
    /// One parked `claim` is woken per submit (`notify_one`: one task needs one worker; waking
    /// them all had every idle worker contend for the lock to find the queue empty). A woken
    /// `claim` dropped before it looks passes its wake-up on to the next one (tokio's `Notified`).
    submitted: Notify,
    ttls: Ttls,
    opts: StoreOptions,
}

impl Shared {
    /// The state, for one critical section (never held across an await: the guard is not
    /// `Send`). A poisoned lock is used as it is: tokio's lock, used before, did not poison
    /// either, and refusing every later call would turn one panic into a dead store.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

/// Where a queued input's images are.
enum Held {
    Ram(TaskInput),
    /// In a spill file (see `codec::to_file`).
    Spilled(PathBuf),
}

/// A task record as kept: a finished task's outcome as its JSON text, as Redis keeps it. Records
/// stay for the task TTL (a day by default), and an outcome as a `serde_json::Value` tree takes
/// about ten times its text: 10,000 finished tasks held ~100 MB more that way.
struct Kept {
    /// The record, its `outcome` always `None` here.
    record: TaskRecord,
    outcome: Option<Box<str>>,
}

impl Kept {
    fn new(mut record: TaskRecord) -> Result<Self, StoreError> {
        let outcome = record.outcome.take().map(|o| encode_outcome(&o)).transpose()?;
        Ok(Self { record, outcome })
    }

    /// The record with its outcome, as callers see it.
    fn to_record(&self) -> Result<TaskRecord, StoreError> {
        let mut record = self.record.clone();
        record.outcome = match &self.outcome {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("task outcome: {e}")))?),
            None => None,
        };
        Ok(record)
    }
}

fn encode_outcome(outcome: &TaskOutcome) -> Result<Box<str>, StoreError> {
    serde_json::to_string(outcome).map(String::into_boxed_str).map_err(|e| StoreError::Corrupt(format!("task outcome: {e}")))
}

/// A queued input and what it costs.
struct StoredInput {
    held: Held,
    bytes: u64,
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

/// What an unfinished task counts against the bounds.
struct Inflight {
    owner: String,
    bytes: u64,
}

/// An idempotency key's task, and the request fingerprint it was first used with.
struct KeyUse {
    fingerprint: String,
    task: TaskId,
}

#[derive(Default)]
struct State {
    records: HashMap<TaskId, Expiring<Kept>>,
    inputs: HashMap<TaskId, Expiring<StoredInput>>,
    media: HashMap<String, Expiring<Bytes>>,
    /// Media keys stored for each task (deleted with it).
    task_media: HashMap<TaskId, Vec<String>>,
    faces: HashMap<(String, String), Expiring<Bytes>>,
    /// Undelivered tasks, oldest first.
    queue: VecDeque<Queued>,
    /// Delivered, unfinished tasks by delivery sequence number (the receipt), oldest first.
    leases: BTreeMap<u64, Lease>,
    /// Unfinished tasks, with the totals the bounds check.
    inflight: HashMap<TaskId, Inflight>,
    inflight_bytes: u64,
    per_owner: HashMap<String, u64>,
    /// Image bytes of inputs held in RAM (not spilled).
    ram_bytes: u64,
    /// `(owner, key)` → its task.
    keys: HashMap<(String, String), Expiring<KeyUse>>,
    /// Each owner's live tasks by list position (for `list`); kept with `records`.
    owner_index: HashMap<String, BTreeSet<ListCursor>>,
    next_seq: u64,
    last_sweep: Option<Instant>,
}

/// A task taken from the queue, its input possibly still on disk.
struct Taken {
    id: TaskId,
    seq: u64,
    deliveries: u32,
    submitted_ms: Option<i64>,
    input: Result<TaskInput, PathBuf>,
}

// === impl MemoryStore ===

impl MemoryStore {
    /// A new empty store with default bounds and no spilling. When called inside a tokio
    /// runtime it also spawns a sweeper task that ends when the last clone is dropped.
    pub fn new(ttls: Ttls) -> Self {
        Self::with_options(ttls, StoreOptions::default())
    }

    /// A new empty store with explicit bounds, retention and spill directory (used as is:
    /// `open` also creates and cleans it).
    pub fn with_options(ttls: Ttls, opts: StoreOptions) -> Self {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), submitted: Notify::new(), ttls, opts });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(sweeper(Arc::downgrade(&shared)));
        }
        Self { shared }
    }

    /// `with_options`, after preparing the spill directory: created 0700 if missing, and
    /// emptied of spill files a previous process left (this store keeps nothing across
    /// restarts). Only files named like task ids are removed.
    pub fn open(ttls: Ttls, opts: StoreOptions) -> Result<Self, StoreError> {
        if let Some(dir) = &opts.spill_dir {
            prepare_spill_dir(dir).map_err(|e| StoreError::Unavailable(format!("spill directory: {e}")))?;
        }
        Ok(Self::with_options(ttls, opts))
    }

    fn lease_for(ttls: &Ttls, now: Instant) -> Instant {
        now + ttls.lease
    }

    fn spill_path(&self, id: TaskId) -> Option<PathBuf> {
        self.shared.opts.spill_dir.as_ref().map(|d| d.join(id.to_string()))
    }
}

/// Creates `dir` (0700) and removes stale spill files in it.
fn prepare_spill_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    builder.create(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(|n| n.parse::<TaskId>().is_ok()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Writes a spill file readable by this user only; never follows or replaces an existing file.
fn write_spill(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(bytes)
}

/// A spill file written for a submit not yet stored: removed when dropped (a refused or
/// cancelled submit) unless the store took the path.
struct SpillFile(Option<PathBuf>);

impl Drop for SpillFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Periodically drops expired entries; exits once the store is gone.
async fn sweeper(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let mut st = shared.lock();
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
        let expired: Vec<TaskId> = self.records.iter().filter(|(_, r)| !r.live(now)).map(|(id, _)| *id).collect();
        for id in expired {
            self.forget_task(id);
        }
        let expired: Vec<TaskId> = self.inputs.iter().filter(|(_, i)| !i.live(now)).map(|(id, _)| *id).collect();
        for id in expired {
            self.drop_input(id);
        }
        self.media.retain(|_, m| m.live(now));
        self.faces.retain(|_, f| f.live(now));
        self.keys.retain(|_, k| k.live(now));
        // A queued or leased task whose record expired can never be reported: forget it.
        let records = &self.records;
        self.queue.retain(|q| records.contains_key(&q.id));
        self.leases.retain(|_, l| records.contains_key(&l.id));
    }

    /// Drops a task's input (and its spill file).
    fn drop_input(&mut self, id: TaskId) {
        if let Some(input) = self.inputs.remove(&id) {
            match input.value.held {
                Held::Ram(_) => self.ram_bytes = self.ram_bytes.saturating_sub(input.value.bytes),
                Held::Spilled(path) => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!(task = %id, error = %e, "Could not delete a spilled input");
                    }
                }
            }
        }
    }

    /// The task no longer counts against the queue bounds.
    fn release(&mut self, id: TaskId) {
        if let Some(f) = self.inflight.remove(&id) {
            self.inflight_bytes = self.inflight_bytes.saturating_sub(f.bytes);
            if let Some(n) = self.per_owner.get_mut(&f.owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_owner.remove(&f.owner);
                }
            }
        }
    }

    /// Forgets everything of a task but its queue position and lease (which die with the
    /// record: `take_next` and the sweep skip them).
    fn forget_task(&mut self, id: TaskId) {
        if let Some(record) = self.records.remove(&id) {
            self.unindex(&record.value.record);
        }
        self.drop_input(id);
        self.release(id);
        for key in self.task_media.remove(&id).unwrap_or_default() {
            self.media.remove(&key);
        }
    }

    /// Takes `record` out of its owner's list index.
    fn unindex(&mut self, record: &TaskRecord) {
        if let Some(index) = self.owner_index.get_mut(&record.owner) {
            index.remove(&ListCursor::of(record));
            if index.is_empty() {
                self.owner_index.remove(&record.owner);
            }
        }
    }

    /// One page of `owner`'s tasks, newest first; positions whose record is gone are dropped
    /// on the way (the sweep normally got there first).
    fn list(&mut self, owner: &str, query: &TaskQuery, now: Instant) -> TaskPage {
        let limit = query.limit.clamp(1, TaskQuery::MAX_LIMIT);
        let Some(index) = self.owner_index.get(owner) else { return TaskPage::default() };
        let upper = query.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = TaskPage::default();
        let mut gone = Vec::new();
        let mut last_read = None;
        for (read, pos) in index.range((Bound::Unbounded, upper)).rev().enumerate() {
            if read == TaskQuery::READ_BUDGET {
                // Budget spent: the next page goes on below the last entry read.
                page.next = last_read;
                break;
            }
            last_read = Some(*pos);
            let Some(record) = self.records.get(&pos.id).filter(|r| r.live(now)).map(|r| &r.value.record) else {
                gone.push(*pos);
                continue;
            };
            if query.status.is_some_and(|s| s != record.status) || query.service.is_some_and(|s| s != record.service) {
                continue;
            }
            if page.tasks.len() == limit {
                page.next = page.tasks.last().map(|t| ListCursor { created_ms: t.created_ms, id: t.id });
                break;
            }
            page.tasks.push(TaskSummary::of(record));
        }
        for pos in gone {
            if self.records.contains_key(&pos.id) {
                self.forget_task(pos.id);
            } else if let Some(index) = self.owner_index.get_mut(owner) {
                index.remove(&pos);
            }
        }
        page
    }

    /// The live record, dropping the task if it has expired.
    fn record_mut(&mut self, id: TaskId, now: Instant) -> Option<&mut TaskRecord> {
        self.kept_mut(id, now).map(|k| &mut k.record)
    }

    /// The live record as kept (outcome encoded), dropping the task if it has expired.
    fn kept_mut(&mut self, id: TaskId, now: Instant) -> Option<&mut Kept> {
        if self.records.get(&id).is_some_and(|r| !r.live(now)) {
            self.forget_task(id);
        }
        self.records.get_mut(&id).map(|r| &mut r.value)
    }

    /// The live input (or its spill file), dropping it if it has expired.
    fn input(&mut self, id: TaskId, now: Instant) -> Option<Result<TaskInput, PathBuf>> {
        if self.inputs.get(&id).is_some_and(|i| !i.live(now)) {
            self.drop_input(id);
        }
        self.inputs.get(&id).map(|i| match &i.value.held {
            Held::Ram(input) => Ok(input.clone()),
            Held::Spilled(path) => Err(path.clone()),
        })
    }

    /// Checks that `worker` holds the delivery named by `seq` for task `id`.
    fn check_lease(&self, seq: u64, id: TaskId, worker: &str) -> Result<(), StoreError> {
        match self.leases.get(&seq) {
            Some(l) if l.id == id && l.worker == worker => Ok(()),
            _ => Err(StoreError::LeaseLost),
        }
    }

    /// Fails a task that cannot run (input expired or unreadable); it is never handed out.
    fn fail(&mut self, id: TaskId, reason: FailureReason, now: Instant) {
        self.drop_input(id);
        self.release(id);
        let outcome = encode_outcome(&reason.into());
        if let (Some(kept), Ok(outcome)) = (self.kept_mut(id, now), outcome) {
            if kept.record.status.can_become(TaskStatus::Failure) {
                kept.record.status = TaskStatus::Failure;
                kept.outcome = Some(outcome);
                kept.record.updated_ms = now_ms();
            }
        }
    }

    /// Hands the next task to `worker`: first a delivery whose lease expired (reclaim), then
    /// the oldest undelivered task. Tasks whose input expired are failed and skipped.
    fn take_next(&mut self, worker: &str, now: Instant, ttls: &Ttls) -> Option<Taken> {
        // Reclaim: the oldest delivery whose holder stopped heartbeating.
        while let Some(seq) = self.leases.iter().find(|(_, l)| l.until <= now).map(|(s, _)| *s) {
            let id = self.leases[&seq].id;
            match self.input(id, now) {
                Some(input) if self.record_mut(id, now).is_some() => {
                    let lease = self.leases.get_mut(&seq)?;
                    lease.worker = worker.to_owned();
                    lease.until = MemoryStore::lease_for(ttls, now);
                    lease.deliveries += 1;
                    let deliveries = lease.deliveries;
                    let submitted_ms = self.records.get(&id).map(|r| r.value.record.created_ms);
                    return Some(Taken { id, seq, deliveries, submitted_ms, input });
                }
                _ => {
                    self.fail(id, FailureReason::InputExpired, now);
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
                self.fail(q.id, FailureReason::InputExpired, now);
                continue;
            };
            let lease =
                Lease { id: q.id, worker: worker.to_owned(), until: MemoryStore::lease_for(ttls, now), deliveries: 1 };
            self.leases.insert(q.seq, lease);
            let submitted_ms = self.records.get(&q.id).map(|r| r.value.record.created_ms);
            return Some(Taken { id: q.id, seq: q.seq, deliveries: 1, submitted_ms, input });
        }
        None
    }

    fn earliest_lease_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.until).min()
    }

    /// The bound `owner`'s next task of `bytes` would cross, if any.
    fn over_bound(&self, owner: &str, bytes: u64, opts: &StoreOptions, in_ram: bool) -> Option<FullScope> {
        let limits = &opts.limits;
        if self.per_owner.get(owner).copied().unwrap_or(0) >= limits.max_per_owner {
            return Some(FullScope::Owner);
        }
        let tasks = self.inflight.len() as u64;
        let over_ram = in_ram && self.ram_bytes.saturating_add(bytes) > opts.memory_max_bytes;
        if tasks >= limits.max_tasks || self.inflight_bytes.saturating_add(bytes) > limits.max_bytes || over_ram {
            return Some(FullScope::Queue);
        }
        None
    }
}

// === impl TaskStore for MemoryStore ===

#[async_trait::async_trait]
impl TaskStore for MemoryStore {
    async fn submit_with(
        &self,
        record: TaskRecord,
        input: TaskInput,
        idempotency: Option<&Idempotency>,
    ) -> Result<Submitted, StoreError> {
        let opts = &self.shared.opts;
        let id = record.id;
        let bytes = input.upload.image_bytes();
        let ttl = opts.task_ttl(&self.shared.ttls, &input.owner);
        let kept = Kept::new(record)?;
        // Set once the images are in a spill file; removes the file again unless the task is stored.
        let mut spilled: Option<SpillFile> = None;
        loop {
            let now = Instant::now();
            // Past the RAM bound the images go to a spill file. The file is written with the
            // lock released (file IO never holds it), then everything is checked again: the
            // decision and the insert must sit in one critical section, or concurrent submits
            // that all saw room in RAM are refused once the first of them fill it.
            let spill_to = {
                let mut st = self.shared.lock();
                st.sweep_if_due(now);
                let key = idempotency.map(|k| (input.owner.clone(), k.key.clone()));
                if let (Some(k), Some(idem)) = (&key, idempotency) {
                    if let Some(used) = st.keys.get(k).filter(|u| u.live(now)) {
                        return if used.value.fingerprint == idem.fingerprint {
                            Ok(Submitted::Existing(used.value.task))
                        } else {
                            Err(StoreError::IdempotencyConflict)
                        };
                    }
                }
                if let Some(existing) = st.record_mut(id, now) {
                    let from = existing.status;
                    return Err(StoreError::IllegalTransition { from, to: TaskStatus::Pending });
                }
                let ram_full = st.ram_bytes.saturating_add(bytes) > opts.memory_max_bytes;
                let spill_to = if ram_full && spilled.is_none() { self.spill_path(id) } else { None };
                match spill_to {
                    Some(path) => path,
                    None => {
                        if let Some(scope) = st.over_bound(&input.owner, bytes, opts, spilled.is_none()) {
                            return Err(StoreError::Full { scope, retry_after: opts.limits.retry_after });
                        }
                        if let (Some(k), Some(idem)) = (key, idempotency) {
                            let used = KeyUse { fingerprint: idem.fingerprint.clone(), task: id };
                            st.keys.insert(k, Expiring { value: used, expires: now + opts.idempotency_ttl });
                        }
                        st.inflight.insert(id, Inflight { owner: input.owner.clone(), bytes });
                        st.inflight_bytes += bytes;
                        *st.per_owner.entry(input.owner.clone()).or_default() += 1;
                        let held = match spilled.as_mut().and_then(|f| f.0.take()) {
                            Some(path) => Held::Spilled(path),
                            None => {
                                st.ram_bytes += bytes;
                                Held::Ram(input)
                            }
                        };
                        let expires = now + ttl;
                        st.owner_index.entry(kept.record.owner.clone()).or_default().insert(ListCursor::of(&kept.record));
                        st.records.insert(id, Expiring { value: kept, expires });
                        st.inputs.insert(id, Expiring { value: StoredInput { held, bytes }, expires });
                        let seq = st.next_seq;
                        st.next_seq += 1;
                        st.queue.push_back(Queued { seq, id, enqueued: now });
                        break;
                    }
                }
            };
            let file = codec::to_file(&input);
            let target = spill_to.clone();
            tokio::task::spawn_blocking(move || write_spill(&target, &file))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?
                .map_err(|e| StoreError::Unavailable(format!("spill file: {e}")))?;
            spilled = Some(SpillFile(Some(spill_to)));
        }
        self.shared.submitted.notify_one();
        Ok(Submitted::Created)
    }

    async fn get(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        st.sweep_if_due(now);
        st.kept_mut(id, now).map(|k| k.to_record()).transpose()
    }

    async fn list(&self, owner: &str, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        st.sweep_if_due(now);
        Ok(st.list(owner, query, now))
    }

    async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Claimed>, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a submit in between is not missed.
            let notified = self.shared.submitted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let (taken, next_lease_expiry) = {
                let now = Instant::now();
                let mut st = self.shared.lock();
                st.sweep_if_due(now);
                (st.take_next(worker, now, &self.shared.ttls), st.earliest_lease_expiry())
            };
            if let Some(taken) = taken {
                let input = match taken.input {
                    Ok(input) => Ok(input),
                    // A spilled input is read with the lock released.
                    Err(path) => match tokio::fs::read(&path).await {
                        Ok(file) => codec::from_file(Bytes::from(file)),
                        Err(e) => Err(StoreError::Corrupt(e.to_string())),
                    },
                };
                match input {
                    Ok(input) => {
                        let receipt = taken.seq.to_string();
                        let (id, deliveries, submitted_ms) = (taken.id, taken.deliveries, taken.submitted_ms);
                        return Ok(Some(Claimed { id, input, deliveries, receipt, submitted_ms, late_selfie: false }));
                    }
                    Err(e) => {
                        tracing::warn!(task = %taken.id, error = %e, "Spilled task input is unreadable; failing the task");
                        let mut st = self.shared.lock();
                        if st.check_lease(taken.seq, taken.id, worker).is_ok() {
                            st.fail(taken.id, FailureReason::InputCorrupt, Instant::now());
                            st.leases.remove(&taken.seq);
                        }
                        continue;
                    }
                }
            }
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
        let mut st = self.shared.lock();
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
        let mut st = self.shared.lock();
        st.check_lease(seq, claimed.id, worker)?;
        let lease = st.leases.get_mut(&seq).ok_or(StoreError::LeaseLost)?;
        lease.until = MemoryStore::lease_for(&self.shared.ttls, now);
        Ok(())
    }

    async fn complete_with(
        &self,
        worker: &str,
        claimed: &Claimed,
        outcome: TaskOutcome,
        media: &[TaskMedia],
    ) -> Result<(), StoreError> {
        let status = outcome.status();
        // Encoded before the lock is taken: the critical section only stores it.
        let outcome = encode_outcome(&outcome)?;
        let seq = receipt_seq(claimed)?;
        let now = Instant::now();
        let mut st = self.shared.lock();
        let Some(current) = st.record_mut(claimed.id, now).map(|r| r.status) else {
            // The record expired: nothing to write, but drop the delivery if we hold it.
            if st.check_lease(seq, claimed.id, worker).is_ok() {
                st.leases.remove(&seq);
                st.drop_input(claimed.id);
                st.release(claimed.id);
            }
            return Err(StoreError::NotFound);
        };
        if !current.can_become(status) {
            return Err(StoreError::IllegalTransition { from: current, to: status });
        }
        st.check_lease(seq, claimed.id, worker)?;
        let kept = st.kept_mut(claimed.id, now).ok_or(StoreError::NotFound)?;
        kept.record.status = status;
        kept.outcome = Some(outcome);
        kept.record.updated_ms = now_ms();
        // The portraits live as long as their task (per-owner retention included).
        let expires = st.records.get(&claimed.id).map_or(now, |r| r.expires);
        for m in media {
            st.media.insert(m.key.clone(), Expiring { value: m.bytes.clone(), expires });
            st.task_media.entry(claimed.id).or_default().push(m.key.clone());
        }
        st.drop_input(claimed.id);
        st.release(claimed.id);
        st.leases.remove(&seq);
        Ok(())
    }

    async fn delete(&self, owner: &str, id: TaskId) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        if st.record_mut(id, now).is_none_or(|r| r.owner != owner) {
            return Ok(false);
        }
        st.forget_task(id);
        st.queue.retain(|q| q.id != id);
        st.leases.retain(|_, l| l.id != id);
        st.keys.retain(|_, k| k.value.task != id);
        Ok(true)
    }

    async fn erase_faces(&self, owner: &str) -> Result<u64, StoreError> {
        let mut st = self.shared.lock();
        let before = st.faces.len();
        st.faces.retain(|(o, _), _| o != owner);
        Ok((before - st.faces.len()) as u64)
    }

    async fn put_media(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        st.sweep_if_due(now);
        st.media.insert(key.to_owned(), Expiring { value: bytes, expires: now + self.shared.ttls.task });
        Ok(())
    }

    async fn get_media(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        if st.media.get(key).is_some_and(|m| !m.live(now)) {
            st.media.remove(key);
        }
        Ok(st.media.get(key).map(|m| m.value.clone()))
    }

    async fn put_face(&self, owner: &str, uuid: &str, image: Bytes) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
        st.sweep_if_due(now);
        let entry = Expiring { value: image, expires: now + self.shared.ttls.face };
        st.faces.insert((owner.to_owned(), uuid.to_owned()), entry);
        Ok(())
    }

    async fn get_face(&self, owner: &str, uuid: &str) -> Result<Option<Bytes>, StoreError> {
        let now = Instant::now();
        let key = (owner.to_owned(), uuid.to_owned());
        let mut st = self.shared.lock();
        if st.faces.get(&key).is_some_and(|f| !f.live(now)) {
            st.faces.remove(&key);
        }
        Ok(st.faces.get(&key).map(|f| f.value.clone()))
    }

    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let now = Instant::now();
        let mut st = self.shared.lock();
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
        store.shared.lock().inputs.get_mut(&id).unwrap().expires = Instant::now();
        assert!(store.claim("w1", Duration::ZERO).await.unwrap().is_none());
        let rec = store.get(id).await.unwrap().unwrap();
        assert_eq!(rec.status, TaskStatus::Failure);
        assert_eq!(rec.outcome, Some(TaskOutcome::Failed { reason: FailureReason::InputExpired }));
        let st = store.shared.lock();
        assert!(st.inflight.is_empty() && st.per_owner.is_empty(), "a failed task frees its quota");
    }

    #[tokio::test]
    async fn complete_deletes_the_input_and_the_lease() {
        let store = MemoryStore::new(ttls(3_600_000, 60_000));
        let inp = input();
        let id = TaskId::new();
        store.submit(TaskRecord::new(id, &inp, now_ms()), inp).await.unwrap();
        let claimed = store.claim("w1", Duration::ZERO).await.unwrap().unwrap();
        assert!(store.shared.lock().inputs.contains_key(&id));
        store.complete("w1", &claimed, TaskOutcome::Passed { data: Default::default() }).await.unwrap();
        let st = store.shared.lock();
        assert!(!st.inputs.contains_key(&id));
        assert!(st.leases.is_empty());
        assert_eq!((st.ram_bytes, st.inflight_bytes, st.inflight.len()), (0, 0, 0));
    }

    #[tokio::test]
    async fn inputs_past_the_ram_bound_spill_to_private_files_removed_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let spill = dir.path().join("spill");
        // A stale spill file from a previous process is removed at open; other files stay.
        std::fs::create_dir(&spill).unwrap();
        let stale = spill.join(TaskId::new().to_string());
        std::fs::write(&stale, b"old").unwrap();
        std::fs::write(spill.join("keep.txt"), b"not ours").unwrap();
        let opts = StoreOptions { memory_max_bytes: 6, spill_dir: Some(spill.clone()), ..StoreOptions::default() };
        let store = MemoryStore::open(ttls(3_600_000, 60_000), opts).unwrap();
        assert!(!stale.exists() && spill.join("keep.txt").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&spill).unwrap().permissions().mode() & 0o777, 0o700);
        }

        let (a, b) = (TaskId::new(), TaskId::new());
        for id in [a, b] {
            let inp = input();
            store.submit(TaskRecord::new(id, &inp, now_ms()), inp).await.unwrap();
        }
        // 4 bytes fit in RAM; the second input would make 8 > 6 and went to disk.
        assert!(!spill.join(a.to_string()).exists());
        let file = spill.join(b.to_string());
        assert!(file.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(store.shared.lock().ram_bytes, 4);
        let first = store.claim("w1", Duration::ZERO).await.unwrap().unwrap();
        let second = store.claim("w1", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((first.id, second.id), (a, b));
        assert_eq!(second.input, input(), "read back intact from its file");
        store.complete("w1", &second, TaskOutcome::Passed { data: Default::default() }).await.unwrap();
        assert!(!file.exists(), "the spill file goes with the task");
        assert!(store.delete("alice", a).await.unwrap());
        assert_eq!(store.shared.lock().ram_bytes, 0);
    }

    #[tokio::test]
    async fn a_thousand_queued_uploads_keep_ram_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let bound = 100 * 1024;
        let opts = StoreOptions { memory_max_bytes: bound, spill_dir: Some(dir.path().join("s")), ..StoreOptions::default() };
        let store = MemoryStore::open(ttls(3_600_000, 60_000), opts).unwrap();
        let image = Bytes::from(vec![7u8; 10 * 1024]);
        for _ in 0..1000 {
            let inp = TaskInput { upload: ServiceInput::FaceLiveness { selfie: image.clone() }, ..input() };
            store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap();
        }
        {
            let st = store.shared.lock();
            assert!(st.ram_bytes <= bound, "{} bytes of images in RAM", st.ram_bytes);
            assert_eq!(st.inflight_bytes, 1000 * 10 * 1024);
        }
        assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 990);
        for _ in 0..1000 {
            let c = store.claim("w1", Duration::ZERO).await.unwrap().unwrap();
            assert_eq!(c.input.upload, ServiceInput::FaceLiveness { selfie: image.clone() });
            store.complete("w1", &c, TaskOutcome::Passed { data: Default::default() }).await.unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 0, "every spill file deleted");
    }

    #[tokio::test]
    async fn concurrent_submits_past_the_ram_bound_spill_instead_of_being_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Room in RAM for two 4-byte inputs; the rest must spill.
        let opts = StoreOptions { memory_max_bytes: 8, spill_dir: Some(dir.path().join("s")), ..StoreOptions::default() };
        let store = MemoryStore::open(ttls(3_600_000, 60_000), opts).unwrap();
        // All submits start before any finishes (each past the bound yields while its spill
        // file is written), as under a burst.
        let submits: Vec<_> = (0..10)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let inp = input();
                    store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await
                })
            })
            .collect();
        for submit in submits {
            submit.await.unwrap().expect("a submit past the RAM bound spills, it is not refused");
        }
        let st = store.shared.lock();
        assert_eq!((st.ram_bytes, st.inflight.len()), (8, 10));
        assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 8);
    }

    #[tokio::test]
    async fn without_a_spill_dir_the_ram_bound_refuses() {
        let opts = StoreOptions { memory_max_bytes: 6, ..StoreOptions::default() };
        let store = MemoryStore::with_options(ttls(3_600_000, 60_000), opts);
        let inp = input();
        store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap();
        let inp = input();
        let err = store.submit(TaskRecord::new(TaskId::new(), &inp, now_ms()), inp).await.unwrap_err();
        assert!(matches!(err, StoreError::Full { scope: FullScope::Queue, .. }), "{err:?}");
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
                let st = store.shared.lock();
                if st.media.is_empty() && st.faces.is_empty() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "sweeper never dropped expired images");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
